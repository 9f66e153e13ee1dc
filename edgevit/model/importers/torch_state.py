"""Import PyTorch ViT checkpoints (timm or Hugging Face key layout) as edgevit models.

Entry points:
- `import_state_dict(path, heads=, config=)`: one .pth/.pt/.bin/.safetensors file; the key layout
  (timm or Hugging Face, transformers 4.x or 5.x names) is detected from the keys. An edgevit
  checkpoint file (.safetensors with edgevit metadata) is loaded as is.
- `import_hf_directory(path, heads=)`: a model directory as `save_pretrained` writes it (config.json
  + model.safetensors / pytorch_model.bin, possibly sharded, optional preprocessor_config.json);
  timm models saved to the Hub (config.json with `architecture`) load the same way.

The architecture comes from tensor shapes; what shapes cannot tell (attention heads, LayerNorm
eps, pooling) comes from `heads=`, a config file (`hf_config`) or the layout's default eps (timm
1e-6, transformers 1e-12). Mean/std come from a preprocessor_config.json or a config file; a bare
state_dict carries none, and `preprocess_source` is then None (the caller must say so loudly).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

from edgevit.errors import CheckpointError
from edgevit.model.checkpoint import FORMAT as EDGEVIT_FORMAT
from edgevit.model.checkpoint import load_checkpoint, model_from_state_dict, read_metadata
from edgevit.model.importers import ImportResult
from edgevit.model.importers.hf_config import (
    ModelHints, check_activation, merge_heads, read_model_config, read_preprocessor_config,
)
from edgevit.model.importers.hf_layout import HF_NORM_EPS, hf_generation, hf_to_timm, is_hf_layout
from edgevit.model.importers.timm_layout import TIMM_NORM_EPS, convert_timm_state

STATE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".tar", ".ckpt")
HF_MODEL_TYPES = ("vit", "deit")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WRAPPERS = ("model", "state_dict", "model_ema", "state_dict_ema")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a .pth/.pt/.bin (torch) or .safetensors state_dict: parameter name -> tensor.

    Unwraps {'model': ...} / {'state_dict': ...} (training checkpoints) and a DDP 'module.' prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: state_dict file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad or unsafe pickles
        raise CheckpointError(f"{path}: not a torch state_dict ({type(e).__name__}: {e})") from None
    for wrapper in _WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def import_state_dict(path: str | Path, *, heads: int | None = None,
                      config: str | Path | None = None) -> ImportResult:
    """Import one timm or Hugging Face state_dict file (.pth/.pt/.bin/.safetensors) as an eval-mode model.

    heads: attention heads per block (shapes cannot tell); config: a JSON/YAML file with what shapes
    cannot tell (a Hugging Face or timm config.json works). Raises CheckpointError naming the key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix not in STATE_SUFFIXES:
        raise CheckpointError(f"{path}: not a PyTorch state_dict file (expected one of {', '.join(STATE_SUFFIXES)})")
    if path.suffix == ".safetensors" and read_metadata(path).get("format") == EDGEVIT_FORMAT:
        return _edgevit_checkpoint(path)
    hints = read_model_config(config) if config is not None else ModelHints()
    beside = path.parent / "config.json"
    option = f"--heads N (Python: heads=N) or --config {beside}" if config is None and beside.is_file() else None
    return _import(read_state_dict(path), hints, heads, source=str(path), name=_name_of(path), heads_option=option)


def import_hf_directory(path: str | Path, *, heads: int | None = None) -> ImportResult:
    """Import a Hugging Face model directory (config.json + weights [+ preprocessor_config.json]).

    heads overrides nothing: given together with config.json's num_attention_heads, they must agree.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: no config.json, so not a Hugging Face model directory; import the "
                              "weights file itself and pass --heads N")
    hints = read_model_config(path / "config.json")
    state = _read_directory_weights(path)
    result = _import(state, hints, heads, source=str(path), name=_name_of(path))
    preprocessor = path / "preprocessor_config.json"
    if preprocessor.is_file():
        _apply_preprocessor(result, preprocessor)
    return result


def _import(state: Mapping[str, torch.Tensor], hints: ModelHints, heads: int | None, *,
            source: str, name: str, heads_option: str | None = None) -> ImportResult:
    """Detect the layout, convert, build the model; preprocessing from the hints when they give it."""
    check_activation(hints)
    if hints.kind == "huggingface" and hints.model_type not in HF_MODEL_TYPES:
        raise CheckpointError(f"{hints.source}: model_type {hints.model_type!r} is not a ViT/DeiT; edgevit imports "
                              f"Hugging Face models of type {', '.join(HF_MODEL_TYPES)}")
    notes: list[str] = []
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in state.values()})
    tensors = len(state)
    if dtypes != ["float32"]:
        notes.append(f"weights stored as {', '.join(dtypes)}: converted to float32")
    if is_hf_layout(state):
        fmt, layout, default_eps = "huggingface", f"huggingface-{hf_generation(state)}", HF_NORM_EPS
        state, hf_notes = hf_to_timm(state, source)
        notes += hf_notes
    elif "patch_embed.proj.weight" in state or any(k.startswith(("blocks.", "norm_pre.")) for k in state):
        fmt, layout, default_eps = "timm", "timm", TIMM_NORM_EPS
    else:
        first = ", ".join(list(state)[:4])
        raise CheckpointError(f"{source}: neither the timm key layout (patch_embed.proj.weight, blocks.N...) nor "
                              f"Hugging Face's (vit.embeddings.patch_embeddings.projection.weight, ...): "
                              f"keys start {first}")
    eps = hints.norm_eps if hints.norm_eps is not None else default_eps
    if hints.norm_eps is None:
        notes.append(f"LayerNorm eps {eps:g}: the {fmt} default (no config said otherwise)")
    option = {"heads_option": heads_option} if heads_option else {}
    conv = convert_timm_state(state, heads=merge_heads(heads, hints), source=source, norm_eps=eps,
                              global_pool=hints.global_pool, image_size=hints.image_size, name=name, **option)
    spec = conv.spec
    if hints.in_channels is not None and hints.in_channels != spec.in_channels:
        raise CheckpointError(f"{hints.source}: says {hints.in_channels} input channels but the patch embedding "
                              f"takes {spec.in_channels}")
    preprocess = hints.preprocess
    if preprocess is not None and preprocess.channels != spec.in_channels:
        raise CheckpointError(f"{hints.preprocess_source}: mean/std give {preprocess.channels} channel(s) but the "
                              f"model takes {spec.in_channels}")
    if spec.pool == "cls_dist":
        notes.append("distilled DeiT: the class and distillation heads are averaged, as DeiT does at inference")
    elif spec.distill_token:
        notes.append("distillation token kept; only the class-token classifier is used (DeiTForImageClassification)")
    model = model_from_state_dict(spec, conv.state, preprocess, source)
    report = {"layout": layout, "tensors": tensors, "dtypes": dtypes, "config": hints.source, "spec": spec.to_dict()}
    return ImportResult(model=model, source=source, format=fmt, preprocess_source=hints.preprocess_source,
                        notes=notes + conv.notes, report=report)


def _apply_preprocessor(result: ImportResult, path: Path) -> None:
    """Set the model's mean/std from a preprocessor_config.json; note an input size that differs."""
    spec = result.model.spec
    norm, info = read_preprocessor_config(path, spec.in_channels)
    result.model.preprocess = norm
    result.preprocess_source = str(path)
    result.report["preprocessor"] = info
    size = info["input_size"]
    if size is not None and size != spec.image_size:
        result.notes.append(f"{path.name} hands the model {size} x {size} images but the model takes "
                            f"{spec.image_size} x {spec.image_size}: resize your data to {spec.image_size}")


def _read_directory_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict of a save_pretrained directory: one weights file or the shards of an index."""
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return read_state_dict(path / name)
    for name in _WEIGHT_FILES:
        index = path / f"{name}.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise CheckpointError(f"{index}: not a shard index (expected a 'weight_map' of key -> file)") from None
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(read_state_dict(path / shard))
            return state
    raise CheckpointError(f"{path}: no weights: expected {' or '.join(_WEIGHT_FILES)} (or a sharded *.index.json)")


def _edgevit_checkpoint(path: Path) -> ImportResult:
    """An edgevit .safetensors checkpoint: loaded as is (its spec and preprocessing are in the metadata)."""
    model = load_checkpoint(path)
    has_pre = "preprocess" in read_metadata(path)
    return ImportResult(model=model, source=str(path), format="edgevit",
                        preprocess_source=f"{path} (edgevit checkpoint metadata)" if has_pre else None,
                        notes=["an edgevit checkpoint: loaded as is"], report={"spec": model.spec.to_dict()})


def _name_of(path: Path) -> str:
    """A spec name from a file or directory name (the stem)."""
    return path.stem if path.is_file() else path.name


__all__ = ["import_hf_directory", "import_state_dict", "read_state_dict"]
