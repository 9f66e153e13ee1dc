"""A quantized model of a spec without torch, training or calibration, for the real int8 lowering.

`placeholder_qmodel(spec, weight_bits)` is a `QuantizedViT` whose model is a `PlaceholderViT`: the
attributes `edgevit.lower.from_quantized.lower_int8` reads from a `VisionTransformer` (spec,
preprocess, patch_embed.proj, cls_token, dist_token, pos_embed, blocks[i].norm1 / attn / norm2 / mlp,
norm, head, head_dist), with zero weights that are broadcast views (no memory: every shape shares one scalar), and
whose config gives every activation the unit quantization (scale 1, zero point 0, int8 residual)
and the quant pass's weight widths (`w=4`: every linear but `quantize.W4_KEEP_8BIT` at 4 bits).

The Program `lower_int8` makes from it has exactly the kernels, tensors, code-relevant attrs and
constant shapes of the Program the quant pass would give for a trained model of `spec`; only
constant values and requantization attrs differ. So a target's estimate of it (MCU: the memory
plan, code size and latency) is the real Program's (tests/nas/test_nas_estimate.py), while building
it takes a few milliseconds (the lowering quantizes placeholder weights once per shape).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from edgevit.data.normalize import Normalization
from edgevit.errors import UserInputError
from edgevit.lower.qconfig import QuantConfig, QuantizedViT, TensorQuant
from edgevit.model.spec import BlockSpec, ViTSpec

UNIT = TensorQuant(1.0, 0, "int8")
ZERO = np.zeros((), np.float32)


def zeros(*shape: int) -> np.ndarray:
    """A read-only float32 zero array of `shape`: a broadcast view of one scalar (no memory)."""
    return np.broadcast_to(ZERO, shape)


def linear(name: str, in_features: int, out_features: int, rank: int | None = None, bias: bool = True):
    """A stand-in for nn.Linear (`weight` [out, in], `bias` [out] or None) or, with `rank`, for a
    LowRankLinear (factors `a` in -> rank without bias, `b` rank -> out); `names` lists the weight
    constant names it lowers to."""
    if rank is not None:
        a, b = linear(f"{name}.a", in_features, rank, bias=False), linear(f"{name}.b", rank, out_features)
        return SimpleNamespace(a=a, b=b, names=a.names + b.names)
    return SimpleNamespace(weight=zeros(out_features, in_features), bias=zeros(out_features) if bias else None,
                           names=[f"{name}.weight"])


def layernorm(dim: int, eps: float) -> SimpleNamespace:
    """A stand-in for nn.LayerNorm(dim, eps) with zero gain and bias."""
    return SimpleNamespace(weight=zeros(dim), bias=zeros(dim), eps=eps)


def block(i: int, dim: int, b: BlockSpec, eps: float) -> SimpleNamespace:
    """A stand-in for model.blocks[i]: norm1, attn (qkv, proj, heads, head_dim, scale), norm2, mlp (fc1, fc2)."""
    p = f"blocks.{i}"
    attn = SimpleNamespace(heads=b.heads, head_dim=b.head_dim, scale=1.0 / math.sqrt(b.head_dim),
                           qkv=linear(f"{p}.attn.qkv", dim, 3 * b.attn_dim, b.rank("qkv")),
                           proj=linear(f"{p}.attn.proj", b.attn_dim, dim, b.rank("proj")))
    mlp = SimpleNamespace(fc1=linear(f"{p}.mlp.fc1", dim, b.mlp_hidden, b.rank("fc1")),
                          fc2=linear(f"{p}.mlp.fc2", b.mlp_hidden, dim, b.rank("fc2")))
    return SimpleNamespace(norm1=layernorm(dim, eps), attn=attn, norm2=layernorm(dim, eps), mlp=mlp)


class PlaceholderViT:
    """What the int8 lowering reads from a VisionTransformer of `spec`, with zero weights."""

    def __init__(self, spec: ViTSpec) -> None:
        d, c, p = spec.embed_dim, spec.in_channels, spec.patch_size
        self.spec = spec
        self.preprocess = Normalization(mean=(0.0,) * c, std=(1.0,) * c)
        self.patch_embed = SimpleNamespace(proj=SimpleNamespace(weight=zeros(d, c, p, p), bias=zeros(d)))
        self.cls_token = zeros(1, 1, d) if spec.has_cls_token else None
        self.dist_token = zeros(1, 1, d) if spec.distill_token else None
        self.pos_embed = zeros(1, spec.num_patches + spec.num_prefix, d)
        self.blocks = [block(i, d, b, spec.norm_eps) for i, b in enumerate(spec.blocks)]
        self.norm = layernorm(d, spec.norm_eps)
        self.head = linear("head", d, spec.num_classes)
        self.head_dist = linear("head_dist", d, spec.num_classes) if spec.pool == "cls_dist" else None

    def linear_weights(self) -> list[str]:
        """Constant names of every linear weight (as the quant pass's weight_bits keys them; the two
        classifiers of pool "cls_dist" are one folded `head.weight`)."""
        mods = [m for blk in self.blocks for m in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2)]
        return [n for m in mods + [self.head] for n in m.names]


class UnitActivations(dict):
    """activation name -> TensorQuant: the unit int8 quantization for every name."""

    def __missing__(self, name: str) -> TensorQuant:
        return UNIT


def placeholder_qmodel(spec: ViTSpec, weight_bits: int = 8) -> QuantizedViT:
    """A QuantizedViT of `spec` with zero weights and unit quantizations (module doc), its linears at
    `weight_bits` (8, or 4 as the quant pass's w=4: the head stays at 8 bits)."""
    from edgevit.passes.quantize import W4_KEEP_8BIT

    if weight_bits not in (4, 8):
        raise UserInputError(f"weight_bits must be 8 or 4 (got {weight_bits!r})")
    model = PlaceholderViT(spec)
    bits = {n: 4 for n in model.linear_weights() if n not in W4_KEEP_8BIT} if weight_bits == 4 else {}
    return QuantizedViT(model, QuantConfig(UnitActivations(), bits, "int8", {"placeholder": True}))
