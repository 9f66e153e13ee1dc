"""Config files that tell an importer what tensor shapes cannot: heads, LayerNorm eps, pooling, preprocessing.

Three kinds of model config are read by `read_model_config` (JSON or YAML):
- a Hugging Face `config.json` (it has `model_type` or `architectures`): `num_attention_heads`,
  `layer_norm_eps`, `image_size`, `num_channels`, `hidden_act`;
- a timm Hub `config.json` (it has `architecture`): `model_args` (`num_heads`, `global_pool`,
  `img_size`), `global_pool`, and `pretrained_cfg` (`mean`, `std`, `input_size`);
- a user file with only the keys of `USER_KEYS` (strict: an unknown key is refused, so a typo
  is never silently ignored).

`read_preprocessor_config` reads a Hugging Face `preprocessor_config.json`. Its processor computes
`(x * rescale_factor - image_mean) / image_std` on 0..255 pixels; edgevit's `Normalization` computes
`(x / 255 - mean) / std`, so mean = image_mean / (255 * rescale_factor) and std likewise: exact for
any rescale factor (no rescaling counts as factor 1; no normalisation as mean 0, std 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgevit.data.normalize import Normalization
from edgevit.errors import CheckpointError, EdgevitError

USER_KEYS = ("heads", "norm_eps", "image_size", "mean", "std", "global_pool", "hidden_act")
EXACT_GELU = ("gelu", "gelu_python")  # Hugging Face ACT2FN names of the exact (erf) GELU edgevit computes


@dataclass(frozen=True)
class ModelHints:
    """What a config file says about a model (None: it does not say).

    heads: attention heads per block; norm_eps: LayerNorm epsilon; image_size: input side in pixels;
    in_channels: input channels; global_pool: timm's pooling name ("token", "avg", ...); hidden_act:
    the MLP activation name; model_type / architectures: Hugging Face's; preprocess and
    preprocess_source: mean/std and where they came from; source: the file read.
    """

    source: str | None = None
    kind: str = "none"  # "huggingface", "timm", "user" or "none"
    heads: int | None = None
    norm_eps: float | None = None
    image_size: int | None = None
    in_channels: int | None = None
    global_pool: str | None = None
    hidden_act: str | None = None
    model_type: str | None = None
    architectures: tuple[str, ...] = ()
    preprocess: Normalization | None = None
    preprocess_source: str | None = None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a JSON or YAML file into a dict; CheckpointError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML/JSON'}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a mapping of config fields (got {type(data).__name__})")
    return data


def read_model_config(path: str | Path) -> ModelHints:
    """Read a Hugging Face config.json, a timm Hub config.json or a user JSON/YAML file into ModelHints."""
    data = read_config_file(path)
    if "model_type" in data or "architectures" in data:
        return _hf_hints(data, str(path))
    if "architecture" in data:
        return _timm_hints(data, str(path))
    return _user_hints(data, str(path))


def merge_heads(explicit: int | None, hints: ModelHints) -> int | None:
    """The head count: `explicit` (heads=N) or the config's; CheckpointError when both are given and differ."""
    if explicit is not None:
        if isinstance(explicit, bool) or not isinstance(explicit, int) or explicit <= 0:
            raise CheckpointError(f"heads must be a positive integer (got {explicit!r})")
        if hints.heads is not None and hints.heads != explicit:
            raise CheckpointError(f"heads={explicit} was given but {hints.source} says {hints.heads} attention heads; "
                                  "drop one of them")
        return explicit
    return hints.heads


def check_activation(hints: ModelHints) -> None:
    """Refuse an MLP activation other than the exact (erf) GELU edgevit computes."""
    act = hints.hidden_act
    if act is not None and act not in EXACT_GELU:
        raise CheckpointError(f"{hints.source}: hidden_act {act!r} is not the exact (erf) GELU edgevit's MLP computes "
                              f"(supported: {', '.join(EXACT_GELU)})")


def read_preprocessor_config(path: str | Path, channels: int) -> tuple[Normalization, dict[str, Any]]:
    """Mean/std for `channels` input channels from a Hugging Face preprocessor_config.json.

    Returns the Normalization and a report dict (image_mean, image_std, rescale_factor, input_size:
    the side of the image the processor hands the model, or None when it does not say).
    """
    data = read_config_file(path)
    where = str(path)
    do_normalize = bool(data.get("do_normalize", True))
    do_rescale = bool(data.get("do_rescale", True))
    factor = _positive_number(data.get("rescale_factor", 1 / 255), where, "rescale_factor") if do_rescale else 1.0
    if do_normalize:
        for key in ("image_mean", "image_std"):
            if key not in data:
                raise CheckpointError(f"{where}: do_normalize is true but {key} is missing")
        mean = _per_channel(data["image_mean"], channels, where, "image_mean")
        std = _per_channel(data["image_std"], channels, where, "image_std")
    else:
        mean, std = [0.0] * channels, [1.0] * channels
    scale = 255.0 * factor
    if abs(scale - 1.0) < 1e-9:  # 1/255 written as a decimal
        scale = 1.0
    try:
        norm = Normalization(mean=tuple(m / scale for m in mean), std=tuple(s / scale for s in std))
    except EdgevitError as e:
        raise CheckpointError(f"{where}: image_mean/image_std: {e}") from None
    report = {"image_mean": mean, "image_std": std, "rescale_factor": factor if do_rescale else None,
              "do_normalize": do_normalize, "input_size": _processor_input_size(data, where)}
    return norm, report


def _hf_hints(data: dict[str, Any], source: str) -> ModelHints:
    archs = data.get("architectures") or ()
    return ModelHints(
        source=source, kind="huggingface",
        heads=_optional_int(data.get("num_attention_heads"), source, "num_attention_heads"),
        norm_eps=_optional_eps(data.get("layer_norm_eps"), source, "layer_norm_eps"),
        image_size=_optional_side(data.get("image_size"), source, "image_size"),
        in_channels=_optional_int(data.get("num_channels"), source, "num_channels"),
        hidden_act=data.get("hidden_act"),
        model_type=data.get("model_type"),
        architectures=tuple(str(a) for a in archs) if isinstance(archs, (list, tuple)) else (str(archs),),
    )


def _timm_hints(data: dict[str, Any], source: str) -> ModelHints:
    args = data.get("model_args") or {}
    cfg = data.get("pretrained_cfg") or {}
    if not isinstance(args, dict) or not isinstance(cfg, dict):
        raise CheckpointError(f"{source}: model_args and pretrained_cfg must be mappings")
    preprocess = None
    if "mean" in cfg and "std" in cfg:
        preprocess = _normalization(cfg["mean"], cfg["std"], source, "pretrained_cfg.mean/std")
    size = args.get("img_size")
    if size is None and isinstance(cfg.get("input_size"), (list, tuple)) and len(cfg["input_size"]) == 3:
        size = list(cfg["input_size"][1:])
    return ModelHints(
        source=source, kind="timm",
        heads=_optional_int(args.get("num_heads"), source, "model_args.num_heads"),
        norm_eps=None, image_size=_optional_side(size, source, "img_size"),
        in_channels=_optional_int(args.get("in_chans"), source, "model_args.in_chans"),
        global_pool=args.get("global_pool", data.get("global_pool")),
        preprocess=preprocess, preprocess_source=f"{source} (pretrained_cfg)" if preprocess else None,
    )


def _user_hints(data: dict[str, Any], source: str) -> ModelHints:
    unknown = sorted(set(data) - set(USER_KEYS))
    if unknown:
        raise CheckpointError(f"{source}: unknown config field(s) {unknown}; known: {list(USER_KEYS)} "
                              "(or give a Hugging Face / timm config.json)")
    if ("mean" in data) != ("std" in data):
        raise CheckpointError(f"{source}: give both mean and std (one value per input channel)")
    preprocess = _normalization(data["mean"], data["std"], source, "mean/std") if "mean" in data else None
    return ModelHints(
        source=source, kind="user",
        heads=_optional_int(data.get("heads"), source, "heads"),
        norm_eps=_optional_eps(data.get("norm_eps"), source, "norm_eps"),
        image_size=_optional_side(data.get("image_size"), source, "image_size"),
        global_pool=data.get("global_pool"), hidden_act=data.get("hidden_act"),
        preprocess=preprocess, preprocess_source=source if preprocess else None,
    )


def _normalization(mean: Any, std: Any, source: str, field: str) -> Normalization:
    try:
        return Normalization(mean=mean, std=std)
    except EdgevitError as e:
        raise CheckpointError(f"{source}: {field}: {e}") from None


def _optional_int(value: Any, source: str, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CheckpointError(f"{source}: {field} must be a positive integer (got {value!r})")
    return value


def _optional_eps(value: Any, source: str, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise CheckpointError(f"{source}: {field} must be a small positive number like 1e-6 (got {value!r})")
    return float(value)


def _optional_side(value: Any, source: str, field: str) -> int | None:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise CheckpointError(f"{source}: {field} {list(value)} is not square; edgevit models take square images")
        value = value[0]
    return _optional_int(value, source, field)


def _positive_number(value: Any, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise CheckpointError(f"{source}: {field} must be a positive number (got {value!r})")
    return float(value)


def _per_channel(value: Any, channels: int, source: str, field: str) -> list[float]:
    values = [value] if isinstance(value, (int, float)) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, (int, float)) for v in values):
        raise CheckpointError(f"{source}: {field} must be a number or a list of numbers (got {value!r})")
    if len(values) == 1:
        values = list(values) * channels
    if len(values) != channels:
        raise CheckpointError(f"{source}: {field} has {len(values)} values but the model takes {channels} channel(s)")
    return [float(v) for v in values]


def _processor_input_size(data: dict[str, Any], source: str) -> int | None:
    """The side of the images the processor hands the model: the crop if it crops, else the resize."""
    key = "crop_size" if data.get("do_center_crop") and data.get("crop_size") is not None else "size"
    size = data.get(key)
    if size is None or (key == "size" and not data.get("do_resize", True)):
        return None
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return _optional_side([size["height"], size["width"]], source, key)
        return None  # shortest_edge and friends: the side depends on the image
    return _optional_side(size, source, key)
