"""Load timm-format `VisionTransformer` state_dicts without importing timm.

Supported: the standard ViT layout (patch_embed.proj, cls_token, pos_embed,
blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, head) with a class
token, or without one and average pooling (timm then names the final norm `fc_norm`).
Variants whose computation differs (layer scale, register/distillation tokens, q/k
norm, position embeddings without the class slot) are rejected by key, never
silently mis-loaded. The spec is inferred from the tensor shapes except the head
count, which shapes cannot tell: pass `heads` or a full `spec`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping

import torch

from edgevit.data.normalize import Normalization
from edgevit.errors import CheckpointError
from edgevit.model.checkpoint import model_from_state_dict
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.model.vit import VisionTransformer

_UNSUPPORTED = {
    r"\.ls[12]\.": "layer scale (ls1/ls2)",
    r"^reg_token$": "register tokens",
    r"^dist_token$|^head_dist\.": "a distillation token (DeiT-distilled)",
    r"\.attn\.[qk]_norm\.": "q/k normalisation",
    r"\.norm\.weight$": "a norm inside attention or the MLP",
}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a .pth/.pt/.bin (torch) or .safetensors state_dict; unwraps {'model': ...} / {'state_dict': ...}."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: state_dict file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad pickles
        raise CheckpointError(f"{path}: not a torch state_dict ({type(e).__name__}: {e})") from None
    for wrapper in ("model", "state_dict", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return obj


def _reject_unsupported(state: Mapping[str, torch.Tensor], source: str) -> None:
    for key in state:
        for pattern, what in _UNSUPPORTED.items():
            if re.search(pattern, key) and not (what.startswith("a norm") and key.startswith(("norm.", "fc_norm."))):
                raise CheckpointError(f"{source}: key {key!r} means {what}, which edgevit's ViT does not support")
    if "fc_norm.weight" in state and "cls_token" in state:
        raise CheckpointError(f"{source}: class token with average pooling (fc_norm) is not supported; "
                              "edgevit pools either the class token or the mean of all tokens")


def _shape(state: Mapping[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key!r}, needed to infer the architecture")
    return tuple(state[key].shape)


def infer_timm_spec(state: Mapping[str, torch.Tensor], heads: int, source: str = "state_dict") -> ViTSpec:
    """Infer a ViTSpec from timm tensor shapes; `heads` attention heads in every block."""
    d, c, p, _ = _shape(state, "patch_embed.proj.weight", source)
    prefix = 1 if "cls_token" in state else 0
    n_tokens = _shape(state, "pos_embed", source)[1]
    grid = math.isqrt(n_tokens - prefix)
    if grid * grid != n_tokens - prefix:
        raise CheckpointError(f"{source}: pos_embed has {n_tokens} positions, not a square grid plus {prefix} "
                              "class token (position embeddings without the class slot are not supported)")
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    blocks = []
    for i in range(depth):
        three_a = _shape(state, f"blocks.{i}.attn.qkv.weight", source)[0]
        if three_a % (3 * heads):
            raise CheckpointError(f"{source}: blocks.{i}.attn.qkv has {three_a} outputs, not divisible by 3 x {heads} heads")
        hidden = _shape(state, f"blocks.{i}.mlp.fc1.weight", source)[0]
        blocks.append(BlockSpec(heads=heads, head_dim=three_a // (3 * heads), mlp_hidden=hidden))
    classes = _shape(state, "head.weight", source)[0]
    return ViTSpec(image_size=grid * p, in_channels=c, patch_size=p, embed_dim=d, num_classes=classes,
                   blocks=tuple(blocks), pool="cls" if prefix else "mean")


def timm_to_edgevit_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename timm keys to edgevit's: `fc_norm.*` (average pooling) becomes `norm.*`."""
    out = {}
    for k, v in state.items():
        if k.startswith("fc_norm."):
            out["norm." + k[len("fc_norm."):]] = v
        else:
            out[k] = v
    return out


def load_timm_state_dict(
    state: Mapping[str, torch.Tensor] | str | Path,
    spec: ViTSpec | None = None,
    heads: int | None = None,
    preprocess: Normalization | None = None,
) -> VisionTransformer:
    """Build an eval-mode VisionTransformer from a timm-format state_dict (mapping or file).

    Give `spec` to check the weights against a known architecture, or `heads` to infer it.
    Mismatches raise CheckpointError naming the first bad key and both shapes.
    """
    source = str(state) if isinstance(state, (str, Path)) else "timm state_dict"
    if isinstance(state, (str, Path)):
        state = read_state_dict(state)
    _reject_unsupported(state, source)
    if spec is None:
        if heads is None:
            raise CheckpointError(f"{source}: the head count cannot be inferred from shapes; pass heads=N or a spec")
        spec = infer_timm_spec(state, heads, source)
    return model_from_state_dict(spec, timm_to_edgevit_keys(state), preprocess, source)
