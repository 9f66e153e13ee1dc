"""add: elementwise sum of two tensors of the same shape (the residual connection).

Float: a + b (same dtype). Integer (a, b int8 or int16, output int8 or int16;
docs/integer-semantics.md "add"): the rescaling add of `intmath.add_int`,
    acc = a*ka + b*kb + bias   (int64);   y = clamp(rounding_rshift(acc, shift) + out_zp)
with attrs ka, kb, bias, shift (from make_add_params) and out_quant.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intmath import add_int
from edgevit.lower.ops import OpDef, expect_attrs, expect_dtype, fail, out, register_op
from edgevit.lower.ops.intcommon import ADD_ATTRS, INT_DTYPES, add_params
from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",) + INT_DTYPES


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """a [N, D], b [N, D] (same shape; float32, or int8/int16 each) -> [N, D]."""
    a, b = in_infos
    expect_dtype(kernel, a, DTYPES)
    expect_dtype(kernel, b, DTYPES)
    same_kind = (a.dtype == "float32") == (b.dtype == "float32")
    if a.shape != b.shape or not same_kind:
        fail(kernel, f"inputs {a.name!r} {list(a.shape)} {a.dtype} and {b.name!r} {list(b.shape)} {b.dtype} "
                     "must have the same shape and dtype (integer inputs: int8 and/or int16)")
    if a.dtype == "float32":
        expect_attrs(kernel, [])
        return [out(kernel, a.shape, a.dtype)]
    expect_attrs(kernel, ADD_ATTRS)
    _, dtype, quant = add_params(kernel)
    return [out(kernel, a.shape, dtype, quant)]


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, ...] + [B, ...] -> [B, ...] float32."""
    return [inputs[0] + inputs[1]]


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, ...] int8/int16 (+) [B, ...] int8/int16 -> [B, ...] int8/int16 (rescaling add)."""
    params, _, _ = add_params(kernel)
    return [add_int(inputs[0], inputs[1], params)]


OP = register_op(OpDef(name="add", infer=infer, run={"float32": run_float, "int8": run_int8, "int16": run_int8},
                       inputs=("a", "b"), traits=PlanTraits(inplace=(0, 1), row_wise=True),
                       doc=__doc__))
