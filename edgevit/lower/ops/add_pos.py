"""add_pos: tokens [N, D] + constant `pos` [N, D] (learned position embedding) -> [N, D].

Integer kernel (tokens int8/int16, pos int8/int16 with its own symmetric scale; output
int8/int16; docs/integer-semantics.md "add_pos"): the rescaling add of `intmath.add_int`
with a = tokens, b = pos and attrs ka, kb, bias, shift, out_quant (as the `add` op).
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intmath import add_int
from edgevit.lower.ops import OpDef, expect_attrs, expect_const, expect_dtype, expect_rank, out, register_op
from edgevit.lower.ops.intcommon import ADD_ATTRS, INT_DTYPES, add_params
from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",) + INT_DTYPES


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[N, D] float32 (pos float32 [N, D]) or int8/int16 (pos int8/int16 [N, D]) -> [N, D]."""
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[N, D]")
    expect_dtype(kernel, x, DTYPES)
    if x.dtype == "float32":
        expect_attrs(kernel, [])
        expect_const(kernel, consts, "pos", x.shape)
        return [out(kernel, x.shape, x.dtype)]
    expect_attrs(kernel, ADD_ATTRS)
    expect_const(kernel, consts, "pos", x.shape, INT_DTYPES)
    _, dtype, quant = add_params(kernel)
    return [out(kernel, x.shape, dtype, quant)]


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] + pos -> [B, N, D] float32."""
    return [inputs[0] + consts["pos"]]


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] int8/int16 (+) pos -> [B, N, D] int8/int16 (rescaling add, pos broadcast over B)."""
    params, _, _ = add_params(kernel)
    return [add_int(inputs[0], consts["pos"], params)]


OP = register_op(OpDef(name="add_pos", infer=infer,
                       run={"float32": run_float, "int8": run_int8, "int16": run_int8},
                       inputs=("tokens",), consts=("pos",), traits=PlanTraits(inplace=(0,)), doc=__doc__))
