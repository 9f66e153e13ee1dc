"""edgevit checkpoints: spec + weights + preprocessing, as a directory or one file.

Directory form (what `edgevit train` writes and the zoo ships):
    spec.yaml            the ViTSpec (authoritative)
    model.safetensors    weights; metadata holds the spec again, the preprocessing
                         (JSON) and free-form info (recipe, metrics)
Single-file form: just a `.safetensors` file whose metadata holds the spec.
Every load checks weights against the spec and fails on the first mismatching key.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from edgevit.data.normalize import Normalization
from edgevit.errors import CheckpointError, EdgevitError
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import VisionTransformer

FORMAT = "edgevit-checkpoint"
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "spec.yaml"


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError on the first key of `state` that is missing, extra or mis-shaped for `model`."""
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key!r} (the spec expects shape {tuple(ref.shape)})")
        got = tuple(state[key].shape)
        if got != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {got} but the spec expects {tuple(ref.shape)}"
            )
    for key in state:
        if key not in expected:
            raise CheckpointError(f"{source}: unexpected key {key!r} (shape {tuple(state[key].shape)}) not in the spec")


def model_from_state_dict(
    spec: ViTSpec, state: Mapping[str, torch.Tensor], preprocess: Normalization | None, source: str
) -> VisionTransformer:
    """Build the module for `spec` and load `state` into it after a strict key/shape check."""
    model = VisionTransformer(spec, preprocess)
    check_state_dict(model, state, source)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return model.eval()


def save_checkpoint(model: VisionTransformer, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write `model` as a checkpoint directory (or a single file if `path` ends in .safetensors).

    The write is atomic: files go to a temporary sibling first, then are renamed.
    """
    path = Path(path)
    meta = {
        "format": FORMAT,
        "version": "1",
        "spec": model.spec.to_yaml(),
        "preprocess": json.dumps(model.preprocess.to_dict()),
        "info": json.dumps(info or {}, sort_keys=True),
    }
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path
    path.mkdir(parents=True, exist_ok=True)
    for name, write in ((WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata=meta)),
                        (SPEC_FILE, lambda p: p.write_text(model.spec.to_yaml()))):
        fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{name}.")
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path / name)
    return path


def read_metadata(weights: Path) -> dict[str, str]:
    """The string metadata of a safetensors file."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None


def load_checkpoint(path: str | Path) -> VisionTransformer:
    """Load a checkpoint directory or .safetensors file into an eval-mode VisionTransformer."""
    path = Path(path)
    if path.is_dir():
        weights, spec_file = path / WEIGHTS_FILE, path / SPEC_FILE
        if not weights.is_file():
            raise CheckpointError(f"{path}: no {WEIGHTS_FILE} in the checkpoint directory")
        meta = read_metadata(weights)
        if spec_file.is_file():
            spec = ViTSpec.load(spec_file)
        elif "spec" in meta:
            spec = ViTSpec.from_yaml(meta["spec"], source=f"{weights} (metadata)")
        else:
            raise CheckpointError(f"{path}: no {SPEC_FILE} and no spec in {WEIGHTS_FILE}'s metadata")
    elif path.is_file() and path.suffix == ".safetensors":
        weights = path
        meta = read_metadata(weights)
        if "spec" not in meta:
            raise CheckpointError(f"{path}: safetensors file has no `spec` in its metadata; "
                                  f"put it in a directory beside a {SPEC_FILE}")
        spec = ViTSpec.from_yaml(meta["spec"], source=f"{path} (metadata)")
    elif path.exists():
        raise CheckpointError(f"{path}: expected a checkpoint directory or a .safetensors file "
                              "(an ONNX file or a timm / Hugging Face checkpoint: `edgevit import` it first, see docs/import.md)")
    else:
        raise CheckpointError(f"{path}: checkpoint not found")
    preprocess = _preprocess_from_meta(meta, weights)
    state = load_file(str(weights))
    return model_from_state_dict(spec, state, preprocess, str(weights))


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The free-form `info` dict stored with a checkpoint (recipe, metrics); {} if none."""
    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    meta = read_metadata(weights)
    try:
        return json.loads(meta.get("info", "{}"))
    except json.JSONDecodeError:
        return {}


def _preprocess_from_meta(meta: dict[str, str], weights: Path) -> Normalization | None:
    if "preprocess" not in meta:
        return None
    try:
        return Normalization.from_dict(json.loads(meta["preprocess"]))
    except (json.JSONDecodeError, EdgevitError, TypeError, KeyError) as e:
        raise CheckpointError(f"{weights}: bad `preprocess` metadata: {e}") from None
