"""Command lines that ask for more than a machine has, run in a subprocess under an address-space limit
(the in-process fuzzer leaves them out: a thread or memory bomb there would take the test process, or
the machine, down with it). The CLI fuzzer's property must still hold: exit 0, 2 or 3, no traceback,
nothing left in the output place unless the exit was 0. Slow: each is a fresh Python process.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fuzz.cli_inputs import SPEC

LIMIT_BYTES = 4 * 2**30
ROOT = Path(__file__).resolve().parents[2]


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


@pytest.fixture
def inputs(tmp_path) -> dict:
    """A valid spec, an npz for it, a checkpoint of it, a spec with the issue's embed_dim 100000."""
    from edgevit.model.checkpoint import save_checkpoint
    from edgevit.model.spec import ViTSpec
    from edgevit.model.vit import build_model

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (32, 8, 8), dtype=np.uint8),
             y_train=rng.integers(0, 3, 32), x_test=rng.integers(0, 256, (8, 8, 8), dtype=np.uint8),
             y_test=rng.integers(0, 3, 8))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump({**SPEC, "embed_dim": 100000}))
    save_checkpoint(build_model(ViTSpec.from_dict(SPEC), seed=0), tmp_path / "ckpt")
    (tmp_path / "out").mkdir()
    return {"dir": tmp_path, "npz": tmp_path / "d.npz", "spec": tmp_path / "spec.yaml",
            "wide": tmp_path / "wide.yaml", "ckpt": tmp_path / "ckpt", "out": tmp_path / "out"}


CASES = {
    "train-threads": ["train", "--spec", "{spec}", "--data", "{npz}", "--epochs", "1", "--out", "{out}/run",
                      "--threads", "100000"],
    "train-wide-spec": ["train", "--spec", "{wide}", "--data", "{npz}", "--epochs", "1", "--out", "{out}/run"],
    "compile-threads": ["compile", "{ckpt}", "--profile", "host", "--data", "{npz}", "--vectors", "1",
                        "--out", "{out}/art", "--threads", "100000"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_resource_bombs_are_refused_or_survived(inputs, case) -> None:
    args = [a.format(**{k: str(v) for k, v in inputs.items()}) for a in CASES[case]]
    env = {**os.environ, "TMPDIR": str(inputs["dir"])}
    r = subprocess.run([sys.executable, "-m", "edgevit", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600, preexec_fn=_limited)
    assert r.returncode in (0, 2, 3), f"exit {r.returncode}:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    if r.returncode != 0:
        assert list(inputs["out"].iterdir()) == [], "a failed command left files in the output place"
