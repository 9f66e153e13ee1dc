"""pool: tokens [N, D] -> [1, D]. Attr mode: "cls" (row 0, the class token) or "mean" (mean over rows).

The float path sums in float64 and rounds the mean to float32 once.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.ops import OpDef, attr_choice, expect_attrs, expect_dtype, expect_rank, out, register_op
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",)
MODES = ("cls", "mean")


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[N, D] float32 -> [1, D]."""
    expect_attrs(kernel, ["mode"])
    attr_choice(kernel, "mode", MODES)
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[N, D]")
    expect_dtype(kernel, x, DTYPES)
    return [out(kernel, (1, x.shape[1]), x.dtype)]


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] float32 -> [B, 1, D] float32."""
    x = inputs[0]
    if kernel.attrs["mode"] == "cls":
        return [x[:, :1].copy()]
    return [x.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)]


OP = register_op(OpDef(name="pool", infer=infer, run={"float32": run_float}, inputs=("tokens",), doc=__doc__))
