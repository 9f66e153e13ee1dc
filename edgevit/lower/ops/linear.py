"""linear: x [N, K] times weight [M, K] (transposed) plus optional bias [M] -> [N, M].

    y[n, m] = sum_k x[n, k] * weight[m, k] + bias[m]      (bias omitted: 0)
then the attr `activation` ("none" | "gelu", default "none") is applied elementwise, so
fc1 + GELU is one kernel and the hidden activations exist only once. A low-rank
factorised linear is two kernels: the first (rank r) has no float bias.
Float constants: weight (required), bias (optional).

Integer kernel (input int8, output int8; docs/integer-semantics.md "linear"):
    acc[n, m] = sum_k x[n, k] * w[m, k] + bias[m]                              int32
    y[n, m]   = requantize(acc, multiplier[m], shift[m], out zero point)       int8
with `activation: "gelu"`: requantize to the pre-GELU quantization (attr `act_in_quant`, its
zero point used) and then y = act_lut[y + 128]. Constants: weight int8 [M, K] (8-bit,
[-127, 127]) or, with attr `weight_bits: 4`, int8 [M, ceil(K/2)] packed two per byte along K
(`intcommon.pack_int4`: low nibble = even k, high nibble = odd k, values in [-7, 7]);
bias int32 [M] (input zero point folded in); multiplier, shift int32 [M]; act_lut int8 [256].
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intlut import gelu_int
from edgevit.lower.intmath import requantize
from edgevit.lower.ops import (OpDef, attr_choice, expect_attrs, expect_const, expect_dtype, expect_rank, fail,
                               out, register_op)
from edgevit.lower.ops.gelu import gelu
from edgevit.lower.ops.intcommon import (channel_requant_consts, gemm_bias, expect_roles, out_quant,
                                         unpack_int4)
from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32", "int8")
ACTIVATIONS = ("none", "gelu")
INT_ATTRS = ("activation", "out_quant", "weight_bits", "act_in_quant")


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[N, K] float32 or int8, weight [M, K] (int 4-bit: [M, ceil(K/2)]), bias [M] -> [N, M]."""
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[N, K]")
    expect_dtype(kernel, x, DTYPES)
    act = attr_choice(kernel, "activation", ACTIVATIONS, default="none")
    if x.dtype != "float32":
        return infer_int(kernel, x, consts, act)
    expect_attrs(kernel, ["activation"])
    expect_roles(kernel, consts, ["weight"], ["bias"], kind="float32")
    m = _weight_rows(kernel, consts["weight"], x.shape[1], x)
    expect_const(kernel, consts, "weight", (m, x.shape[1]))
    if "bias" in consts:
        expect_const(kernel, consts, "bias", (m,))
    return [out(kernel, (x.shape[0], m), x.dtype)]


def _weight_rows(kernel: Kernel, w: np.ndarray, cols: int, x: TensorInfo) -> int:
    """M of a 2-D weight whose second axis must be `cols`."""
    if w.ndim != 2 or w.shape[1] != cols:
        fail(kernel, f"constant {kernel.consts['weight']!r} (weight) has shape {list(w.shape)}; "
                     f"expected [M, {cols}] to match input {x.name!r} {list(x.shape)}")
    return int(w.shape[0])


def infer_int(kernel: Kernel, x: TensorInfo, consts: dict[str, np.ndarray], act: str) -> list[TensorInfo]:
    """Integer kernel: checks weight bits/packing, requantize constants and the GELU table."""
    expect_attrs(kernel, INT_ATTRS)
    bits = kernel.attrs.get("weight_bits", 8)
    if bits not in (4, 8):
        fail(kernel, f"attr 'weight_bits' must be 4 or 8 (got {bits!r})")
    gelu_roles = ["act_lut"] if act == "gelu" else []
    expect_roles(kernel, consts, ["weight", "bias", "multiplier", "shift"] + gelu_roles)
    k = x.shape[1]
    m = _weight_rows(kernel, consts["weight"], k if bits == 8 else (k + 1) // 2, x)
    w = expect_const(kernel, consts, "weight", consts["weight"].shape, ("int8",))
    wk = w if bits == 8 else unpack_int4(w, k)
    lim = 127 if bits == 8 else 7
    if w.size and (wk.min() < -lim or wk.max() > lim):
        fail(kernel, f"constant {kernel.consts['weight']!r}: {bits}-bit weights must lie in [-{lim}, {lim}]")
    channel_requant_consts(kernel, consts, m)
    dtype, quant = out_quant(kernel, ("int8",))
    if act == "gelu":
        out_quant(kernel, ("int8",), key="act_in_quant")
        expect_const(kernel, consts, "act_lut", (256,), ("int8",))
    elif "act_in_quant" in kernel.attrs:
        fail(kernel, "attr 'act_in_quant' is only meaningful with activation 'gelu'")
    return [out(kernel, (x.shape[0], m), dtype, quant)]


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, K] float32 -> [B, N, M] float32 (one GEMM over the batch's rows)."""
    x = inputs[0]
    b, n, k = x.shape
    y = x.reshape(b * n, k) @ consts["weight"].T
    if "bias" in consts:
        y += consts["bias"]
    if kernel.attrs.get("activation", "none") == "gelu":
        y = gelu(y)
    return [y.reshape(b, n, -1)]


def int_weight(kernel: Kernel, consts: dict[str, np.ndarray], k: int) -> np.ndarray:
    """The int8 weight [M, K] of an integer kernel (4-bit weights unpacked)."""
    w = consts["weight"]
    return unpack_int4(w, k) if kernel.attrs.get("weight_bits", 8) == 4 else w


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, K] int8 -> [B, N, M] int8: int32 GEMM + bias, per-channel requantize, optional GELU LUT."""
    x = inputs[0]
    b, n, k = x.shape
    w = int_weight(kernel, consts, k)
    acc = gemm_bias(x.reshape(b * n, k), w, consts["bias"])
    gelu_fused = kernel.attrs.get("activation", "none") == "gelu"
    zp = kernel.attrs["act_in_quant" if gelu_fused else "out_quant"]["zero_point"]
    y = requantize(acc, consts["multiplier"], consts["shift"], zp, out_dtype=np.int8)
    if gelu_fused:
        y = gelu_int(y, consts["act_lut"])
    return [y.reshape(b, n, -1)]


def macs(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo]) -> int:
    """N * K * M per image."""
    n, k = in_infos[0].shape
    return n * k * out_infos[0].shape[1]


OP = register_op(OpDef(name="linear", infer=infer, run={"float32": run_float, "int8": run_int8}, inputs=("x",),
                       optional_consts=("weight", "bias", "multiplier", "shift", "act_lut"), macs=macs,
                       traits=PlanTraits(row_wise=True), doc=__doc__))
