"""Lowering a QuantizedViT (float model + QuantConfig) to an integer Program; the `lower` dispatcher.

Program input `image` int8 [C, H, W] (the normalised image quantized with the config's `image`
entry, see `edgevit.lower.reference.quantize_input`); output `logits` int8 [K] (argmax = the
prediction). Every tensor is named as the tensor of `lower_float(model, fuse_gelu=False)` it
approximates and carries that tensor's config quantization in `TensorInfo.quant`, except:
- `patches` (pool "cls"/"cls_dist"): the patch embedding writes directly in the quantization of
  `tokens`, so that cls_concat (and the distillation token's dist_concat -> `patches.dist`) is a
  plain copy (the `patches` config entry is not used);
- `pooled` (pool "cls"/"cls_dist"), `normed.flat` (pool "cls_dist") and `logits`: selection /
  reshape keep their input's quantization (config entries `pooled` and `logits` are not used);
- pool "cls_dist": `head` is one linear with the folded classifier [W_head | W_head_dist] / 2
  (`from_model.classifier`), quantized per output channel like any head;
- with `fuse_gelu` (default) fc1 and GELU are one kernel whose output is `t{i}.gelu`;
- token merging (merge_r > 0): `t{i}.merged` keeps the quantization of `t{i}.res1` (a weighted mean
  of codes), sizes `t{i}.size` are int32, and each later attention kernel gets a `log_size` table
  (`<attention>.log_size`, log(k) in that layer's score units, k = 1 .. N0 - N + 1).
Weights: symmetric per output channel, [-127, 127] (8-bit) or [-7, 7] packed two per byte (4-bit).
The model is read by attribute (spec, preprocess, patch_embed.proj, cls_token, dist_token, pos_embed,
blocks, norm, head, head_dist), its parameters as torch tensors or NumPy arrays: NAS lowers a stand-in with zero weights
(`edgevit/nas/placeholder.py`) to cost a spec, so this file is the one lowering of every op.
Constants are named after the float ones: `<linear>.weight` (int8), `.bias` (int32), `.multiplier`,
`.shift` (int32), `.act_lut`; LayerNorm `<norm>.gain`/`.bias`; one `softmax.score_lut`.
"""

from __future__ import annotations

import functools
import json

import numpy as np
from torch import nn

from edgevit.errors import UserInputError
from edgevit.lower.from_model import _np, classifier, lower_float, merge_attrs, pool_attrs
from edgevit.lower.intlut import make_gelu_lut, make_score_lut, score_index_params
from edgevit.lower.intmath import (make_add_params, make_layernorm_params, qrange, quantize_multiplier,
                                   quantize_multipliers, round_half_up_array)
from edgevit.lower.ops.intcommon import add_attrs, pack_int4, quant_attr
from edgevit.lower.program import Program, ProgramBuilder, ProgramError
from edgevit.model.vit import LowRankLinear, VisionTransformer
from edgevit.lower.qconfig import QuantConfig, QuantizedViT, TensorQuant

SCORE_LUT = "softmax.score_lut"
LOG_SIZE_MAX = 1 << 30  # log-size table entries are clamped to this (attention checks no int32 overflow)
INT32_BIAS_LIMIT = 1 << 30  # |round(b / (s_x s_w))| is kept below this (the weight scale grows if needed)


# ---------------------------------------------------------------- build-time quantization helpers

@functools.lru_cache(maxsize=1)
def score_lut() -> dict:
    """The model-wide attention score LUT (intlut.make_score_lut defaults); do not mutate."""
    return make_score_lut()


def jsonable(d: dict) -> dict:
    """A JSON round trip of `d` (NumPy scalars from a calibration become Python numbers)."""
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def tensor_quant(b: ProgramBuilder, name: str) -> TensorQuant:
    """The quantization of an int tensor already in the builder (from its TensorInfo)."""
    info = b.tensors[name]
    return TensorQuant(info.quant["scale"], info.quant["zero_point"], info.dtype)


def quantize_tensor(x: np.ndarray, q: TensorQuant) -> np.ndarray:
    """Float array -> q.dtype: clamp(round_half_up(x / scale) + zero_point) (float64 division)."""
    lo, hi = qrange(q.dtype)
    v = np.clip(np.asarray(x, np.float64) / q.scale, lo - q.zero_point - 1, hi - q.zero_point + 1)
    return np.clip(round_half_up_array(v) + q.zero_point, lo, hi).astype(q.dtype)


def quantize_weight(w: np.ndarray, bits: int, bias: np.ndarray | None = None,
                    x_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Float weight [M, K] -> (int8 [M, K] in [-qmax, qmax], per-channel scales float64 [M]), qmax = 2^(bits-1) - 1.

    s_w[m] = max|w[m]| / qmax, raised where needed so that |bias[m] / (x_scale s_w[m])| <= 2^30
    (an all-zero row gets s_w = 1 unless its bias needs more).
    """
    qmax = (1 << (bits - 1)) - 1
    w = np.asarray(w, np.float64)
    s = np.abs(w).max(axis=1) / qmax
    if bias is not None:
        s = np.maximum(s, np.abs(np.asarray(bias, np.float64)) / (x_scale * INT32_BIAS_LIMIT))
    s = np.where(s > 0, s, 1.0)
    wq = np.clip(round_half_up_array(w / s[:, None]), -qmax, qmax).astype(np.int8)
    return wq, s


def fold_bias(bias: np.ndarray | None, wq: np.ndarray, s_w: np.ndarray, x: TensorQuant) -> np.ndarray:
    """int32 [M]: round_half_up(b / (s_x s_w)) - zp_x * sum_k w[m, k] (b = 0 when absent)."""
    bq = np.zeros(wq.shape[0], np.int64) if bias is None else round_half_up_array(
        np.asarray(bias, np.float64) / (x.scale * s_w))
    folded = bq - x.zero_point * wq.astype(np.int64).sum(axis=1)
    if np.abs(folded).max(initial=0) >= 1 << 31:
        raise ProgramError("folded int32 bias overflows; check the activation scales")
    return folded.astype(np.int32)


def gemm_constants(weight: np.ndarray, bias: np.ndarray | None, x: TensorQuant, y: TensorQuant,
                   bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A float weight [M, K] (+ bias [M]) quantized for input x / output y: (stored weight int8 [M, K],
    or [M, ceil(K/2)] packed at 4 bits; folded bias, multiplier, shift int32 [M]).

    A weight and bias that are each one value broadcast (the placeholder weights NAS estimates
    lower, edgevit/nas/placeholder.py) are quantized once per value, shape and quantizations.
    """
    w, b = uniform_value(weight), uniform_value(bias)
    if w is not None and (bias is None or b is not None):
        return _uniform_gemm_constants(w, weight.shape, b, x, y, bits)
    return _quantize_gemm(weight, bias, x, y, bits)


def _quantize_gemm(weight: np.ndarray, bias: np.ndarray | None, x: TensorQuant, y: TensorQuant,
                   bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """gemm_constants, computed."""
    wq, s_w = quantize_weight(weight, bits, bias, x.scale)
    mult, shift = quantize_multipliers(x.scale * s_w / y.scale)
    return (wq if bits == 8 else pack_int4(wq)), fold_bias(bias, wq, s_w, x), mult, shift


def uniform_value(a) -> float | None:
    """The value of an array that is one value broadcast (every stride 0, more than one element), else None."""
    if isinstance(a, np.ndarray) and a.size > 1 and not any(a.strides):
        return float(a.flat[0])
    return None


@functools.lru_cache(maxsize=1024)
def _uniform_gemm_constants(w: float, shape: tuple[int, int], b: float | None, x: TensorQuant, y: TensorQuant,
                            bits: int) -> tuple[np.ndarray, ...]:
    """gemm_constants of weight = w everywhere ([M, K] = shape), bias = b everywhere (or None); each
    result that is uniform is kept as a read-only broadcast view (the cache holds no large arrays)."""
    weight = np.broadcast_to(np.float64(w), shape)
    bias = None if b is None else np.broadcast_to(np.float64(b), shape[:1])
    out = []
    for a in _quantize_gemm(weight, bias, x, y, bits):
        if a.size and (a == a.flat[0]).all():
            a = np.broadcast_to(a.flat[0], a.shape)
        a.setflags(write=False)
        out.append(a)
    return tuple(out)


def add_gemm_consts(b: ProgramBuilder, prefix: str, weight: np.ndarray, bias: np.ndarray | None,
                    x: TensorQuant, y: TensorQuant, bits: int) -> dict[str, str]:
    """Quantize a float weight [M, K] (+ bias [M]) for input x / output y; add consts; return role -> name."""
    stored, folded, mult, shift = gemm_constants(weight, bias, x, y, bits)
    return {"weight": b.add_const(f"{prefix}.weight", stored), "bias": b.add_const(f"{prefix}.bias", folded),
            "multiplier": b.add_const(f"{prefix}.multiplier", mult), "shift": b.add_const(f"{prefix}.shift", shift)}


@functools.lru_cache(maxsize=256)
def gelu_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """intlut.make_gelu_lut, cached (read-only: lowerings with the same scales share it)."""
    lut = make_gelu_lut(in_scale, in_zp, out_scale, out_zp)
    lut.setflags(write=False)
    return lut


def layernorm_constants(gamma: np.ndarray, beta: np.ndarray, eps: float, x: TensorQuant, y: TensorQuant) -> dict:
    """intmath.make_layernorm_params of a LayerNorm (gain, bias [D]) from input x to int8 output y; a gain
    and bias that are each one value broadcast (placeholders) are computed once per value and quantizations."""
    g, b = uniform_value(gamma), uniform_value(beta)
    if g is not None and b is not None:
        return _uniform_layernorm_constants(g, b, gamma.size, eps, x, y)
    return make_layernorm_params(x.scale, gamma, beta, y.scale, eps, y.zero_point, np.dtype(x.dtype), np.int8)


@functools.lru_cache(maxsize=256)
def _uniform_layernorm_constants(g: float, b: float, dim: int, eps: float, x: TensorQuant, y: TensorQuant) -> dict:
    """layernorm_constants of gain = g and bias = b everywhere ([dim]), cached (do not mutate)."""
    p = make_layernorm_params(x.scale, np.full(dim, g), np.full(dim, b), y.scale, eps, y.zero_point,
                              np.dtype(x.dtype), np.int8)
    for key in ("gain", "bias"):
        p[key].setflags(write=False)
    return p


@functools.lru_cache(maxsize=1024)
def add_params(a_scale: float, b_scale: float, out_scale: float, a_zp: int, b_zp: int, out_zp: int,
               out_dtype: str) -> dict:
    """intmath.make_add_params, cached (do not mutate the dict)."""
    return make_add_params(a_scale, b_scale, out_scale, a_zp, b_zp, out_zp, np.dtype(out_dtype))


@functools.lru_cache(maxsize=1024)
def score_params(score_scale: float) -> tuple[int, int]:
    """intlut.score_index_params for the shared score LUT, cached."""
    return score_index_params(score_scale, score_lut())


def need_dtype(name: str, q: TensorQuant, allowed: tuple[str, ...]) -> TensorQuant:
    """UserInputError unless the config gives tensor `name` one of the `allowed` dtypes."""
    if q.dtype not in allowed:
        raise UserInputError(f"quant config: tensor {name!r} is {q.dtype}; the int8 lowering needs {allowed}")
    return q


# ---------------------------------------------------------------- kernels

def lower_linear_int(b: ProgramBuilder, cfg: QuantConfig, module: nn.Module, prefix: str, x: str, out: str,
                     gelu_out: str | None = None) -> str:
    """nn.Linear / LowRankLinear `prefix` (or a stand-in: `weight` [M, K] and `bias`, or factors `a`
    and `b`) reading int8 `x` -> int8 `out` (config quantization of `out`).

    With `gelu_out`, GELU is fused: requantize to `out`'s quantization, then the GELU table to
    `gelu_out`'s; the kernel's output tensor is then named `gelu_out`.
    """
    if isinstance(module, LowRankLinear) or hasattr(module, "a") and hasattr(module, "b"):
        mid = lower_linear_int(b, cfg, module.a, f"{prefix}.a", x, f"{out}.a")
        return lower_linear_int(b, cfg, module.b, f"{prefix}.b", mid, out, gelu_out)
    if not (isinstance(module, nn.Linear) or np.ndim(getattr(module, "weight", None)) == 2):
        raise ProgramError(f"{prefix}: cannot lower a {type(module).__name__} as a linear")
    xq, yq = tensor_quant(b, x), need_dtype(out, cfg.act(out), ("int8",))
    bits = cfg.bits_of(f"{prefix}.weight")
    bias = None if module.bias is None else _np(module.bias)
    consts = add_gemm_consts(b, prefix, _np(module.weight), bias, xq, yq, bits)
    attrs = {"out_quant": quant_attr(yq.scale, yq.zero_point, "int8")}
    if bits == 4:
        attrs["weight_bits"] = 4
    name = out
    if gelu_out is not None:
        gq = need_dtype(gelu_out, cfg.act(gelu_out), ("int8",))
        lut = gelu_lut(yq.scale, yq.zero_point, gq.scale, gq.zero_point)
        consts["act_lut"] = b.add_const(f"{prefix}.act_lut", lut)
        attrs.update(activation="gelu", act_in_quant=attrs["out_quant"],
                     out_quant=quant_attr(gq.scale, gq.zero_point, "int8"))
        name = gelu_out
    return b.add_kernel("linear", [x], attrs=attrs, consts=consts, name=prefix, outputs=[name])[0]


def lower_layernorm_int(b: ProgramBuilder, cfg: QuantConfig, module: nn.LayerNorm, prefix: str, x: str,
                        out: str) -> str:
    """LayerNorm `prefix`: int8/int16 `x` [N, D] -> int8 `out` (config quantization)."""
    xq, yq = tensor_quant(b, x), need_dtype(out, cfg.act(out), ("int8",))
    p = layernorm_constants(_np(module.weight), _np(module.bias), float(module.eps), xq, yq)
    consts = {"gain": b.add_const(f"{prefix}.gain", p["gain"]), "bias": b.add_const(f"{prefix}.bias", p["bias"])}
    attrs = {"frac_bits": p["frac_bits"], "eps_fixed": p["eps_fixed"], "out_shift": p["out_shift"],
             "out_quant": quant_attr(yq.scale, yq.zero_point, "int8")}
    return b.add_kernel("layernorm", [x], attrs=attrs, consts=consts, name=prefix, outputs=[out])[0]


def lower_add_int(b: ProgramBuilder, cfg: QuantConfig, x: str, h: str, name: str, out: str) -> str:
    """Residual add of `x` (int8/int16) and `h` (int8) -> `out` (config quantization, int8/int16)."""
    aq, hq, yq = tensor_quant(b, x), tensor_quant(b, h), cfg.act(out)
    p = add_params(aq.scale, hq.scale, yq.scale, aq.zero_point, hq.zero_point, yq.zero_point, yq.dtype)
    return b.add_kernel("add", [x, h], attrs=add_attrs(p, yq.scale), name=name, outputs=[out])[0]


def lower_embed_int(b: ProgramBuilder, cfg: QuantConfig, model: VisionTransformer, image: str) -> str:
    """int8 image [C, H, W] -> embed [N, D] (patch_embed, [dist_concat,] cls_concat, add_pos)."""
    spec, conv = model.spec, model.patch_embed.proj
    has_cls = model.cls_token is not None
    dist_token = getattr(model, "dist_token", None)
    pq = cfg.act("tokens" if has_cls else "patches")
    consts = add_gemm_consts(b, "patch_embed.proj", _np(conv.weight).reshape(spec.embed_dim, -1), _np(conv.bias),
                             tensor_quant(b, image), pq, 8)
    attrs = {"patch": spec.patch_size, "out_quant": quant_attr(pq.scale, pq.zero_point, pq.dtype)}
    t = b.add_kernel("patch_embed", [image], attrs=attrs, consts=consts, name="patch_embed", outputs=["patches"])[0]
    if dist_token is not None:
        dist = b.add_const("dist_token", quantize_tensor(_np(dist_token).reshape(-1), pq))
        t = b.add_kernel("cls_concat", [t], consts={"cls": dist}, name="dist_concat", outputs=["patches.dist"])[0]
    if has_cls:
        cls = b.add_const("cls_token", quantize_tensor(_np(model.cls_token).reshape(-1), pq))
        t = b.add_kernel("cls_concat", [t], consts={"cls": cls}, name="cls_concat", outputs=["tokens"])[0]
    yq = cfg.act("embed")
    pos = _np(model.pos_embed)[0]
    qmax = qrange(yq.dtype)[1]
    posq = TensorQuant(max(float(np.abs(pos).max()), 1e-30) / qmax, 0, yq.dtype)
    pos_c = b.add_const("pos_embed", quantize_tensor(pos, posq))
    p = add_params(pq.scale, posq.scale, yq.scale, pq.zero_point, 0, yq.zero_point, yq.dtype)
    return b.add_kernel("add_pos", [t], attrs=add_attrs(p, yq.scale), consts={"pos": pos_c}, name="pos_embed",
                        outputs=["embed"])[0]


def log_size_table(score_scale: float, max_size: int) -> np.ndarray:
    """int32 [max_size]: entry k-1 = round_half_up(log(k) / score_scale), clamped to 2^30 (k = 1 .. max_size)."""
    v = round_half_up_array(np.log(np.arange(1, max_size + 1, dtype=np.float64)) / score_scale)
    return np.minimum(v, LOG_SIZE_MAX).astype(np.int32)


def lower_attention_int(b: ProgramBuilder, cfg: QuantConfig, attn: nn.Module, prefix: str, x: str, out: str,
                        size: str | None = None, max_size: int = 1) -> str:
    """Attention core of int8 symmetric qkv `x` -> int8 `out`, with the shared score LUT.

    With `size` (int32 token sizes, each <= max_size) the kernel adds the log-size bias table.
    """
    qq, yq = tensor_quant(b, x), need_dtype(out, cfg.act(out), ("int8",))
    if qq.zero_point != 0 or qq.dtype != "int8":
        raise UserInputError(f"quant config: tensor {x!r} (q, k, v) must be int8 with zero_point 0 "
                             f"(symmetric), got {qq.dtype} zero_point {qq.zero_point}")
    if SCORE_LUT not in b.consts:
        b.add_const(SCORE_LUT, score_lut()["table"])
    sm, ss = score_params(qq.scale * qq.scale * float(attn.scale))
    om, osh = quantize_multiplier(qq.scale / (255.0 * yq.scale))
    attrs = {"heads": attn.heads, "head_dim": attn.head_dim, "score_multiplier": sm, "score_shift": ss,
             "out_multiplier": om, "out_shift": osh, "out_quant": quant_attr(yq.scale, yq.zero_point, "int8")}
    consts = {"score_lut": SCORE_LUT}
    if size is not None:
        table = log_size_table(qq.scale * qq.scale * float(attn.scale), max_size)
        consts["log_size"] = b.add_const(f"{prefix}.log_size", table)
    return b.add_kernel("attention", [x] + ([size] if size else []), attrs=attrs, consts=consts, name=prefix,
                        outputs=[out])[0]


def lower_block_int(b: ProgramBuilder, cfg: QuantConfig, model: VisionTransformer, i: int, x: str,
                    fuse_gelu: bool, size: str | None = None) -> tuple[str, str | None]:
    """Block i: x [N, D] (int32 sizes or None) -> (t{i}.out [N - r, D], sizes), kernels named as in lower_float."""
    blk, p, t = model.blocks[i], f"blocks.{i}", f"t{i}"
    n_all, n = model.spec.tokens_per_block()[0], b.tensors[x].shape[0]
    h = lower_layernorm_int(b, cfg, blk.norm1, f"{p}.norm1", x, f"{t}.ln1")
    qkv = h = lower_linear_int(b, cfg, blk.attn.qkv, f"{p}.attn.qkv", h, f"{t}.qkv")
    h = lower_attention_int(b, cfg, blk.attn, f"{p}.attn.core", h, f"{t}.attn", size, n_all - n + 1)
    h = lower_linear_int(b, cfg, blk.attn.proj, f"{p}.attn.proj", h, f"{t}.proj")
    x = lower_add_int(b, cfg, x, h, f"{p}.add1", f"{t}.res1")
    if model.spec.blocks[i].merge_r:
        ins = [x, qkv] + ([size] if size else [])
        x, size = b.add_kernel("token_merge", ins, attrs=merge_attrs(model, i), name=f"{p}.merge",
                               outputs=[f"{t}.merged", f"{t}.size"])
    h = lower_layernorm_int(b, cfg, blk.norm2, f"{p}.norm2", x, f"{t}.ln2")
    if fuse_gelu:
        h = lower_linear_int(b, cfg, blk.mlp.fc1, f"{p}.mlp.fc1", h, f"{t}.fc1", gelu_out=f"{t}.gelu")
    else:
        h = lower_linear_int(b, cfg, blk.mlp.fc1, f"{p}.mlp.fc1", h, f"{t}.fc1")
        hq, gq = tensor_quant(b, h), need_dtype(f"{t}.gelu", cfg.act(f"{t}.gelu"), ("int8",))
        lut = b.add_const(f"{p}.mlp.act.lut", gelu_lut(hq.scale, hq.zero_point, gq.scale, gq.zero_point))
        h = b.add_kernel("gelu", [h], attrs={"out_quant": quant_attr(gq.scale, gq.zero_point, "int8")},
                         consts={"lut": lut}, name=f"{p}.mlp.act", outputs=[f"{t}.gelu"])[0]
    h = lower_linear_int(b, cfg, blk.mlp.fc2, f"{p}.mlp.fc2", h, f"{t}.fc2")
    return lower_add_int(b, cfg, x, h, f"{p}.add2", f"{t}.out"), size


def lower_head_int(b: ProgramBuilder, cfg: QuantConfig, model: VisionTransformer, x: str) -> str:
    """tokens [N, D] -> pooled [1, D] -> normed -> head [1, K] int8 -> logits [K] (quantization of head).

    Pool "cls_dist": pooled [2, D] -> normed -> normed.flat [1, 2D] -> the folded head [1, K]."""
    attrs: dict = pool_attrs(model.spec)
    if model.spec.pool == "mean":
        xq, yq, n = tensor_quant(b, x), cfg.act("pooled"), b.tensors[x].shape[0]
        m, s = quantize_multiplier(xq.scale / (n * yq.scale))
        attrs.update(in_zero_point=xq.zero_point, multiplier=m, shift=s,
                     out_quant=quant_attr(yq.scale, yq.zero_point, yq.dtype))
    h = b.add_kernel("pool", [x], attrs=attrs, name="pool", outputs=["pooled"])[0]
    h = lower_layernorm_int(b, cfg, model.norm, "norm", h, "normed")
    if model.spec.pool == "cls_dist":
        h = b.add_kernel("reshape", [h], attrs={"shape": [1, 2 * model.spec.embed_dim]}, name="norm.flatten",
                         outputs=["normed.flat"])[0]
    h = lower_linear_int(b, cfg, classifier(model), "head", h, "head")
    return b.add_kernel("reshape", [h], attrs={"shape": [model.spec.num_classes]}, name="flatten",
                        outputs=["logits"])[0]


def lower_int8(qmodel: QuantizedViT, fuse_gelu: bool = True) -> Program:
    """An integer Program for `qmodel`: `image` int8 [C, H, W] -> `logits` int8 [K] (see the module doc).

    meta: spec (YAML), preprocess, lowering "int8", quant (config.to_dict()), input_quant and
    output_quant ({"scale", "zero_point", "dtype"}).
    """
    model, cfg = qmodel.model, qmodel.config
    spec = model.spec
    iq = need_dtype("image", cfg.act("image"), ("int8",))
    meta = {"spec": spec.to_yaml(), "preprocess": model.preprocess.to_dict(), "lowering": "int8",
            "quant": jsonable(cfg.to_dict()), "input_quant": jsonable(iq.to_dict())}
    b = ProgramBuilder(spec.name or "vit", meta=meta)
    image = b.add_input("image", (spec.in_channels, spec.image_size, spec.image_size), "int8",
                        quant={"scale": float(iq.scale), "zero_point": int(iq.zero_point)})
    x, size = lower_embed_int(b, cfg, model, image), None
    for i in range(spec.depth):
        x, size = lower_block_int(b, cfg, model, i, x, fuse_gelu, size)
    logits = lower_head_int(b, cfg, model, x)
    b.add_output(logits)
    b.meta["output_quant"] = jsonable(tensor_quant(b, logits).to_dict())
    return b.build()


def lower(model_or_qmodel) -> Program:
    """A float VisionTransformer -> lower_float(model); a QuantizedViT -> lower_int8(qmodel)."""
    if isinstance(model_or_qmodel, QuantizedViT):
        return lower_int8(model_or_qmodel)
    if isinstance(model_or_qmodel, VisionTransformer):
        return lower_float(model_or_qmodel)
    raise UserInputError(f"cannot lower a {type(model_or_qmodel).__name__}: expected a VisionTransformer "
                         "or a QuantizedViT (from the quant pass)")


