"""Smoke tests through the real console script (installed by `pip install -e .`)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EDGEVIT = shutil.which("edgevit") or str(Path(sys.executable).parent / "edgevit")


def run(*args, check=True):
    r = subprocess.run([EDGEVIT, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"edgevit {' '.join(map(str, args))} exited {r.returncode}:\n{r.stderr}")
    return r


def test_help_lists_commands():
    out = run("--help").stdout
    for cmd in ("train", "eval", "profiles", "export-onnx"):
        assert cmd in out


def test_train_eval_resume_export(tmp_path, synthetic_npz):
    spec = tmp_path / "s.yaml"
    spec.write_text("image_size: 28\nin_channels: 1\npatch_size: 7\nembed_dim: 8\nnum_classes: 10\n"
                    "depth: 1\nheads: 2\nmlp_hidden: 16\n")
    out = tmp_path / "run"
    run("train", "--spec", spec, "--data", synthetic_npz, "--epochs", "1", "--out", out, "--threads", "1")
    assert (out / "model.safetensors").is_file() and (out / "spec.yaml").is_file()
    again = run("train", "--spec", spec, "--data", synthetic_npz, "--epochs", "1", "--out", out, "--threads", "1")
    assert "wrote" in again.stdout  # nothing left to train: resumes straight to the end
    clash = run("train", "--spec", spec, "--data", synthetic_npz, "--epochs", "2", "--out", out, check=False)
    assert clash.returncode == 2 and "epochs" in clash.stderr
    result = json.loads(run("eval", out, "--data", synthetic_npz, "--json", "--limit", "20").stdout)
    assert set(result) >= {"top1", "macs", "params"} and result["images"] == 20
    assert 0.0 <= result["top1"] <= 1.0 and result["params"] > 0
    run("export-onnx", out, "--out", tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").stat().st_size > 1000


def test_bad_inputs_exit_2_with_one_clear_line(tmp_path):
    r = run("eval", tmp_path / "missing", check=False)
    assert r.returncode == 2 and "missing: not found" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_size: 28\nin_channels: 1\npatch_size: 5\nembed_dim: 8\nnum_classes: 10\ndepth: 1\nheads: 2\n")
    r = run("train", "--spec", bad, "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and "patch_size" in r.stderr
    r = run("eval", tmp_path, "--data", tmp_path / "nope.npz", check=False)
    assert r.returncode == 2


@pytest.mark.skipif(not Path("models/fmnist-tiny/model.safetensors").exists(), reason="zoo model not trained")
def test_zoo_model_evaluates():
    result = json.loads(run("eval", "models/fmnist-tiny", "--data", "fashion-mnist", "--json", "--limit", "500").stdout)
    assert result["params"] == 139018 and result["top1"] > 0.8


def test_spec_with_a_smaller_input_resolution_trains_and_evaluates_on_resized_data(tmp_path, synthetic_npz):
    spec = tmp_path / "s14.yaml"
    spec.write_text("image_size: 14\nin_channels: 1\npatch_size: 7\nembed_dim: 8\nnum_classes: 10\n"
                    "depth: 1\nheads: 2\nmlp_hidden: 16\n")
    out = tmp_path / "run14"
    run("train", "--spec", spec, "--data", synthetic_npz, "--epochs", "1", "--out", out, "--threads", "1")
    result = json.loads(run("eval", out, "--data", synthetic_npz, "--json", "--limit", "20").stdout)
    assert result["images"] == 20 and 0.0 <= result["top1"] <= 1.0
    big = tmp_path / "s56.yaml"
    big.write_text(spec.read_text().replace("image_size: 14", "image_size: 56"))
    r = run("train", "--spec", big, "--data", synthetic_npz, "--epochs", "1", "--out", tmp_path / "r56", check=False)
    assert r.returncode == 2 and "56x56" in r.stderr and "28x28" in r.stderr
