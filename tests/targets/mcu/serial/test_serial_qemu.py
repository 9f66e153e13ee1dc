"""The acceptance path of issue #17 for real: fmnist-tiny int8 compiled for stm32f746-disco, its UART
firmware on QEMU (qemu_uart: the UART on a TCP socket), and `edgevit run DIR --runner serial --port
socket://127.0.0.1:PORT --data fashion-mnist --count N --json` streaming the Fashion-MNIST test
images, directly and through the fault proxy at 1% byte corruption: every image bit-exact.
The 200-image runs are slow-marked; a 20-image run (5 through the proxy) stays in the default suite."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
ZOO = ROOT / "models" / "fmnist-tiny"
PROFILE = "stm32f746-disco"

pytestmark = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                reason="needs arm-none-eabi-gcc and qemu-system-arm")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """(artifact dir, socket:// URL of QEMU running its UART firmware)."""
    from edgevit.backend.compile import compile_artifact
    from edgevit.targets.mcu.uart_firmware import build_uart_firmware, qemu_uart

    tmp = tmp_path_factory.mktemp("serial-qemu")
    art = tmp / "art"
    compile_artifact(ZOO, PROFILE, art, passes="quant(w=8,a=8)", vectors=8, progress=False)
    elf = build_uart_firmware(art, None, tmp / "build", for_board=False)
    with qemu_uart(PROFILE, elf) as port:
        yield art, f"socket://127.0.0.1:{port}"


def run_json(*args, timeout: float = 900) -> dict:
    r = subprocess.run([sys.executable, "-m", "edgevit", "run", *map(str, args), "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout)


def streamed(art, url, count: int, results: Path) -> dict:
    return run_json(art, "--runner", "serial", "--port", url, "--data", "fashion-mnist", "--count", count,
                    "--results", results, "--fresh")


def test_bundled_vectors_over_the_uart(emulated) -> None:
    art, url = emulated
    r = run_json(art, "--runner", "serial", "--port", url)
    assert r["count"] == r["matches"] == 8 and r["match_rule"] == "bit-exact"
    assert r["instructions_per_inference"] > 1_000_000 and r["machine"] == "mps2-an500"  # QEMU's SysTick: counted


@pytest.mark.parametrize("count", [20, pytest.param(200, marks=pytest.mark.slow)])
def test_streamed_test_images_are_bit_exact(emulated, tmp_path, count) -> None:
    art, url = emulated
    r = streamed(art, url, count, tmp_path / "r.jsonl")
    assert r["streamed"] and r["count"] == r["matches"] == count and r["match_rule"] == "bit-exact"
    assert r["data"] == "fashion-mnist/test" and r["top1"] == r["reference_top1"] > 0.5
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == count + 1


@pytest.mark.parametrize("count", [5, pytest.param(200, marks=pytest.mark.slow)])  # ~2.5 s per image at 1 %
def test_streamed_through_the_fault_proxy_at_one_percent_corruption(emulated, tmp_path, count) -> None:
    from edgevit.backend.hil.fault_proxy import FaultProxy

    art, url = emulated
    with FaultProxy(("127.0.0.1", int(url.rsplit(":", 1)[1])), corrupt=0.01, seed=3) as proxy:
        r = streamed(art, proxy.url, count, tmp_path / "r.jsonl")
    assert r["count"] == r["matches"] == count
    assert proxy.stats.to_target.corrupted > 0 and r["link"]["retransmissions"] > 0
