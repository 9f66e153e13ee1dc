"""linear: x [N, K] times weight [M, K] (transposed) plus optional bias [M] -> [N, M].

    y[n, m] = sum_k x[n, k] * weight[m, k] + bias[m]      (bias omitted: 0)
then the attr `activation` ("none" | "gelu", default "none") is applied elementwise, so
fc1 + GELU is one kernel and the hidden activations exist only once. A low-rank
factorised linear is two kernels: the first (rank r) has no bias.
Constants: weight (required), bias (optional). Quantisation attrs arrive with run_int8.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.ops import (OpDef, attr_choice, expect_attrs, expect_const, expect_dtype, expect_rank, fail,
                               out, register_op)
from edgevit.lower.ops.gelu import gelu
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",)
ACTIVATIONS = ("none", "gelu")


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[N, K] float32, weight [M, K], bias [M] (optional) -> [N, M]."""
    expect_attrs(kernel, ["activation"])
    attr_choice(kernel, "activation", ACTIVATIONS, default="none")
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[N, K]")
    expect_dtype(kernel, x, DTYPES)
    w = consts["weight"]
    if w.ndim != 2 or w.shape[1] != x.shape[1]:
        fail(kernel, f"constant {kernel.consts['weight']!r} (weight) has shape {list(w.shape)}; "
                     f"expected [M, {x.shape[1]}] to match input {x.name!r} {list(x.shape)}")
    expect_const(kernel, consts, "weight", w.shape)
    if "bias" in consts:
        expect_const(kernel, consts, "bias", (w.shape[0],))
    return [out(kernel, (x.shape[0], w.shape[0]), x.dtype)]


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


def macs(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo]) -> int:
    """N * K * M per image."""
    n, k = in_infos[0].shape
    return n * k * out_infos[0].shape[1]


OP = register_op(OpDef(name="linear", infer=infer, run={"float32": run_float}, inputs=("x",),
                       consts=("weight",), optional_consts=("bias",), macs=macs, doc=__doc__))
