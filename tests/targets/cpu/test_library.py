"""The cpu target end to end (edgevit/targets/cpu/target.py, library.py, runners/): fmnist-tiny
compiled for the `host` profile (float32 and quant(w=8,a=8)) into a library artifact, built with
its Makefile and run by the host runner (int8 bit-exact, float32 within 1e-4 relative: backend/run.py
applies the rules), the library linked into a program of our own through include/edgevit_model.h,
the estimate's RAM pool, refusals (a runner the profile cannot use, an over-budget profile: exit
3); the Arm profiles cross-compiled and run under qemu-aarch64 in the slow tests."""

from __future__ import annotations

import json
import re
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
                 "src/support.c", "src/check.c", "src/bench.c", "src/vectors.c", "src/vectors.h", "Makefile", "report.md",
                 "vectors/inputs.npy", "vectors/expected.npy", "vectors/labels.npy",
                 "reference/program.json", "reference/consts.npz"}

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
    assert m["target"] == {"kind": "cpu", "runners": ["host", "qemu", "ssh"], "default_runner": "host"}
    assert m["profile"]["name"] == "host" and m["program"]["lowering"] == "int8" and m["passes"] == QUANT
    assert m["llvm_target"]["mtriple"] == "x86_64-linux-gnu" and m["vectors"]["count"] == 16
    assert m["memory"]["ram_bytes"] == m["memory"]["arena_bytes"] + m["memory"]["weight_bytes"]
    workspace = m["memory"]["workspace_bytes_per_thread"]  # the kernels' bound (llvm_kernels.workspace_bound)
    assert m["threads"] == {"default": 1, "max": 16} and 64 <= workspace < 1 << 20
    assert m["budget"]["ram_bytes"] == load_profile("host").memory.ram_bytes
    assert {k["name"] for k in m["kernels"]} and all(k["functions"] or k["op"] == "reshape" for k in m["kernels"])
    model_c = (artifacts["int8"] / "src/model.c").read_text()
    assert '#include "kernels.h"' in model_c and ") != 0) return 1;" in model_c  # every call's status is checked
    assert "= edgevit_get_threads;" in model_c  # keeps support.o in static links (kernels.s: weak NULL hooks)
    assert "aligned(64)" in model_c
    header = (artifacts["int8"] / "include/edgevit_model.h").read_text()
    assert "int edgevit_run(const edgevit_in_t *input, edgevit_out_t *output);" in header
    assert "#define EDGEVIT_WEIGHT_BYTES" in header and "typedef int8_t edgevit_in_t;" in header
    assert "int edgevit_run_with_arena(void *arena, const edgevit_in_t *input, edgevit_out_t *output);" in header
    assert "int edgevit_set_threads(int n);" in header and "#define EDGEVIT_DEFAULT_THREADS 1 " in header
    assert "#define EDGEVIT_ARENA_ALIGN  64 " in header and "#define EDGEVIT_WORKSPACE_BYTES" in header
    support = (artifacts["int8"] / "src/support.c").read_text()
    assert "#define EDGEVIT_DEFAULT_THREADS 1\n" in support and f"#define EV_WORKSPACE_BYTES {workspace}u\n" in support
    assert re.search(rf"#define EDGEVIT_WORKSPACE_BYTES +{workspace} ", header)


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


CALLER_ARENA_MAIN = r"""#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "edgevit_model.h"
#include "vectors.h"
static edgevit_out_t a[EDGEVIT_OUTPUT_SIZE], b[EDGEVIT_OUTPUT_SIZE];
int main(void) {
  unsigned char *mine = aligned_alloc(EDGEVIT_ARENA_ALIGN, (EDGEVIT_ARENA_BYTES + EDGEVIT_ARENA_ALIGN) / EDGEVIT_ARENA_ALIGN * EDGEVIT_ARENA_ALIGN);
  if (mine == NULL) return 9;
  for (int i = 0; i < EDGEVIT_VECTOR_COUNT; i++) {
    const edgevit_in_t *x = edgevit_vector_inputs + (size_t)i * EDGEVIT_INPUT_SIZE;
    memset(mine, 0xA5, EDGEVIT_ARENA_BYTES);  /* its contents before the call do not matter */
    if (edgevit_run(x, a) != 0 || edgevit_run_with_arena(mine, x, b) != 0) return 5;
    if (memcmp(a, b, sizeof a) != 0) { printf("differ %d\n", i); return 6; }
  }
  if (edgevit_run_with_arena(NULL, edgevit_vector_inputs, b) != -1) return 7;
  if (edgevit_run_with_arena(mine + 8, edgevit_vector_inputs, b) != -1) return 8;
  free(mine);
  printf("same %d\n", EDGEVIT_VECTOR_COUNT);
  return 0;
}
"""


@needs_host
def test_caller_arena_gives_the_static_arenas_outputs(artifacts, tmp_path) -> None:
    """edgevit_run_with_arena on a heap arena (prefilled with garbage) equals edgevit_run on every
    bundled vector; a NULL or misaligned arena is refused with -1. Built with ASan/UBSan."""
    build = tmp_path / "lib"
    shutil.copytree(artifacts["int8"], build)
    (build / "src/arena_test.c").write_text(CALLER_ARENA_MAIN)
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
    subprocess.run(["make", "-s", "-C", str(build), "libedgevit_model.a", "build/vectors.o",
                    f"EXTRA_CFLAGS={' '.join(sanitize)}"], check=True, capture_output=True)
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", *sanitize, "-pthread", "-Iinclude", "-Isrc",
                    "src/arena_test.c", "build/vectors.o", "libedgevit_model.a", "-lm", "-o", "arena_test"],
                   cwd=build, check=True, capture_output=True)
    done = subprocess.run(["./arena_test"], cwd=build, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "same 16", (done.returncode, done.stdout, done.stderr)


@needs_host
def test_edgevit_run_json_carries_measured_latency(artifacts) -> None:
    """`edgevit run DIR --runner host --json --bench-runs 5 --threads 2`: outputs checked as before plus
    the bench program's latency figures (the issue's acceptance keys)."""
    done = subprocess.run([sys.executable, "-m", "edgevit.cli", "run", str(artifacts["int8"]), "--runner", "host",
                           "--count", "16", "--json", "--bench-runs", "5", "--threads", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["matches"] == result["count"] == 16
    assert 0 < result["latency_ms_median"] <= result["latency_ms_p90"] < 10_000
    assert result["threads"] == 2 and result["bench_runs"] == 5
    assert 100_000 < result["peak_rss_bytes"] < 1 << 30  # the bench's own RSS, not the Python runner's
    assert result["latency_note"].startswith("measured on this machine")
    skipped = run_artifact(artifacts["int8"], CpuTarget().runners()["host"](bench_runs=0), count=2, progress=False)
    assert skipped["bench_runs"] == 0 and "latency_ms_median" not in skipped and "skipped" in skipped["latency_note"]


def test_qemu_runner_refuses_bench_options(artifacts) -> None:
    done = subprocess.run([sys.executable, "-m", "edgevit.cli", "run", str(artifacts["int8"]), "--runner", "qemu",
                           "--bench-runs", "10"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--bench-runs: the qemu runner does not bench" in done.stderr
    assert "emulated time means nothing" in done.stderr


def test_runners_refuse_what_they_cannot_run(artifacts) -> None:
    with pytest.raises(UserInputError, match="runs natively .* use --runner host"):
        run_artifact(artifacts["int8"], "qemu", progress=False)
    with pytest.raises(UserInputError, match="--runner 'serial' cannot run .*cpu artifact.*runners that can: host"):
        run_artifact(artifacts["int8"], "serial", progress=False)
    host = CpuTarget().runners()["host"]()
    with pytest.raises(UserInputError, match=r"'rpi4' .*cannot run natively .*missing: arch aarch64.*--runner qemu"):
        host.check(None, load_profile("rpi4"))


def test_estimate_is_a_ram_pool_with_a_latency() -> None:
    from edgevit.lower.from_model import lower_float
    from edgevit.model.checkpoint import load_checkpoint

    program = lower_float(load_checkpoint(ZOO))
    target = get_target(load_profile("host"))
    costs = target.estimate(program, load_profile("host"))
    (ram,) = costs.pools
    assert ram.name == "ram" and ram.used == costs.activation_bytes + weight_bytes(program) and ram.fits
    assert costs.latency_ms > 0 and costs.figures["latency_basis"] == "calibrated" and costs.plan.arena_bytes == costs.activation_bytes
    assert target.supports(program, load_profile("rpi4")) == []
    two = SimpleNamespace(inputs=["a"], outputs=["b", "c"], kernels=[])
    assert "one input and gives one output" in target.supports(two, load_profile("host"))[0]
    with pytest.raises(UserInputError, match="the cpu target has no build option"):
        target.check_options({"schedule": "fast"})
    target.check_options({"threads": 4})
    for bad in (0, 17, 2.5, True):
        with pytest.raises(UserInputError, match="--threads .*integer 1..16"):
            target.check_options({"threads": bad})


def test_over_budget_ram_exits_3(tmp_path) -> None:
    small = tmp_path / "small.yaml"
    # holds the 556,072 B of float weights (compile's early check passes) but not the arena as well
    small.write_text((profile_dir() / "host.yaml").read_text().replace("ram_bytes: 8GiB", "ram_bytes: 560KiB"))
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
    assert sealed["target"] == {"kind": "cpu", "runners": ["host", "qemu", "ssh"], "default_runner": "qemu"}
