"""End to end through the CLI with compression passes (issue #5's acceptance): fmnist-tiny with
`tome(r=2),prune(heads=0.25),quant(w=8,a=8)` compiled for stm32f746-disco runs 20 images bit-exact
on QEMU (and on the host runner); the float tome-only model runs on the host runner within 1e-4.

About 45 s in all on the project machine (the int8 compile, with its calibration, is most of it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "models" / "fmnist-tiny"
PROFILE = "stm32f746-disco"
PIPELINE = "tome(r=2),prune(heads=0.25),quant(w=8,a=8)"

needs_arm = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                               reason="arm-none-eabi-gcc / qemu-system-arm not installed (make system)")


def edgevit(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess (as a user would); AssertionError with its stderr if it fails."""
    proc = subprocess.run([sys.executable, "-m", "edgevit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"edgevit {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def run_json(artifact: Path, *args: str) -> dict:
    """`edgevit run ARTIFACT ... --json` as a dict."""
    return json.loads(edgevit("run", str(artifact), *args, "--json").stdout)


@pytest.fixture(scope="module")
def merged_int8(tmp_path_factory) -> Path:
    """fmnist-tiny through tome + prune + quant, compiled for stm32f746-disco with 20 vectors."""
    out = tmp_path_factory.mktemp("passes-e2e") / "tome-prune-int8"
    edgevit("compile", str(ZOO), "--profile", PROFILE, "--passes", PIPELINE, "--out", str(out), "--vectors", "20",
            "--json")
    return out


@needs_arm
def test_merged_int8_on_qemu_is_bit_exact_on_20_images(merged_int8: Path) -> None:
    result = run_json(merged_int8, "--runner", "qemu", "--count", "20")
    assert result["dtype"] == "int8" and result["match_rule"] == "bit-exact"
    assert result["count"] == 20 and result["matches"] == 20, result["mismatches"]
    assert result["top1"] == result["reference_top1"]
    assert result["instructions_per_inference"] > 1e6


def test_merged_int8_on_the_host_runner_is_bit_exact(merged_int8: Path) -> None:
    result = run_json(merged_int8, "--runner", "host")
    assert result["count"] == 20 and result["matches"] == 20 and result["max_abs_error"] == 0, result["mismatches"]


def test_merged_manifest_has_the_merge_kernels_and_pass_memory(merged_int8: Path) -> None:
    manifest = json.loads((merged_int8 / "manifest.json").read_text())
    merges = [k for k in manifest["kernels"] if k["op"] == "token_merge"]
    assert len(merges) == 4 and all(len(k["functions"]) == 1 for k in merges)
    assert all(f"{k['name']}.scratch" in k["offsets"] for k in merges)
    spec = yaml.safe_load(manifest["spec"])
    assert [b["merge_r"] for b in spec["blocks"]] == [2, 2, 2, 2] and sum(b["heads"] for b in spec["blocks"]) < 16
    reports = manifest["pass_reports"]
    assert [r["name"] for r in reports] == ["tome", "prune", "quant"]
    assert all(r["peak_bytes_before"] and r["peak_bytes_after"] for r in reports)  # compile injects memory_of
    assert reports[-1]["peak_bytes_after"] == manifest["memory"]["arena_bytes"] < reports[-1]["peak_bytes_before"]
    assert reports[1]["peak_bytes_before"] == reports[0]["peak_bytes_after"]


def test_merged_float32_on_the_host_runner(tmp_path: Path) -> None:
    out = tmp_path / "tome-f32"
    edgevit("compile", str(ZOO), "--profile", PROFILE, "--passes", "tome(r=2)", "--out", str(out), "--vectors", "10",
            "--json")
    result = run_json(out, "--runner", "host")
    assert result["dtype"] == "float32" and "1e-4" in result["match_rule"].replace("0.0001", "1e-4")
    assert result["count"] == 10 and result["matches"] == 10, result["mismatches"]
    assert result["max_abs_error"] < 1e-3
