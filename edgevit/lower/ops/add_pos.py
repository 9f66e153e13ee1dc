"""add_pos: tokens [N, D] + constant `pos` [N, D] (learned position embedding) -> [N, D]."""

from __future__ import annotations

import numpy as np

from edgevit.lower.ops import OpDef, expect_attrs, expect_const, expect_dtype, expect_rank, out, register_op
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",)


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[N, D] float32 and pos [N, D] -> [N, D]."""
    expect_attrs(kernel, [])
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[N, D]")
    expect_dtype(kernel, x, DTYPES)
    expect_const(kernel, consts, "pos", x.shape)
    return [out(kernel, x.shape, x.dtype)]


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] + pos -> [B, N, D] float32."""
    return [inputs[0] + consts["pos"]]


OP = register_op(OpDef(name="add_pos", infer=infer, run={"float32": run_float}, inputs=("tokens",),
                       consts=("pos",), doc=__doc__))
