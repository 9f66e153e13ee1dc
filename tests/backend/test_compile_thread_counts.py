"""`edgevit compile` gives the same artifact bytes whatever the BLAS and torch thread counts.

Each compile runs in its own process with other thread settings in its environment (OpenBLAS reads
OPENBLAS_NUM_THREADS when it loads; EDGEVIT_THREADS sets torch's intra-op pool), as on machines
with other core counts, and every file of the artifacts is compared byte for byte. The model's MLP
has 472 channels: a reduction OpenBLAS rounds differently with 2 threads than with 1 (see
tests/test_threads_policy.py), so the int8 scales and the float test vectors would differ without
edgevit/threads.py. Five compiles of a small model: slow-marked (about 2 minutes on 2 busy cores);
tests/test_threads_policy.py checks the same in-process in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgevit.model.checkpoint import save_checkpoint
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model

pytestmark = pytest.mark.slow

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "EDGEVIT_THREADS")
SETTINGS = {  # name -> extra environment
    "default": {},
    "blas1": {"OPENBLAS_NUM_THREADS": "1"},
    "blas2-torch1": {"OPENBLAS_NUM_THREADS": "2", "EDGEVIT_THREADS": "1"},
    "torch2": {"EDGEVIT_THREADS": "2", "OMP_NUM_THREADS": "2"},
}


def compile_with(ckpt: Path, out: Path, env_extra: dict[str, str], passes: str | None) -> None:
    """`edgevit compile` of `ckpt` for stm32f746-disco into `out` in a child process with `env_extra`."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(env_extra)
    cmd = [sys.executable, "-m", "edgevit", "compile", str(ckpt), "--profile", "stm32f746-disco", "--out", str(out),
           "--data", "synthetic:1x28x28", "--vectors", "5", "--json"]
    if passes:
        cmd += ["--passes", passes, "--calib-size", "64"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def artifact_bytes(root: Path) -> dict[str, bytes]:
    """relative path -> bytes of every file under `root`."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def odd_checkpoint(tmp_path_factory) -> Path:
    """A one-block 28x28 ViT (random weights, seed 0) with a 472-channel MLP, saved as a checkpoint."""
    spec = ViTSpec.uniform(depth=1, heads=2, head_dim=16, mlp_hidden=472, image_size=28, in_channels=1,
                           patch_size=4, embed_dim=32, num_classes=10, name="odd")
    return save_checkpoint(build_model(spec, seed=0), tmp_path_factory.mktemp("ckpt") / "odd")


def test_int8_artifact_bytes_do_not_depend_on_thread_counts(odd_checkpoint, tmp_path):
    arts = {}
    for name, env in SETTINGS.items():
        compile_with(odd_checkpoint, tmp_path / name, env, "quant(w=8,a=8)")
        arts[name] = artifact_bytes(tmp_path / name)
    ref = arts["default"]
    assert len(ref) > 10
    for name, files in arts.items():
        differ = sorted(f for f in set(ref) | set(files) if ref.get(f) != files.get(f))
        assert not differ, f"{name}: {differ} differ from the default-thread artifact"


def test_float_artifact_bytes_do_not_depend_on_blas_threads(odd_checkpoint, tmp_path):
    compile_with(odd_checkpoint, tmp_path / "one", SETTINGS["blas1"], None)
    compile_with(odd_checkpoint, tmp_path / "two", {"OPENBLAS_NUM_THREADS": "2"}, None)
    one, two = artifact_bytes(tmp_path / "one"), artifact_bytes(tmp_path / "two")
    assert "vectors/expected.npy" in one
    assert one == two
