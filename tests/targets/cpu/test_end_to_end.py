"""The cpu backend end to end: zoo models compiled and run through the CLI as a user would
(`edgevit compile ... --profile host|cortex-a76|rpi4` then `edgevit run --json`), and random small
ViTs through random compression pipelines compiled for the host profile through the Target API
(hypothesis), every output checked against the reference interpreter (int8 bit-exact, float32
within 1e-4 relative: backend/run.py's rules).

Default suite: fmnist-tiny int8 and float32 on the host, and 3 random pipelines. Slow: fmnist-small
on the host, both zoo models under qemu-aarch64 for cortex-a76 and rpi4 (50 vectors int8), more
random pipelines.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.backend.artifact_write import seal, write_atomically
from edgevit.backend.run import run_artifact
from edgevit.backend.target import get_target
from edgevit.backend.vectors import random_vectors
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import missing_on_host
from tests.conftest import cheap_pipelines, vit_specs

ROOT = Path(__file__).resolve().parents[3]
MODELS = ROOT / "models"
QUANT = "quant(w=8,a=8)"
HOST_VECTORS = 8
QEMU_VECTORS = 50

needs_host = pytest.mark.skipif(bool(missing_on_host(load_profile("host"))) or shutil.which("gcc") is None,
                                reason="this machine cannot run the host profile's code (x86-64-v3 + gcc)")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-aarch64") is None or shutil.which("aarch64-linux-gnu-gcc") is None,
                                reason="needs qemu-aarch64 and aarch64-linux-gnu-gcc (apt-get install qemu-user "
                                       "gcc-aarch64-linux-gnu)")


def edgevit(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess; AssertionError with its stderr when it fails."""
    proc = subprocess.run([sys.executable, "-m", "edgevit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"edgevit {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def compile_and_run(tmp: Path, model: str, profile: str, dtype: str, vectors: int, runner: str) -> dict:
    """`edgevit compile models/MODEL --profile PROFILE [--passes quant] --vectors N` then
    `edgevit run --runner RUNNER --json` (host: --bench-runs 20); the run's result dict (its compile
    summary under "compile")."""
    out = tmp / f"{model}-{profile}-{dtype}"
    passes = ["--passes", QUANT] if dtype == "int8" else []
    summary = json.loads(edgevit("compile", str(MODELS / model), "--profile", profile, *passes, "--out", str(out),
                                 "--vectors", str(vectors), "--json").stdout)
    bench = ["--bench-runs", "20"] if runner == "host" else []
    result = json.loads(edgevit("run", str(out), "--runner", runner, *bench, "--json").stdout)
    return {**result, "compile": summary}


def assert_all_match(result: dict, dtype: str, count: int) -> None:
    """Every vector matches the reference by the dtype's rule; the device's top-1 is the reference's."""
    assert result["dtype"] == dtype and result["count"] == count
    assert result["matches"] == count, f"mismatches {result['mismatches']}, max |error| {result['max_abs_error']}"
    assert result["match_rule"] == "bit-exact" if dtype == "int8" else result["match_rule"].startswith("max |out")
    assert result["top1"] == result["reference_top1"]


@needs_host
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_fmnist_tiny_on_the_host(tmp_path, dtype) -> None:
    result = compile_and_run(tmp_path, "fmnist-tiny", "host", dtype, HOST_VECTORS, "host")
    assert_all_match(result, dtype, HOST_VECTORS)
    assert result["runner"] == "host" and result["profile"] == "host"
    assert result["compile"]["target"] == "cpu" and result["compile"]["lowering"] == ("int8" if dtype == "int8"
                                                                                      else "float")
    assert result["bench_runs"] == 20 and 0 < result["latency_ms_median"] <= result["latency_ms_p90"]
    assert result["threads"] >= 1 and result["peak_rss_bytes"] > 0


@pytest.mark.slow
@needs_host
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_fmnist_small_on_the_host(tmp_path, dtype) -> None:
    assert_all_match(compile_and_run(tmp_path, "fmnist-small", "host", dtype, 50, "host"), dtype, 50)


@pytest.mark.slow
@needs_qemu
@pytest.mark.parametrize("profile", ["cortex-a76", "rpi4"])
@pytest.mark.parametrize("model, dtype, count", [("fmnist-tiny", "int8", QEMU_VECTORS),
                                                 ("fmnist-small", "int8", QEMU_VECTORS),
                                                 ("fmnist-tiny", "float32", HOST_VECTORS),
                                                 ("fmnist-small", "float32", HOST_VECTORS)])
def test_zoo_models_under_qemu_aarch64(tmp_path, profile, model, dtype, count) -> None:
    result = compile_and_run(tmp_path, model, profile, dtype, count, "qemu")
    assert_all_match(result, dtype, count)
    assert result["runner"] == "qemu" and result["machine"].startswith("qemu-user")


# --- random ViTs x random pipelines through the Target API --------------------------------------------------------


def calibration_data(spec, n: int = 24, seed: int = 0):
    """A small random uint8 ArrayDataset shaped for `spec` (pass calibration)."""
    from edgevit.data import ArrayDataset

    rng = np.random.default_rng(seed)
    shape = (n, spec.in_channels, spec.image_size, spec.image_size)
    return ArrayDataset(rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, spec.num_classes, n),
                        classes=[str(c) for c in range(spec.num_classes)], name="synthetic")


def build_artifact(program, profile, out: Path, count: int = 3) -> Path:
    """The Target's artifact of `program` for `profile` (a name) with `count` random vectors,
    sealed and written to `out` as `edgevit compile` does."""
    prof = load_profile(profile)
    target = get_target(prof)
    assert target.supports(program, prof) == []
    costs = target.estimate(program, prof)
    files = target.build(program, prof, costs, random_vectors(program, count))
    write_atomically(out, seal(files, target, prof), False)
    return out


def run_random_pipeline(tmp: Path, spec, seed: int, pipeline: str) -> dict:
    """A randomly weighted model of `spec` through `pipeline`, built for the host profile and run."""
    from edgevit.lower import lower
    from edgevit.model.vit import build_model
    from edgevit.passes.pipeline import run_pipeline
    from tests.lower.int8_helpers import randomise

    model = randomise(build_model(spec, seed=seed), seed)
    if pipeline:
        model, _ = run_pipeline(model, pipeline, calibration_data(spec, seed=seed))
    out = build_artifact(lower(model), "host", tmp / "artifact")
    return run_artifact(out, "host", progress=False)


def _check_random(tmp: Path, spec, seed: int, pipeline: str) -> None:
    result = run_random_pipeline(tmp, spec, seed, pipeline)
    dtype = "int8" if "quant" in pipeline else "float32"
    assert result["dtype"] == dtype and result["matches"] == result["count"] == 3, (pipeline, result["mismatches"],
                                                                                    result["max_abs_error"])


@needs_host
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(spec=vit_specs(), seed=st.integers(0, 2**16), data=st.data())
def test_random_vits_through_random_pipelines_match_the_reference(tmp_path_factory, spec, seed, data) -> None:
    _check_random(tmp_path_factory.mktemp("rand"), spec, seed, data.draw(cheap_pipelines(spec), label="pipeline"))


@pytest.mark.slow
@needs_host
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(spec=vit_specs(), seed=st.integers(0, 2**16), data=st.data())
def test_many_random_vits_through_random_pipelines(tmp_path_factory, spec, seed, data) -> None:
    _check_random(tmp_path_factory.mktemp("rand"), spec, seed, data.draw(cheap_pipelines(spec), label="pipeline"))
