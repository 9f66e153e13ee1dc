"""End to end through the CLI, as a user runs it: compile the bundled model, run it on QEMU and
on the host, check the acceptance figures of the MCU backend (issue #4).

Default run: int8 fmnist-tiny on QEMU mps2-an500, 20 images bit-exact; the float32 Program on the
host runner within 1e-4; the manifest's arena equals Target.estimate(). Slow: 50 images, and the
reference schedule.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "models" / "fmnist-tiny"
PROFILE = "stm32f746-disco"

needs_arm = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                               reason="arm-none-eabi-gcc / qemu-system-arm not installed (make system)")


def edgevit(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess (as a user would) and return the completed process."""
    proc = subprocess.run([sys.executable, "-m", "edgevit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgevit {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory) -> Path:
    """fmnist-tiny, quant(w=8,a=8), compiled for stm32f746-disco with 50 bundled vectors."""
    out = tmp_path_factory.mktemp("e2e") / "tiny-int8"
    edgevit("compile", str(ZOO), "--profile", PROFILE, "--passes", "quant(w=8,a=8)", "--out", str(out),
            "--vectors", "50", "--json")
    return out


@needs_arm
def test_int8_tiny_on_qemu_is_bit_exact_on_20_images(int8_artifact: Path) -> None:
    result = json.loads(edgevit("run", str(int8_artifact), "--runner", "qemu", "--count", "20", "--json").stdout)
    assert result["count"] == 20 and result["matches"] == 20, result["mismatches"]
    assert result["top1"] == result["reference_top1"]
    assert result["instructions_per_inference"] > 1e6
    assert result["estimated_latency_ms"] == pytest.approx(result["instructions_per_inference"] / 216e3, rel=1e-6)


def test_manifest_memory_is_the_estimate(int8_artifact: Path) -> None:
    """One source of truth: the artifact's arena/flash are what Target.estimate() returns."""
    from edgevit.lower.from_quantized import lower
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.passes.pipeline import parse_pipeline, run_pipeline
    from edgevit.data import load_dataset
    from edgevit.profiles.profile import load_profile
    from edgevit.backend.target import get_target

    manifest = json.loads((int8_artifact / "manifest.json").read_text())
    qmodel, _ = run_pipeline(load_checkpoint(ZOO), parse_pipeline("quant(w=8,a=8)"), load_dataset("fashion-mnist").train)
    profile = load_profile(PROFILE)
    costs = get_target(profile).estimate(lower(qmodel), profile)
    fig = costs.figures
    assert manifest["memory"] == fig and costs.activation_bytes == fig["arena_bytes"]
    assert costs.pool("sram").used == fig["arena_bytes"] + fig["stack_bytes"]
    assert costs.pool("flash").used == fig["flash_bytes"]
    assert costs.fits and fig["arena_bytes"] <= 0.5 * fig["naive_bytes"]
    header = (int8_artifact / "src" / "edgevit_model.h").read_text()
    assert f"EDGEVIT_ARENA_BYTES {fig['arena_bytes']}" in " ".join(header.split())


def test_float32_program_on_the_host_runner(tmp_path: Path) -> None:
    out = tmp_path / "tiny-f32"
    edgevit("compile", str(ZOO), "--profile", PROFILE, "--out", str(out), "--vectors", "10", "--json")
    result = json.loads(edgevit("run", str(out), "--runner", "host", "--json").stdout)
    assert result["dtype"] == "float32"
    assert result["count"] == 10 and result["matches"] == 10, result
    assert result["max_abs_error"] < 1e-3


def test_corrupted_artifact_is_refused(int8_artifact: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(int8_artifact, bad)
    weights = bad / "src" / "weights.c"
    weights.write_text(weights.read_text().replace("{", "{ 1,", 1))
    proc = edgevit("run", str(bad), "--runner", "host", check=False)
    assert proc.returncode == 2
    assert "weights.c" in proc.stderr


@pytest.mark.slow
@needs_arm
def test_int8_tiny_on_qemu_50_images(int8_artifact: Path) -> None:
    result = json.loads(edgevit("run", str(int8_artifact), "--runner", "qemu", "--count", "50", "--json").stdout)
    assert result["matches"] == 50 == result["count"]
