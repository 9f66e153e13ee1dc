"""pool: tokens [N, D] -> [1, D] or [rows, D]. Attr mode: "cls" (row 0, the class token), "mean" (mean
over rows) or "prefix" (the first `rows` rows, attr `rows` in 1..N: the class and distillation tokens
of a DeiT-distilled model, rows 2, -> [rows, D]).

The float path sums in float64 and rounds the mean to float32 once.

Integer kernels (int8 or int16 input; docs/integer-semantics.md "pool"):
- "cls" / "prefix": copy row 0 / the first `rows` rows; the output keeps the input's dtype and
  quantization (no other attrs).
- "mean": per column, acc = sum_n x[n, d] - N * in_zero_point (int32), then
  y = requantize(acc, multiplier, shift, out zero point) with real multiplier s_in / (N * s_out)
  (round half up, like every requantize). Attrs: in_zero_point, multiplier, shift, out_quant.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intmath import qrange, requantize
from edgevit.lower.ops import (OpDef, attr_choice, attr_int, expect_attrs, expect_dtype, expect_rank, fail, out,
                               register_op)
from edgevit.lower.ops.intcommon import INT_DTYPES, expect_zero_point, int_attr, multiplier_attrs, out_quant
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",) + INT_DTYPES
MODES = ("cls", "mean", "prefix")
MEAN_ATTRS = ("mode", "in_zero_point", "multiplier", "shift", "out_quant")


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[N, D] float32, int8 or int16 -> [1, D] ("cls", "mean") or [rows, D] ("prefix")."""
    mode = attr_choice(kernel, "mode", MODES)
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[N, D]")
    expect_dtype(kernel, x, DTYPES)
    if mode == "prefix":
        expect_attrs(kernel, ["mode", "rows"])
        rows = attr_int(kernel, "rows", 1)
        if rows > x.shape[0]:
            fail(kernel, f"attr 'rows' = {rows} exceeds the {x.shape[0]} rows of input {x.name!r}")
        return [out(kernel, (rows, x.shape[1]), x.dtype, x.quant)]
    if x.dtype == "float32" or mode == "cls":
        expect_attrs(kernel, ["mode"])
        return [out(kernel, (1, x.shape[1]), x.dtype, x.quant)]
    expect_attrs(kernel, MEAN_ATTRS)
    lo, hi = qrange(x.dtype)
    zp = int_attr(kernel, "in_zero_point", lo, hi)
    expect_zero_point(kernel, x, zp, "attr 'in_zero_point'")
    if x.shape[0] * (hi - lo) >= 1 << 31:
        fail(kernel, f"input {x.name!r}: {x.shape[0]} rows of {x.dtype} may overflow the int32 sum")
    multiplier_attrs(kernel, "")
    dtype, quant = out_quant(kernel)
    return [out(kernel, (1, x.shape[1]), dtype, quant)]


def prefix_rows(kernel: Kernel) -> int:
    """Rows a copying pool keeps: `rows` for mode "prefix", 1 for "cls"."""
    return int(kernel.attrs["rows"]) if kernel.attrs["mode"] == "prefix" else 1


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] float32 -> [B, 1, D] float32 ([B, rows, D] for "prefix")."""
    x = inputs[0]
    if kernel.attrs["mode"] in ("cls", "prefix"):
        return [x[:, :prefix_rows(kernel)].copy()]
    return [x.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)]


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] int8/int16 -> [B, 1, D]: row 0, or the requantized column sums ([B, rows, D]: the first rows)."""
    x = inputs[0]
    if kernel.attrs["mode"] in ("cls", "prefix"):
        return [x[:, :prefix_rows(kernel)].copy()]
    a = kernel.attrs
    acc = x.sum(axis=1, keepdims=True, dtype=np.int64) - x.shape[1] * a["in_zero_point"]
    q = a["out_quant"]
    return [requantize(acc, a["multiplier"], a["shift"], q["zero_point"], out_dtype=np.dtype(q["dtype"]))]


OP = register_op(OpDef(name="pool", infer=infer, run={"float32": run_float, "int8": run_int8, "int16": run_int8},
                       inputs=("tokens",), doc=__doc__))
