"""add: elementwise sum of two tensors of the same shape and dtype (the residual connection)."""

from __future__ import annotations

import numpy as np

from edgevit.lower.ops import OpDef, expect_attrs, expect_dtype, fail, out, register_op
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",)


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """a [N, D], b [N, D] (same shape, float32) -> [N, D]."""
    expect_attrs(kernel, [])
    a, b = in_infos
    expect_dtype(kernel, a, DTYPES)
    expect_dtype(kernel, b, DTYPES)
    if a.shape != b.shape or a.dtype != b.dtype:
        fail(kernel, f"inputs {a.name!r} {list(a.shape)} {a.dtype} and {b.name!r} {list(b.shape)} {b.dtype} "
                     "must have the same shape and dtype")
    return [out(kernel, a.shape, a.dtype)]


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, ...] + [B, ...] -> [B, ...] float32."""
    return [inputs[0] + inputs[1]]


OP = register_op(OpDef(name="add", infer=infer, run={"float32": run_float}, inputs=("a", "b"), doc=__doc__))
