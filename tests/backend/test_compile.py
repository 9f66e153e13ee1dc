"""`edgevit compile`: option checks, the budget check (exit 3, nothing written), atomic writes,
and (slow) the zoo model compiled twice byte for byte, run on the host and on QEMU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgevit.errors import UserInputError
from edgevit.backend.compile import compile_artifact, print_summary, write_atomically

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "models" / "fmnist-tiny"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def small_profile(tmp_path: Path, sram: str = "16KiB") -> Path:
    """stm32f746-disco with `sram` of SRAM (regions dropped), as a user profile YAML."""
    from edgevit.profiles.profile import profile_dir

    data = yaml.safe_load((profile_dir() / "stm32f746-disco.yaml").read_text())
    data["name"] = "tiny-ram"
    data["memory"] = {"sram_bytes": sram, "flash_bytes": "1MiB"}
    path = tmp_path / "tiny-ram.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def edgevit(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgevit", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_existing_out_is_an_error_before_anything_is_loaded(tmp_path) -> None:
    out = tmp_path / "art"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserInputError, match=r"already exists.*--force"):
        compile_artifact(tmp_path / "no-such-model", "stm32f746-disco", out, progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_bad_schedule_and_bad_pipeline_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserInputError, match="--schedule 'slow'"):
        compile_artifact(ZOO, "stm32f746-disco", tmp_path / "a", schedule="slow", progress=False)
    with pytest.raises(UserInputError):
        compile_artifact(ZOO, "stm32f746-disco", tmp_path / "a", passes="quant(w=", progress=False)
    assert not (tmp_path / "a").exists()


def test_over_budget_exits_3_and_writes_nothing(tmp_path) -> None:
    pytest.importorskip("edgevit.targets.mcu.target", reason="McuTarget (targets/mcu/target.py) not written yet")
    profile = small_profile(tmp_path)
    out = tmp_path / "deep" / "art"
    r = edgevit("compile", str(ZOO), "--profile", str(profile), "--out", str(out))
    assert r.returncode == 3, r.stderr
    msg = " ".join(r.stderr.split())
    assert "does not fit tiny-ram" in msg and "sram: arena" in msg and "Largest arena buffers" in msg
    assert "quant(w=8,a=8)" in msg and "edgevit search" in msg and "Nothing was written" in msg
    assert not out.exists() and not out.parent.exists()


def test_write_atomically_cleans_up_and_force_replaces(tmp_path) -> None:
    out = tmp_path / "art"
    with pytest.raises(TypeError):
        write_atomically(out, {"a.txt": "ok", "b.bin": object()}, force=False)
    assert list(tmp_path.iterdir()) == []
    write_atomically(out, {"a.txt": "one"}, force=False)
    assert (out / "a.txt").read_text() == "one"
    write_atomically(out, {"b.txt": "two"}, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_print_summary_shows_the_figures() -> None:
    from rich.console import Console

    summary = {"out": "build/x", "target": "mcu", "runner": "qemu", "profile": "p", "program": "m", "fingerprint": "f", "lowering": "int8",
               "passes": "quant(w=8,a=8)", "macs": 1000, "fits": True, "kernels": 4, "functions": 3, "steps": 3,
               "vectors": 5, "reference_top1": 0.8, "files": 17, "seconds": 1.5,
               "memory": {"arena_bytes": 1000, "lower_bound_bytes": 900, "naive_bytes": 3000, "flash_bytes": 5000,
                          "weight_bytes": 4000, "code_bytes": 1000, "stack_bytes": 8192},
               "pools": [{"name": "sram", "used": 9192, "budget": 327680, "unit": "B",
                          "detail": "arena 1,000 B + stack 8,192 B", "fits": True},
                         {"name": "flash", "used": 5000, "budget": 1048576, "unit": "B", "detail": "", "fits": True}]}
    console = Console(record=True, width=200)
    print_summary(summary, console)
    text = console.export_text()
    assert "1,000 B (naive 3,000 B, lower bound 900 B)" in text and "9,192 / 327,680 B" in text
    assert "reference top-1 80.0%" in text and "edgevit run build/x" in text and "runner qemu" in text


# ---- slow: the zoo model end to end ---------------------------------------------------------------
def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def zoo_artifacts(tmp_path_factory):
    """fmnist-tiny int8 compiled twice for stm32f746-disco."""
    base = tmp_path_factory.mktemp("zoo")
    outs, times = [base / "a", base / "b"], []
    for out in outs:
        t0 = time.perf_counter()
        compile_artifact(ZOO, "stm32f746-disco", out, passes="quant(w=8,a=8)", vectors=8, progress=False)
        times.append(time.perf_counter() - t0)
    return outs, times


@pytest.mark.slow
def test_zoo_compile_is_deterministic_and_fast(zoo_artifacts) -> None:
    (a, b), times = zoo_artifacts
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    assert [k for k in fa if fa[k] != fb[k]] == []
    assert max(times) < 60, times
    manifest = json.loads(fa["manifest.json"])
    assert manifest["memory"]["arena_bytes"] <= manifest["memory"]["naive_bytes"]
    assert manifest["vectors"]["count"] == 8 and manifest["vectors"]["source"].startswith("fashion-mnist")


@pytest.mark.slow
def test_zoo_artifact_runs_bit_exact_on_host_and_qemu(zoo_artifacts) -> None:
    import shutil

    from tests.targets.mcu.helpers import run_host, run_qemu

    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    a = zoo_artifacts[0][0]
    expected = np.load(a / "vectors" / "expected.npy")
    got, _ = run_host(a)
    np.testing.assert_array_equal(got, expected)
    got, ticks = run_qemu(a, "mps2-an500", count=3)
    np.testing.assert_array_equal(got, expected[:3])
    assert all(t > 0 for t in ticks)


def test_flash_over_budget_is_infeasible_with_the_figures() -> None:
    from types import SimpleNamespace

    from edgevit.backend.compile import check_budget
    from edgevit.backend.costs import Costs, Pool
    from edgevit.backend.planner import Buffer, Step, largest_buffers
    from edgevit.errors import InfeasibleError

    plan = SimpleNamespace(buffers={"a": Buffer("a", 0, 100, 0, 1), "b": Buffer("b", 100, 50, 1, 1),
                                    "c": Buffer("c", 0, 900, 2, 2)},
                           timeline=[100, 150, 900], steps=[Step((0,)), Step((1,)), Step((2,))])
    program = SimpleNamespace(name="m", meta={"lowering": "int8"},
                              kernels=[SimpleNamespace(name=n) for n in ("k0", "k1", "k2")])
    profile = SimpleNamespace(name="dev")

    def costs(flash: int) -> Costs:
        return Costs(pools=(Pool("sram", 9092, 10_000, "arena 900 B + stack 8,192 B"),
                            Pool("flash", flash, 100, f"weights {flash - 100} B + code 100 B")),
                     macs=0, activation_bytes=900, plan=plan)

    check_budget(costs(100), program, profile, None)  # fits: no error
    with pytest.raises(InfeasibleError, match=r"flash: weights 500 B \+ code 100 B = 600 B > 100 B") as e:
        check_budget(costs(600), program, profile, "quant(w=8,a=8)", hint=largest_buffers(plan, program))
    assert e.value.exit_code == 3
    assert "at step 2 (k2), 900 B live: c (900 B)" in str(e.value)
    assert "quant(w=8,a=8) (int8" not in str(e.value)  # already quantized: not suggested again
