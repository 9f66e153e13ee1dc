"""Lowering a float VisionTransformer to a Program (float32 kernels).

Program input `image` float32 [C, H, W] (already normalised: the model's `preprocess`
is recorded in meta["preprocess"], its spec YAML in meta["spec"]); output `logits` [K].
Kernels follow `VisionTransformer.forward`: patch_embed, [dist_concat (distillation token) ->
patches.dist], cls_concat (class token) -> tokens, add_pos, then per block i
    blocks.i.norm1 -> t{i}.ln1, blocks.i.attn.qkv -> t{i}.qkv, blocks.i.attn.core -> t{i}.attn,
    blocks.i.attn.proj -> t{i}.proj, blocks.i.add1 -> t{i}.res1, blocks.i.norm2 -> t{i}.ln2,
    blocks.i.mlp.fc1 (+GELU) -> t{i}.fc1, blocks.i.mlp.fc2 -> t{i}.fc2, blocks.i.add2 -> t{i}.out
then pool -> pooled [1, D], norm -> normed, head -> head [1, K], reshape -> logits [K].
Pool "cls_dist" (DeiT distillation): pool (mode "prefix", rows 2) -> pooled [2, D] (class and
distillation tokens), norm -> normed [2, D], reshape -> normed.flat [1, 2D], then ONE linear `head`
with the folded classifier [W_head | W_head_dist] / 2 [K, 2D] and bias (b_head + b_head_dist) / 2
(`classifier`, `fold_distilled_head`: the average of the two heads, exact in reals), reshape -> logits [K].
A block with merge_r = r > 0 runs blocks.i.merge (token_merge of t{i}.res1 with the keys of
t{i}.qkv) -> t{i}.merged [N - r, D] and t{i}.size [N - r] right after blocks.i.add1; norm2 and
add2 then read t{i}.merged, and every later attention kernel takes the latest sizes as its
`size` input (proportional attention).
A low-rank linear `x` becomes kernels `x.a` (no bias, output `<tensor>.a`) and `x.b`.
Constants are named by the model's state_dict keys (e.g. blocks.3.attn.qkv.weight), except the
folded classifier of pool "cls_dist", named `head.weight` / `head.bias` like any head.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgevit.lower.program import Program, ProgramBuilder, ProgramError
from edgevit.model.vit import LowRankLinear, VisionTransformer


def _np(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """A torch tensor/parameter as a float32 NumPy array (a copy); a NumPy array (the placeholder
    weights of `edgevit.nas.placeholder`) as it is (read-only: callers never write into it)."""
    if isinstance(t, np.ndarray):
        return t
    return t.detach().cpu().to(torch.float32).numpy().copy()


def lower_linear(b: ProgramBuilder, module: nn.Module, prefix: str, x: str, out: str,
                 activation: str = "none") -> str:
    """Lower an nn.Linear or LowRankLinear named `prefix` reading tensor `x`; returns `out`.

    Shapes: x [N, in] -> out [N, out_features]; `activation` is fused into the last kernel.
    """
    if isinstance(module, LowRankLinear):
        mid = lower_linear(b, module.a, f"{prefix}.a", x, f"{out}.a")
        return lower_linear(b, module.b, f"{prefix}.b", mid, out, activation)
    if not isinstance(module, (nn.Linear, FoldedLinear)):
        raise ProgramError(f"{prefix}: cannot lower a {type(module).__name__} as a linear")
    consts = {"weight": b.add_const(f"{prefix}.weight", _np(module.weight))}
    if module.bias is not None:
        consts["bias"] = b.add_const(f"{prefix}.bias", _np(module.bias))
    attrs = {"activation": activation} if activation != "none" else {}
    return b.add_kernel("linear", [x], attrs=attrs, consts=consts, name=prefix, outputs=[out])[0]


def lower_layernorm(b: ProgramBuilder, module: nn.LayerNorm, prefix: str, x: str, out: str) -> str:
    """Lower an nn.LayerNorm named `prefix`: x [N, D] -> out [N, D]."""
    consts = {"gamma": b.add_const(f"{prefix}.weight", _np(module.weight)),
              "beta": b.add_const(f"{prefix}.bias", _np(module.bias))}
    return b.add_kernel("layernorm", [x], attrs={"eps": float(module.eps)}, consts=consts, name=prefix,
                        outputs=[out])[0]


def lower_embed(b: ProgramBuilder, model: VisionTransformer, image: str) -> str:
    """image [C, H, W] -> tokens with prefix tokens (class, distillation) and positions [N, D]; returns the tensor name."""
    spec = model.spec
    conv = model.patch_embed.proj
    w = b.add_const("patch_embed.proj.weight", _np(conv.weight).reshape(spec.embed_dim, -1))
    bias = b.add_const("patch_embed.proj.bias", _np(conv.bias))
    t = b.add_kernel("patch_embed", [image], attrs={"patch": spec.patch_size},
                     consts={"weight": w, "bias": bias}, name="patch_embed", outputs=["patches"])[0]
    if getattr(model, "dist_token", None) is not None:
        dist = b.add_const("dist_token", _np(model.dist_token).reshape(spec.embed_dim))
        t = b.add_kernel("cls_concat", [t], consts={"cls": dist}, name="dist_concat", outputs=["patches.dist"])[0]
    if model.cls_token is not None:
        cls = b.add_const("cls_token", _np(model.cls_token).reshape(spec.embed_dim))
        t = b.add_kernel("cls_concat", [t], consts={"cls": cls}, name="cls_concat", outputs=["tokens"])[0]
    pos = b.add_const("pos_embed", _np(model.pos_embed)[0])
    return b.add_kernel("add_pos", [t], consts={"pos": pos}, name="pos_embed", outputs=["embed"])[0]


def merge_attrs(model: VisionTransformer, i: int) -> dict:
    """The token_merge kernel attrs of block i (r, heads, head_dim, protect = class token)."""
    spec = model.spec.blocks[i]
    return {"r": spec.merge_r, "heads": spec.heads, "head_dim": spec.head_dim, "protect": model.spec.num_prefix}


def lower_merge(b: ProgramBuilder, model: VisionTransformer, i: int, x: str, qkv: str,
                size: str | None) -> tuple[str, str | None]:
    """Token merging of block i (if merge_r > 0): x [N, D], qkv, sizes -> (t{i}.merged [N-r, D], t{i}.size)."""
    if not model.spec.blocks[i].merge_r:
        return x, size
    ins = [x, qkv] + ([size] if size else [])
    x, size = b.add_kernel("token_merge", ins, attrs=merge_attrs(model, i), name=f"blocks.{i}.merge",
                           outputs=[f"t{i}.merged", f"t{i}.size"])
    return x, size


def lower_block(b: ProgramBuilder, model: VisionTransformer, i: int, x: str, fuse_gelu: bool = True,
                size: str | None = None) -> tuple[str, str | None]:
    """Block i: x [N, D] (sizes [N] or None) -> (t{i}.out [N - r, D], sizes): attention, merging, MLP."""
    blk, spec, p, t = model.blocks[i], model.spec.blocks[i], f"blocks.{i}", f"t{i}"
    h = lower_layernorm(b, blk.norm1, f"{p}.norm1", x, f"{t}.ln1")
    qkv = h = lower_linear(b, blk.attn.qkv, f"{p}.attn.qkv", h, f"{t}.qkv")
    attrs = {"heads": spec.heads, "head_dim": spec.head_dim, "scale": float(blk.attn.scale)}
    h = b.add_kernel("attention", [h] + ([size] if size else []), attrs=attrs, name=f"{p}.attn.core",
                     outputs=[f"{t}.attn"])[0]
    h = lower_linear(b, blk.attn.proj, f"{p}.attn.proj", h, f"{t}.proj")
    x = b.add_kernel("add", [x, h], name=f"{p}.add1", outputs=[f"{t}.res1"])[0]
    x, size = lower_merge(b, model, i, x, qkv, size)
    h = lower_layernorm(b, blk.norm2, f"{p}.norm2", x, f"{t}.ln2")
    if fuse_gelu:
        h = lower_linear(b, blk.mlp.fc1, f"{p}.mlp.fc1", h, f"{t}.fc1", activation="gelu")
    else:
        h = lower_linear(b, blk.mlp.fc1, f"{p}.mlp.fc1", h, f"{t}.fc1")
        h = b.add_kernel("gelu", [h], name=f"{p}.mlp.act", outputs=[f"{t}.gelu"])[0]
    h = lower_linear(b, blk.mlp.fc2, f"{p}.mlp.fc2", h, f"{t}.fc2")
    return b.add_kernel("add", [x, h], name=f"{p}.add2", outputs=[f"{t}.out"])[0], size


class FoldedLinear:
    """A stand-in for nn.Linear (`weight` [M, K], `bias` [M], float32 NumPy) that lowering reads."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight, self.bias = weight, bias


def fold_distilled_head(w_head, b_head, w_dist, b_dist) -> tuple[np.ndarray, np.ndarray]:
    """DeiT's two classifiers as one: weights [K, D] twice, biases [K] twice -> ([W_head | W_dist] / 2
    [K, 2D] float32, (b_head + b_dist) / 2 [K] float32). The weight halving is exact; the bias sum is
    taken in float64 and rounded once. Applied to [n_cls | n_dist] it gives the average of the heads."""
    w = np.concatenate([np.asarray(_np(w_head), np.float32), np.asarray(_np(w_dist), np.float32)], axis=1)
    bias = (np.asarray(_np(b_head), np.float64) + np.asarray(_np(b_dist), np.float64)) / 2.0
    return w * np.float32(0.5), bias.astype(np.float32)


def classifier(model: VisionTransformer):
    """The linear the Program's `head` kernel applies: `model.head`, or for pool "cls_dist" a
    FoldedLinear of head and head_dist (`fold_distilled_head`, input [1, 2D])."""
    if model.spec.pool != "cls_dist":
        return model.head
    return FoldedLinear(*fold_distilled_head(model.head.weight, model.head.bias, model.head_dist.weight,
                                             model.head_dist.bias))


def pool_attrs(spec) -> dict:
    """The pool kernel's mode attrs: {"mode": "cls" | "mean"}, or prefix rows 2 for pool "cls_dist"."""
    return {"mode": "prefix", "rows": 2} if spec.pool == "cls_dist" else {"mode": spec.pool}


def lower_head(b: ProgramBuilder, model: VisionTransformer, x: str) -> str:
    """tokens [N, D] -> pool [1, D] -> norm -> head [1, K] -> logits [K] (as forward: pool, norm, head).

    Pool "cls_dist": pool [2, D] -> norm -> normed.flat [1, 2D] -> folded head [1, K] (module doc)."""
    k = model.spec.num_classes
    h = b.add_kernel("pool", [x], attrs=pool_attrs(model.spec), name="pool", outputs=["pooled"])[0]
    h = lower_layernorm(b, model.norm, "norm", h, "normed")
    if model.spec.pool == "cls_dist":
        h = b.add_kernel("reshape", [h], attrs={"shape": [1, 2 * model.spec.embed_dim]}, name="norm.flatten",
                         outputs=["normed.flat"])[0]
    h = lower_linear(b, classifier(model), "head", h, "head")
    return b.add_kernel("reshape", [h], attrs={"shape": [k]}, name="flatten", outputs=["logits"])[0]


def lower_float(model: VisionTransformer, fuse_gelu: bool = True) -> Program:
    """A float32 Program computing `model`: input `image` float32 [C, H, W] -> output `logits` float32 [K].

    `fuse_gelu` folds each MLP's GELU into its fc1 kernel (else a separate `gelu` kernel).
    Blocks with merge_r > 0 get a token_merge kernel (see the module docstring).
    """
    spec = model.spec
    meta = {"spec": spec.to_yaml(), "preprocess": model.preprocess.to_dict(), "lowering": "float"}
    b = ProgramBuilder(spec.name or "vit", meta=meta)
    image = b.add_input("image", (spec.in_channels, spec.image_size, spec.image_size))
    x, size = lower_embed(b, model, image), None
    for i in range(spec.depth):
        x, size = lower_block(b, model, i, x, fuse_gelu, size)
    b.add_output(lower_head(b, model, x))
    return b.build()
