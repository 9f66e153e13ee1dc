"""patch_embed: image [C, H, W] -> tokens [P, D], P = (H/p) * (W/p).

Non-overlapping p x p patches, row-major over the patch grid (row gy, then column gx).
Each patch is flattened in (c, kh, kw) order (im2col) and multiplied by `weight`
[D, C*p*p] (a conv weight [D, C, p, p] reshaped), plus `bias` [D]:
    tokens[gy*(W/p) + gx, d] = sum_{c,kh,kw} image[c, gy*p+kh, gx*p+kw] * weight[d, (c*p+kh)*p+kw] + bias[d]
Attrs: `patch` (int p, dividing H and W). Constants: weight, bias.

Integer kernel (int8 image -> int8 or int16 tokens; docs/integer-semantics.md "patch_embed"):
the same sum over raw int8 values with int8 weight [D, C*p*p] ([-127, 127]) plus int32 bias [D]
(input zero point folded in), then y = requantize(acc, multiplier[d], shift[d], out zero point).
Constants: weight int8, bias/multiplier/shift int32 [D]. Attrs: patch, out_quant.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intmath import requantize
from edgevit.lower.ops import (OpDef, attr_int, expect_attrs, expect_const, expect_dtype, expect_rank, fail,
                               out, register_op)
from edgevit.lower.ops.intcommon import channel_requant_consts, gemm_bias, expect_roles, out_quant
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32", "int8")


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """image [C, H, W] float32 or int8 -> [P, D]; checks p divides H, W and weight [D, C*p*p], bias [D]."""
    (img,) = in_infos
    is_int = img.dtype != "float32"
    expect_attrs(kernel, ["patch", "out_quant"] if is_int else ["patch"])
    expect_rank(kernel, img, 3, "[C, H, W]")
    expect_dtype(kernel, img, DTYPES)
    p = attr_int(kernel, "patch")
    c, h, w = img.shape
    if h % p or w % p:
        fail(kernel, f"input {img.name!r} of shape {list(img.shape)}: patch {p} does not divide H and W")
    if consts["weight"].ndim != 2:
        fail(kernel, f"constant {kernel.consts['weight']!r} (weight) has shape "
                     f"{list(consts['weight'].shape)}; expected [D, {c * p * p}] (D, C*p*p)")
    d = consts["weight"].shape[0]
    if not is_int:
        expect_roles(kernel, consts, ["weight", "bias"], kind="float32")
        expect_const(kernel, consts, "weight", (d, c * p * p))
        expect_const(kernel, consts, "bias", (d,))
        return [out(kernel, ((h // p) * (w // p), d))]
    expect_roles(kernel, consts, ["weight", "bias", "multiplier", "shift"])
    wq = expect_const(kernel, consts, "weight", (d, c * p * p), ("int8",))
    if wq.size and wq.min() < -127:
        fail(kernel, f"constant {kernel.consts['weight']!r}: int8 weights must lie in [-127, 127]")
    channel_requant_consts(kernel, consts, d)
    dtype, quant = out_quant(kernel)
    return [out(kernel, ((h // p) * (w // p), d), dtype, quant)]


def im2col(x: np.ndarray, p: int) -> np.ndarray:
    """[B, C, H, W] -> [B, (H/p)*(W/p), C*p*p] in (c, kh, kw) order per patch."""
    b, c, h, w = x.shape
    cols = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5)
    return cols.reshape(b, (h // p) * (w // p), c * p * p)


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, C, H, W] float32 -> [B, P, D] float32 (one GEMM over all patches of the batch)."""
    cols = im2col(inputs[0], int(kernel.attrs["patch"]))
    b, n, k = cols.shape
    y = cols.reshape(b * n, k) @ consts["weight"].T
    y += consts["bias"]
    return [y.reshape(b, n, -1)]


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, C, H, W] int8 -> [B, P, D] int8/int16: int32 GEMM + bias, per-channel requantize."""
    cols = im2col(inputs[0], int(kernel.attrs["patch"]))
    b, n, k = cols.shape
    acc = gemm_bias(cols.reshape(b * n, k), consts["weight"], consts["bias"])
    q = kernel.attrs["out_quant"]
    y = requantize(acc, consts["multiplier"], consts["shift"], q["zero_point"], out_dtype=np.dtype(q["dtype"]))
    return [y.reshape(b, n, -1)]


def macs(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo]) -> int:
    """P * C*p*p * D per image."""
    c = in_infos[0].shape[0]
    p = int(kernel.attrs["patch"])
    n, d = out_infos[0].shape
    return n * c * p * p * d


OP = register_op(OpDef(name="patch_embed", infer=infer, run={"float32": run_float, "int8": run_int8},
                       inputs=("image",), consts=("weight", "bias"), optional_consts=("multiplier", "shift"),
                       macs=macs, doc=__doc__))
