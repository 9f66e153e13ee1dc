"""Hugging Face ViT / DeiT state_dicts -> the timm key layout `timm_layout` converts.

Both generations of `transformers` names are read (the model prefix `vit.` / `deit.` is optional,
as in a bare `ViTModel`):

transformers 4.x (every checkpoint on the Hub)          -> 5.x                             -> timm layout
embeddings.cls_token / distillation_token               same                               cls_token / dist_token
embeddings.position_embeddings                          same                               pos_embed
embeddings.patch_embeddings.projection                  same                               patch_embed.proj
encoder.layer.N.attention.attention.{query,key,value}   layers.N.attention.{q,k,v}_proj    blocks.N.attn.qkv (concat)
encoder.layer.N.attention.output.dense                  layers.N.attention.o_proj          blocks.N.attn.proj
encoder.layer.N.intermediate.dense / output.dense       layers.N.mlp.fc1 / fc2             blocks.N.mlp.fc1 / fc2
encoder.layer.N.layernorm_before / layernorm_after      layers.N.(same)                    blocks.N.norm1 / norm2
layernorm                                               same                               norm
classifier, or cls_classifier + distillation_classifier same                               head (+ head_dist)

`ViTForImageClassification` and `DeiTForImageClassification` classify the final-normed class
token; `DeiTForImageClassificationWithTeacher` averages its two classifiers (pool "cls_dist").
Ignored, with a note: `pooler.dense` (ViTModel's pooler, unused by the classifiers) and
`embeddings.mask_token` (masked-image-modelling input only). Any other key is refused by name.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from edgevit.errors import CheckpointError

HF_NORM_EPS = 1e-12  # ViTConfig / DeiTConfig default layer_norm_eps
MODEL_PREFIXES = ("vit.", "deit.")

_EMBEDDINGS = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HEADS = {"classifier": "head", "cls_classifier": "head", "distillation_classifier": "head_dist"}
_IGNORED = {
    "pooler.dense": "ViTModel's pooler (pooler.dense) is not used by the image classifiers: ignored",
    "embeddings.mask_token": "embeddings.mask_token (masked-image-modelling input only) is not used for "
                             "classification: ignored",
}
# per-layer names -> timm block names; q/k/v are gathered and concatenated into attn.qkv
_LAYER_4X = {
    "attention.attention.query": "q", "attention.attention.key": "k", "attention.attention.value": "v",
    "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
    "layernorm_before": "norm1", "layernorm_after": "norm2",
}
_LAYER_5X = {
    "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v", "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "layernorm_before": "norm1", "layernorm_after": "norm2",
}
_LAYER_RE = re.compile(r"^(encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")


def is_hf_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """True if the keys are Hugging Face ViT/DeiT names (a patch_embeddings.projection weight)."""
    return any(_strip(k).startswith("embeddings.patch_embeddings.") for k in state)


def hf_generation(state: Mapping[str, torch.Tensor]) -> str:
    """"4.x" (encoder.layer.N.attention.attention.query...) or "5.x" (layers.N.attention.q_proj...) names."""
    return "5.x" if any(_strip(k).startswith("layers.") for k in state) else "4.x"


def hf_to_timm(state: Mapping[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a Hugging Face ViT/DeiT state_dict into the timm layout; returns (state, notes).

    q/k/v of every layer become one `attn.qkv` ([3A, D] weight, [3A] bias; a missing bias, as with
    `qkv_bias=False`, is left out for `timm_layout` to zero-fill). Raises CheckpointError on a key
    that is not part of a ViT/DeiT image classifier.
    """
    out: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        bare = _strip(key)
        target = _EMBEDDINGS.get(bare)
        if target is not None:
            _put(out, target, value, key, source)
            continue
        module, _, part = bare.rpartition(".")
        if module in _HEADS and part in ("weight", "bias"):
            _put(out, f"{_HEADS[module]}.{part}", value, key, source)
            continue
        ignored = next((why for prefix, why in _IGNORED.items() if bare.startswith(prefix)), None)
        if ignored is not None:
            if ignored not in notes:
                notes.append(ignored)
            continue
        m = _LAYER_RE.match(bare)
        names = (_LAYER_4X if m and m.group(1) == "encoder.layer" else _LAYER_5X) if m else {}
        if not m or m.group(3) not in names:
            raise CheckpointError(f"{source}: unexpected key {key!r} (shape {tuple(value.shape)}): not part of a "
                                  "Hugging Face ViT/DeiT image classifier edgevit can import")
        layer, name, part = int(m.group(2)), names[m.group(3)], m.group(4)
        if name in ("q", "k", "v"):
            _put(qkv.setdefault(layer, {}), f"{name}.{part}", value, key, source)
        else:
            _put(out, f"blocks.{layer}.{name}.{part}", value, key, source)
    if "head_dist.weight" in out and "dist_token" not in out:
        raise CheckpointError(f"{source}: distillation_classifier without embeddings.distillation_token")
    for layer, parts in sorted(qkv.items()):
        out.update(_fuse_qkv(parts, layer, source, notes))
    return out, notes


def _fuse_qkv(parts: dict[str, torch.Tensor], layer: int, source: str, notes: list[str]) -> dict[str, torch.Tensor]:
    """q/k/v weights (and biases) of one layer -> timm's fused attn.qkv."""
    k = f"blocks.{layer}.attn.qkv"
    for name in ("q", "k", "v"):
        if f"{name}.weight" not in parts:
            raise CheckpointError(f"{source}: layer {layer} has no {name} projection weight "
                                  f"({'query key value'.split()['qkv'.index(name)]} / {name}_proj)")
    weights = [parts[f"{n}.weight"] for n in ("q", "k", "v")]
    if len({tuple(w.shape) for w in weights}) != 1:
        raise CheckpointError(f"{source}: layer {layer}: q, k and v weights differ in shape "
                              f"({', '.join(str(tuple(w.shape)) for w in weights)})")
    out = {f"{k}.weight": torch.cat(weights, dim=0)}
    present = [f"{n}.bias" in parts for n in ("q", "k", "v")]
    if any(present):
        width = weights[0].shape[0]
        out[f"{k}.bias"] = torch.cat([parts.get(f"{n}.bias", torch.zeros(width, dtype=weights[0].dtype))
                                      for n in ("q", "k", "v")])
        if not all(present):
            missing = [n for n, p in zip("qkv", present) if not p]
            notes.append(f"block {layer}: no {'/'.join(missing)} bias: imported as zero (exact)")
    return out


def _put(out: dict[str, torch.Tensor], target: str, value: torch.Tensor, key: str, source: str) -> None:
    """out[target] = value, refusing a second key that means the same tensor."""
    if target in out:
        raise CheckpointError(f"{source}: key {key!r} duplicates another key for the same tensor ({target}); "
                              "a checkpoint holds one model")
    out[target] = value


def _strip(key: str) -> str:
    for prefix in MODEL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key
