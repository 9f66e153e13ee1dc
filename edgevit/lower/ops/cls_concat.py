"""cls_concat: tokens [P, D] + constant `cls` [D] -> [P+1, D], the class token first (row 0).

Integer kernel (int8 or int16): no arithmetic. The `cls` constant has the input's dtype and is
already quantized to the input's quantization, which the output keeps (lowering makes the
patch embedding produce the quantization chosen for the concatenated tensor).
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.ops import OpDef, expect_attrs, expect_const, expect_dtype, expect_rank, out, register_op
from edgevit.lower.ops.intcommon import INT_DTYPES
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",) + INT_DTYPES


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[P, D] and cls [D] of the same dtype (float32, int8 or int16) -> [P+1, D] (quantization kept)."""
    expect_attrs(kernel, [])
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[P, D]")
    expect_dtype(kernel, x, DTYPES)
    p, d = x.shape
    expect_const(kernel, consts, "cls", (d,), (x.dtype,))
    return [out(kernel, (p + 1, d), x.dtype, x.quant)]


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, P, D] -> [B, P+1, D] with row 0 = cls (any dtype: the integer kernel is the same copy)."""
    x = inputs[0]
    y = np.empty((x.shape[0], x.shape[1] + 1, x.shape[2]), dtype=x.dtype)
    y[:, 0] = consts["cls"]
    y[:, 1:] = x
    return [y]


run_int8 = run_float

OP = register_op(OpDef(name="cls_concat", infer=infer,
                       run={"float32": run_float, "int8": run_int8, "int16": run_int8},
                       inputs=("tokens",), consts=("cls",), doc=__doc__))
