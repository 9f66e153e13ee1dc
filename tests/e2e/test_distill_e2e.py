"""A DeiT-distilled model (class + distillation tokens, the two heads averaged) end to end through
the CLI, as a user runs it: `edgevit compile CKPT --passes "quant(w=8,a=8)"` for the MCU
(stm32f746-disco) and the CPU (host) profiles, then `edgevit run`: every output bit-exact with the
reference interpreter (the MCU artifact on the host runner and on QEMU).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import pytest

from edgevit.model.checkpoint import save_checkpoint
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from tests.lower.int8_helpers import randomise

ROOT = Path(__file__).resolve().parents[2]
DATA = "synthetic:1x12x12:4"
VECTORS = 6
needs_arm = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                               reason="arm-none-eabi-gcc / qemu-system-arm not installed (make system)")


def edgevit(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess; AssertionError with its stderr when it fails."""
    proc = subprocess.run([sys.executable, "-m", "edgevit", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"edgevit {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A randomly weighted DeiT-style model (pool cls_dist, one merging block) saved as a checkpoint."""
    spec = ViTSpec.uniform(depth=2, heads=2, head_dim=8, mlp_hidden=32, image_size=12, in_channels=1, patch_size=3,
                           embed_dim=16, num_classes=4, pool="cls_dist", distill_token=True, name="deit-e2e")
    spec = spec.with_blocks([replace(spec.blocks[0], merge_r=3), spec.blocks[1]])
    return save_checkpoint(randomise(build_model(spec, seed=0), 0), tmp_path_factory.mktemp("ckpt") / "deit")


def compile_artifact(checkpoint: Path, out: Path, profile: str) -> dict:
    summary = json.loads(edgevit("compile", checkpoint, "--profile", profile, "--passes", "quant(w=8,a=8)",
                                 "--data", DATA, "--vectors", VECTORS, "--out", out, "--json").stdout)
    program = json.loads((out / "reference" / "program.json").read_text())
    kernels = {k["name"]: k for k in program["kernels"]}
    assert kernels["pool"]["attrs"] == {"mode": "prefix", "rows": 2} and "dist_concat" in kernels
    assert kernels["blocks.0.merge"]["attrs"]["protect"] == 2
    return summary


def run_artifact(out: Path, runner: str) -> dict:
    result = json.loads(edgevit("run", out, "--runner", runner, "--json").stdout)
    assert result["dtype"] == "int8" and result["count"] == VECTORS
    assert result["matches"] == VECTORS, (result["mismatches"], result["max_abs_error"])
    assert result["match_rule"] == "bit-exact" and result["top1"] == result["reference_top1"]
    return result


@pytest.fixture(scope="module")
def mcu_artifact(checkpoint, tmp_path_factory) -> Path:
    """The checkpoint compiled for stm32f746-disco with quant(w=8,a=8)."""
    out = tmp_path_factory.mktemp("mcu") / "deit-int8"
    compile_artifact(checkpoint, out, "stm32f746-disco")
    return out


def test_mcu_artifact_is_bit_exact_on_the_host_runner(mcu_artifact) -> None:
    run_artifact(mcu_artifact, "host")


@needs_arm
def test_mcu_artifact_is_bit_exact_on_qemu(mcu_artifact) -> None:
    result = run_artifact(mcu_artifact, "qemu")
    assert result["instructions_per_inference"] > 0


def test_cpu_library_is_bit_exact_on_the_host(checkpoint, tmp_path) -> None:
    from edgevit.profiles.profile import load_profile
    from edgevit.targets.cpu.isa import missing_on_host

    if missing_on_host(load_profile("host")) or shutil.which("gcc") is None:
        pytest.skip("this machine cannot run the host profile's code (x86-64-v3 + gcc)")
    compile_artifact(checkpoint, tmp_path / "cpu", "host")
    run_artifact(tmp_path / "cpu", "host")
