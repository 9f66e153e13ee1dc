"""Crash-safe writes of the model layer: checkpoints (directory and single file), ONNX export,
training state and metrics, imported checkpoints (`edgevit import --force`). Each writer removes
dead writers' leftovers (keeping live ones), replaces its target only whole, and names the path
when it cannot write."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgevit.errors import UserInputError
from edgevit.model.checkpoint import SPEC_FILE, WEIGHTS_FILE, checkpoint_info, load_checkpoint, save_checkpoint
from edgevit.model.spec import ViTSpec
from edgevit.model.train import STATE_FILE, TrainConfig, _save_state
from edgevit.model.vit import build_model
from tests.atomic_helpers import PAUSE, interrupt_before_rename, kill_at_pause, leftovers, plant_dead, plant_live

SPEC = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1, patch_size=2,
                       embed_dim=8, num_classes=3)


@pytest.fixture
def model():
    return build_model(SPEC, seed=0)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _target(tmp_path: Path, single_file: bool) -> tuple[Path, Path, list[str]]:
    """(checkpoint path, the directory its files are written in, their names)."""
    if single_file:
        return tmp_path / "m.safetensors", tmp_path, ["m.safetensors"]
    return tmp_path / "ckpt", tmp_path / "ckpt", [WEIGHTS_FILE, SPEC_FILE]


@pytest.mark.parametrize("single_file", [False, True])
def test_checkpoint_save_removes_dead_leftovers_and_keeps_live_ones(tmp_path, model, single_file):
    path, parent, names = _target(tmp_path, single_file)
    dead = [plant_dead(parent, n) for n in names]
    live = [plant_live(parent, n) for n in names]
    save_checkpoint(model, path)
    assert not any(p.exists() for p in dead) and all(p.exists() for p in live)
    assert _same_weights(load_checkpoint(path), model)


@pytest.mark.parametrize("single_file", [False, True])
def test_an_interrupted_checkpoint_save_keeps_the_previous_one(tmp_path, model, single_file, monkeypatch):
    path, parent, _names = _target(tmp_path, single_file)
    save_checkpoint(model, path, info={"n": 1})
    interrupt_before_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(build_model(SPEC, seed=1), path, info={"n": 2})
    monkeypatch.undo()
    assert checkpoint_info(path) == {"n": 1} and _same_weights(load_checkpoint(path), model)
    assert leftovers(parent) == []


KILLED_SAVE = PAUSE + """
from edgevit.model import checkpoint
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model

real = checkpoint.save_file
def half_then_pause(tensors, path, metadata=None):
    real(tensors, path, metadata=metadata)
    with open(path, "r+b") as f:
        f.truncate(100)  # killed half-way through the weights
    pause()

checkpoint.save_file = half_then_pause
checkpoint.save_checkpoint(build_model(ViTSpec.from_yaml(SPEC_YAML), seed=1), Path(OUT), info={"n": 2})
"""


@pytest.mark.parametrize("single_file", [False, True])
def test_a_checkpoint_save_killed_mid_write_keeps_the_previous_one_and_the_next_save_cleans_up(
        tmp_path, model, single_file):
    path, parent, _names = _target(tmp_path, single_file)
    save_checkpoint(model, path, info={"n": 1})
    kill_at_pause(f"OUT = {str(path)!r}\nSPEC_YAML = {SPEC.to_yaml()!r}\n" + KILLED_SAVE, tmp_path / "flag")
    assert len(leftovers(parent)) == 1
    assert checkpoint_info(path) == {"n": 1} and _same_weights(load_checkpoint(path), model)
    save_checkpoint(model, path, info={"n": 3})
    assert checkpoint_info(path) == {"n": 3} and leftovers(parent) == []


def test_checkpoint_write_errors_name_the_path(tmp_path, model):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match=r"ckpt: cannot write there: .*file is a file, not a directory"):
        save_checkpoint(model, tmp_path / "file" / "ckpt")
    with pytest.raises(UserInputError, match="file: exists and is not a directory"):
        save_checkpoint(model, tmp_path / "file")
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(UserInputError, match=r"d\.safetensors: is a directory"):
        save_checkpoint(model, tmp_path / "d.safetensors")
    with pytest.raises(UserInputError, match="/sys/edgevit-ckpt"):
        save_checkpoint(model, Path("/sys/edgevit-ckpt"))


# --- ONNX export ----------------------------------------------------------------------------------

def test_onnx_export_to_an_existing_directory_is_a_clear_error_and_leaves_nothing(tmp_path, model):
    from edgevit.model.onnx_export import export_onnx

    (tmp_path / "m.onnx").mkdir()
    with pytest.raises(UserInputError, match=r"m\.onnx: is a directory; give the path of a file") as e:
        export_onnx(model, tmp_path / "m.onnx")
    assert e.value.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"] and list((tmp_path / "m.onnx").iterdir()) == []


def test_onnx_export_is_atomic_and_cleans_dead_leftovers(tmp_path, model, monkeypatch):
    import onnx

    from edgevit.model.onnx_export import export_onnx

    out = tmp_path / "m.onnx"
    dead, live = plant_dead(tmp_path, "m.onnx"), plant_live(tmp_path, "m.onnx")
    export_onnx(model, out)
    assert not dead.exists() and live.exists()
    live.unlink()
    first = out.read_bytes()
    assert {p.key for p in onnx.load(str(out)).metadata_props} >= {"edgevit.spec", "edgevit.preprocess"}
    interrupt_before_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(build_model(SPEC, seed=1), out)
    assert out.read_bytes() == first and leftovers(tmp_path) == []
    monkeypatch.undo()
    with pytest.raises(UserInputError, match="file is a file"):
        (tmp_path / "file").write_text("x")
        export_onnx(model, tmp_path / "file" / "m.onnx")


# --- training state -------------------------------------------------------------------------------

def _state_args(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt, sched


def test_training_state_is_replaced_whole_and_dead_leftovers_go(tmp_path, model, monkeypatch):
    opt, sched = _state_args(model)
    dead = plant_dead(tmp_path, STATE_FILE)
    _save_state(tmp_path, model, opt, sched, 1, [{"epoch": 1}], SPEC, TrainConfig(), "synthetic")
    assert not dead.exists() and torch.load(tmp_path / STATE_FILE, weights_only=False)["epoch"] == 1
    interrupt_before_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _save_state(tmp_path, model, opt, sched, 2, [{"epoch": 2}], SPEC, TrainConfig(), "synthetic")
    monkeypatch.undo()
    assert torch.load(tmp_path / STATE_FILE, weights_only=False)["epoch"] == 1 and leftovers(tmp_path) == []


# --- imported checkpoints (edgevit import --force) ------------------------------------------------

@pytest.mark.parametrize("single_file", [False, True])
def test_import_replaces_the_checkpoint_whole(tmp_path, model, single_file, monkeypatch):
    from edgevit.model.importers.cli import _save_replacing

    out = tmp_path / ("m.safetensors" if single_file else "ckpt")

    def save(result, path):
        return save_checkpoint(result, path, info={"seed": result.seed})

    first, second = build_model(SPEC, seed=0), build_model(SPEC, seed=1)
    first.seed, second.seed = 0, 1
    plant_dead(tmp_path, out.name, directory=not single_file)
    _save_replacing(first, out, save)
    assert checkpoint_info(out) == {"seed": 0} and leftovers(tmp_path) == []
    interrupt_before_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _save_replacing(second, out, save)
    monkeypatch.undo()
    assert checkpoint_info(out) == {"seed": 0} and leftovers(tmp_path) == []
    _save_replacing(second, out, save)
    assert checkpoint_info(out) == {"seed": 1} and leftovers(tmp_path) == []
