"""edgevit checkpoints: spec + weights + preprocessing, as a directory or one file.

Directory form (what `edgevit train` writes and the zoo ships):
    spec.yaml            the ViTSpec (authoritative)
    model.safetensors    weights; metadata holds the spec again, the preprocessing
                         (JSON) and free-form info (recipe, metrics)
Single-file form: just a `.safetensors` file whose metadata holds the spec.
Every load checks weights against the spec and fails on the first mismatching key.
Saving writes each file through edgevit/atomic_write.py: a temporary sibling renamed over the
target, so a killed save leaves the previous file whole, and the next save removes its leftovers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from edgevit.atomic_write import make_dir, write_file_atomically
from edgevit.data.normalize import Normalization
from edgevit.errors import CheckpointError, EdgevitError
from edgevit.model.footprint import check_model_fits
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
    check_finite_weights(state, source)


def check_finite_weights(state: Mapping[str, torch.Tensor], source: str) -> None:
    """CheckpointError naming the first tensor of `state` (in key order) holding NaN or infinite
    values, with how many and where the first is: such weights compile to garbage or fail late."""
    for key in sorted(state):
        t = state[key]
        if not (torch.is_floating_point(t) or torch.is_complex(t)):
            continue
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0])
            value = t[first].item() if first else t.item()
            raise CheckpointError(f"{source}: tensor {key!r} holds {int(bad.sum()):,} non-finite value(s) (first: "
                                  f"{value} at index {list(first)}); the weights are broken (a diverged training?): "
                                  "retrain or use another checkpoint")


def model_from_state_dict(
    spec: ViTSpec, state: Mapping[str, torch.Tensor], preprocess: Normalization | None, source: str
) -> VisionTransformer:
    """Build the module for `spec` and load `state` into it after a strict key/shape check and a
    check that every weight is finite; InfeasibleError (exit 3) first when the spec's model cannot
    fit this machine's memory (model/footprint.py)."""
    check_model_fits(spec, source)
    model = VisionTransformer(spec, preprocess)
    check_state_dict(model, state, source)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return model.eval()


def save_checkpoint(model: VisionTransformer, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write `model` as a checkpoint directory (or a single file if `path` ends in .safetensors).

    Each file is written atomically (edgevit/atomic_write.py): a temporary sibling renamed over the
    target; leftovers of a killed save are removed first. UserInputError naming the path when it
    cannot be written (read-only place, below a file, a directory where the file should be).
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
        return write_file_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    make_dir(path)
    write_file_atomically(path / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    write_file_atomically(path / SPEC_FILE, model.spec.to_yaml())
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
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None
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
