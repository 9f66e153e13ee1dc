"""layernorm: per row of x [N, D]: (x - mean) / sqrt(var + eps) * gamma + beta -> [N, D].

mean and the biased variance are over the D features of each row (as torch.nn.LayerNorm).
Constants: gamma [D], beta [D]. Attr: eps (float > 0). The float path accumulates the
statistics in float64 and normalises in float32.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.ops import (OpDef, attr_float, expect_attrs, expect_const, expect_dtype, expect_rank, out,
                               register_op)
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",)


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[N, D] float32, gamma [D], beta [D] -> [N, D]."""
    expect_attrs(kernel, ["eps"])
    attr_float(kernel, "eps")
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[N, D]")
    expect_dtype(kernel, x, DTYPES)
    expect_const(kernel, consts, "gamma", x.shape[-1:])
    expect_const(kernel, consts, "beta", x.shape[-1:])
    return [out(kernel, x.shape, x.dtype)]


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis of a float32 array [..., D]; float32 out, same shape.

    Mean and variance are accumulated in float64; centring and the affine map run in float32.
    """
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float64)
    xc = x - mean.astype(np.float32)
    var = np.einsum("...i,...i->...", xc, xc, dtype=np.float64)[..., None] / x.shape[-1]
    xc *= (1.0 / np.sqrt(var + eps)).astype(np.float32)
    xc *= gamma
    xc += beta
    return xc


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] float32 -> [B, N, D] float32."""
    return [layernorm(inputs[0], consts["gamma"], consts["beta"], float(kernel.attrs["eps"]))]


OP = register_op(OpDef(name="layernorm", infer=infer, run={"float32": run_float}, inputs=("x",),
                       consts=("gamma", "beta"), doc=__doc__))
