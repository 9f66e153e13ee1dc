"""The cpu target end to end (edgevit/targets/cpu/target.py, library.py, runners/): fmnist-tiny
compiled for the `host` profile (float32 and quant(w=8,a=8)) into a library artifact, built with
its Makefile and run by the host runner (int8 bit-exact, float32 within 1e-4 relative: backend/run.py
applies the rules), the library linked into a program of our own through include/edgevit_model.h,
the estimate's RAM pool, refusals (a runner the profile cannot use, an over-budget profile: exit
3); the Arm profiles cross-compiled and run under qemu-aarch64 in the slow tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgevit.backend.compile import compile_artifact
from edgevit.backend.run import run_artifact
from edgevit.backend.target import get_target
from edgevit.errors import InfeasibleError, UserInputError
from edgevit.profiles.profile import load_profile, profile_dir
from edgevit.targets.cpu.isa import missing_on_host
from edgevit.targets.cpu.target import CpuTarget, weight_bytes

ROOT = Path(__file__).resolve().parents[3]
ZOO = ROOT / "models" / "fmnist-tiny"
QUANT = "quant(w=8,a=8)"
LIBRARY_FILES = {"include/edgevit_model.h", "src/model.c", "src/weights.c", "src/kernels.s", "src/kernels.h",
                 "src/support.c", "src/check.c", "src/vectors.c", "src/vectors.h", "Makefile", "report.md",
                 "vectors/inputs.npy", "vectors/expected.npy", "vectors/labels.npy"}

needs_host = pytest.mark.skipif(bool(missing_on_host(load_profile("host"))) or shutil.which("gcc") is None,
                                reason="this machine cannot run the host profile's code (x86-64-v3 + gcc)")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-aarch64") is None or shutil.which("aarch64-linux-gnu-gcc") is None,
                                reason="needs qemu-aarch64 and aarch64-linux-gnu-gcc")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """fmnist-tiny for `host`: {"float32": dir, "int8": dir} (16 vectors each)."""
    root = tmp_path_factory.mktemp("cpu")
    out = {"float32": root / "f32", "int8": root / "i8"}
    compile_artifact(ZOO, "host", out["float32"], vectors=16, progress=False)
    compile_artifact(ZOO, "host", out["int8"], passes=QUANT, vectors=16, progress=False)
    return out


@needs_host
@pytest.mark.parametrize("dtype, rule", [("float32", "max |out - ref| <= 0.0001"), ("int8", "bit-exact")])
def test_host_runner_matches_the_reference(artifacts, dtype, rule) -> None:
    result = run_artifact(artifacts[dtype], progress=False)
    assert result["runner"] == "host" and result["dtype"] == dtype
    assert result["count"] == 16 and result["matches"] == 16 and result["match_rule"].startswith(rule)
    assert result["top1"] == result["reference_top1"]


def test_artifact_is_a_library_with_the_cpu_manifest(artifacts) -> None:
    files = {str(p.relative_to(artifacts["int8"])) for p in artifacts["int8"].rglob("*") if p.is_file()}
    assert LIBRARY_FILES | {"manifest.json"} == files
    m = json.loads((artifacts["int8"] / "manifest.json").read_text())
    assert m["target"] == {"kind": "cpu", "runners": ["host", "qemu"], "default_runner": "host"}
    assert m["profile"]["name"] == "host" and m["program"]["lowering"] == "int8" and m["passes"] == QUANT
    assert m["llvm_target"]["mtriple"] == "x86_64-linux-gnu" and m["vectors"]["count"] == 16
    assert m["memory"]["ram_bytes"] == m["memory"]["arena_bytes"] + m["memory"]["weight_bytes"]
    assert m["budget"]["ram_bytes"] == load_profile("host").memory.ram_bytes
    assert {k["name"] for k in m["kernels"]} and all(k["functions"] or k["op"] == "reshape" for k in m["kernels"])
    model_c = (artifacts["int8"] / "src/model.c").read_text()
    assert '#include "kernels.h"' in model_c and ") != 0) return 1;" in model_c  # every call's status is checked
    assert "aligned(64)" in model_c
    header = (artifacts["int8"] / "include/edgevit_model.h").read_text()
    assert "int edgevit_run(const edgevit_in_t *input, edgevit_out_t *output);" in header
    assert "#define EDGEVIT_WEIGHT_BYTES" in header and "typedef int8_t edgevit_in_t;" in header


@needs_host
def test_a_program_of_our_own_links_the_library(artifacts, tmp_path) -> None:
    """The static library and its header are all a user needs: run vector 0 and compare."""
    art = artifacts["int8"]
    build = tmp_path / "lib"
    shutil.copytree(art, build)
    subprocess.run(["make", "-s", "-C", str(build), "libedgevit_model.a"], check=True, capture_output=True)
    x = np.load(art / "vectors/inputs.npy")[0]
    expected = np.load(art / "vectors/expected.npy")[0]
    (tmp_path / "input.bin").write_bytes(x.tobytes())
    (tmp_path / "user.c").write_text(
        '#include <stdio.h>\n#include "edgevit_model.h"\n'
        "static edgevit_in_t in[EDGEVIT_INPUT_SIZE];\nstatic edgevit_out_t out[EDGEVIT_OUTPUT_SIZE];\n"
        'int main(void) {\n  FILE *f = fopen("input.bin", "rb");\n'
        "  if (!f || fread(in, sizeof in, 1, f) != 1) return 5;\n  fclose(f);\n"
        "  if (edgevit_run(in, out) != 0) return 6;\n  fwrite(out, sizeof out, 1, stdout);\n  return 0;\n}\n")
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", f"-I{build}/include", "user.c",
                    f"{build}/libedgevit_model.a", "-lm", "-o", "user"], cwd=tmp_path, check=True, capture_output=True)
    got = subprocess.run(["./user"], cwd=tmp_path, check=True, capture_output=True).stdout
    assert np.array_equal(np.frombuffer(got, dtype=expected.dtype), expected.reshape(-1))


def test_runners_refuse_what_they_cannot_run(artifacts) -> None:
    with pytest.raises(UserInputError, match="runs natively .* use --runner host"):
        run_artifact(artifacts["int8"], "qemu", progress=False)
    with pytest.raises(UserInputError, match="--runner 'serial' cannot run .*cpu artifact.*runners that can: host"):
        run_artifact(artifacts["int8"], "serial", progress=False)
    host = CpuTarget().runners()["host"]()
    with pytest.raises(UserInputError, match=r"'rpi4' .*cannot run natively .*missing: arch aarch64.*--runner qemu"):
        host.check(None, load_profile("rpi4"))


def test_estimate_is_a_ram_pool_without_latency() -> None:
    from edgevit.lower.from_model import lower_float
    from edgevit.model.checkpoint import load_checkpoint

    program = lower_float(load_checkpoint(ZOO))
    target = get_target(load_profile("host"))
    costs = target.estimate(program, load_profile("host"))
    (ram,) = costs.pools
    assert ram.name == "ram" and ram.used == costs.activation_bytes + weight_bytes(program) and ram.fits
    assert costs.latency_ms is None and costs.plan.arena_bytes == costs.activation_bytes
    assert target.supports(program, load_profile("rpi4")) == []
    two = SimpleNamespace(inputs=["a"], outputs=["b", "c"], kernels=[])
    assert "one input and gives one output" in target.supports(two, load_profile("host"))[0]
    with pytest.raises(UserInputError, match="the cpu target has no build option"):
        target.check_options({"schedule": "fast"})


def test_over_budget_ram_exits_3(tmp_path) -> None:
    small = tmp_path / "small.yaml"
    small.write_text((profile_dir() / "host.yaml").read_text().replace("ram_bytes: 8GiB", "ram_bytes: 64KiB"))
    with pytest.raises(InfeasibleError, match="ram: arena") as e:
        compile_artifact(ZOO, small, tmp_path / "x", progress=False)
    assert e.value.exit_code == 3 and not (tmp_path / "x").exists()


@pytest.mark.slow
@needs_qemu
@pytest.mark.parametrize("profile", ["cortex-a76", "rpi4"])
@pytest.mark.parametrize("passes", [None, QUANT])
def test_arm_profiles_cross_compile_and_match_under_qemu(tmp_path, profile, passes) -> None:
    out = tmp_path / "a"
    compile_artifact(ZOO, profile, out, passes=passes, vectors=50, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["llvm_target"]["mtriple"] == "aarch64-linux-gnu" and m["llvm_target"]["mcpu"] == load_profile(profile).core
    result = run_artifact(out, progress=False)  # the Arm profiles' default runner: qemu
    assert result["runner"] == "qemu" and result["count"] == result["matches"] == 50
    assert "emulated time means nothing" in result["latency_note"]
    if sys.platform == "linux" and missing_on_host(load_profile(profile)):
        with pytest.raises(UserInputError, match="cannot run natively"):
            run_artifact(out, "host", progress=False)


def test_default_runner_follows_the_profile_not_the_machine() -> None:
    from edgevit.backend.artifact_write import seal

    target = CpuTarget()
    assert target.default_runner_for(load_profile("host")) == "host"
    assert target.default_runner_for(load_profile("rpi4")) == "qemu"
    assert target.default_runner_for(load_profile("cortex-a76")) == "qemu"
    sealed = json.loads(seal({"a.txt": "x"}, target, load_profile("rpi4"))["manifest.json"])
    assert sealed["target"] == {"kind": "cpu", "runners": ["host", "qemu"], "default_runner": "qemu"}
