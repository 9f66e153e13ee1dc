"""The requantize of the int8 GEMM kernels (linear, patch_embed) as TIR expressions.

docs/integer-semantics.md: y = clamp(rounding_rshift((int64)acc * M, 31 - shift) + zp). `requantize`
writes it literally (the "reference" schedule); `requantize_fast` (the "fast" one) computes the same
values in exact int32 steps from per-column values (`requant_columns`), in one of two modes chosen
at code generation from the constants (`requant_mode`, part of the function name): "hi" (right
shifts >= 33, the usual case: 3 steps per output) or "wide" (any shift: the accumulator is first
clamped where the output saturates anyway and pre-shifted; 3-4 more). The steps themselves (smmla,
ssat) are an `Int32Steps` (gemm.py): plain C arithmetic in the generic kernels, instructions in a
target's override.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intmath import INT32_MAX
from edgevit.backend.kernels.base import KernelRequest
from edgevit.backend.kernels.gemm import Column, Int32Steps

HI_MIN_SHIFT = 33  # smallest right shift 31 - shift the "hi" requantize takes as it is (sh = n - 32 >= 1)


def requantize(acc, multiplier, shift, zero_point, lo: int, hi: int):
    """TIR int32 clamp(rounding_rshift((int64)acc * M, 31 - shift) + zp, lo, hi), literally as the spec
    writes it (int32 acc, multiplier, shift, zero_point; the "reference" schedule's epilogue)."""
    from tvm import tirx

    prod = tirx.Cast("int64", acc) * tirx.Cast("int64", multiplier)
    n = tirx.Cast("int64", 31 - shift)
    y = tirx.shift_right(prod + tirx.shift_left(tirx.const(1, "int64"), n - 1), n) + tirx.Cast("int64", zero_point)
    return tirx.Cast("int32", _clamp(y, lo, hi))


def fast_requant_mode(req: KernelRequest, zero_point: int) -> str | None:
    """The fast schedule's requantize mode for the request's multiplier/shift constants and output
    zero point (`requant_mode`); None for the "reference" schedule (the literal 64-bit requantize)."""
    if req.schedule != "fast":
        return None
    return requant_mode(req.consts["multiplier"], req.consts["shift"], zero_point)


def requant_mode(multiplier, shift, zero_point: int) -> str:
    """Which fast requantize the constants allow (decided at code generation, part of the function
    name): "hi" when every column has a right shift n = 31 - shift >= 33 (or multiplier 0) and the
    zero point folds into its rounding word (`hi_rounding`), else "wide" (any constants)."""
    for m, s in zip(np.asarray(multiplier).tolist(), np.asarray(shift).tolist()):
        n = 31 - int(s)
        if m != 0 and n < HI_MIN_SHIFT:
            return "wide"
        if not -(1 << 30) <= hi_rounding(max(n, HI_MIN_SHIFT) - 32, zero_point) <= 1 << 30:
            return "wide"
    return "hi"


def hi_rounding(sh: int, zero_point: int) -> int:
    """The "hi" mode's rounding word 2^(sh-1) + zp 2^sh (sh = n - 32 >= 1): the zero point folded in."""
    return (1 << (sh - 1)) + zero_point * (1 << sh)


def requant_columns(mode: str, mult: str = "multiplier", shift: str = "shift", zp: str = "zp") -> tuple[Column, ...]:
    """Per-column int32 values of `requantize_fast` in `mode` (see `requant_mode`) from the Params
    `mult`, `shift` (int32 [cols]) and the zero point scalar `zp`, with n = 31 - shift:

    - "hi":   mul = M, sh = max(n, 33) - 32, rhi = hi_rounding(sh, zp);
    - "wide": n' = max(n, 3) (n <= 2 and 3 saturate alike), ls = max(33 - n', 0) (pre-shift of acc),
              pw = 2^ls, lim = 2^(n'-2) - 1 if ls else 2^31 - 1 (beyond it every output saturates),
              sh = n' + ls - 32 >= 1, rhi = 2^(sh-1) (the zero point is added per output)."""
    from tvm import tirx

    def n_of(b, m):
        return 31 - b[shift][m]

    def one_shl(v):
        return tirx.shift_left(tirx.const(1, "int32"), v)

    mul = Column("mul", "int32", lambda b, m: b[mult][m])
    if mode == "hi":
        def sh(b, m):
            return tirx.max(n_of(b, m), HI_MIN_SHIFT) - 32

        return (mul, Column("sh", "int32", sh),
                Column("rhi", "int32", lambda b, m: one_shl(sh(b, m) - 1) + b[zp] * one_shl(sh(b, m))))

    def n3(b, m):
        return tirx.max(n_of(b, m), 3)

    def ls(b, m):
        return tirx.max(HI_MIN_SHIFT - n3(b, m), 0)

    def sh(b, m):
        return tirx.max(n3(b, m), HI_MIN_SHIFT) - 32

    def lim(b, m):
        return tirx.if_then_else(ls(b, m) > 0, one_shl(n3(b, m) - 2) - 1, tirx.const(INT32_MAX, "int32"))

    return (mul, Column("pw", "int32", lambda b, m: one_shl(ls(b, m))), Column("lim", "int32", lim),
            Column("sh", "int32", sh), Column("rhi", "int32", lambda b, m: one_shl(sh(b, m) - 1)))


def requantize_fast(acc, col: dict, zero_point, out_dtype: str, mode: str, steps: Int32Steps):
    """`requantize` to the full range of out_dtype (int8 / int16) from `requant_columns(mode)` values,
    in exact int32 steps (`steps`: smmla, ssat):

    - "hi":   ssat(smmla(acc, M, rhi) >> sh)                        (zero point inside rhi)
    - "wide": ssat((smmla(clamp(acc, ~lim, lim) * pw, M, rhi) >> sh) + zp)

    Both are floor((acc M + 2^(n-1)) / 2^n) (+ zp): smmla(a, M, c) = c + floor(a M / 2^32), and
    floor(floor(x) / 2^sh) = floor(x / 2^sh). No int32 overflow: |a| <= 2^31, M < 2^31 give
    |floor(a M / 2^32)| <= 2^30, and |rhi| <= 2^30 (`requant_mode`; wide: rhi <= 2^29)."""
    from tvm import tirx

    if mode == "hi":
        return steps.ssat(tirx.shift_right(steps.smmla(acc, col["mul"], col["rhi"]), col["sh"]), out_dtype)
    a = tirx.min(tirx.max(acc, tirx.bitwise_not(col["lim"])), col["lim"]) * col["pw"]
    return steps.ssat(tirx.shift_right(steps.smmla(a, col["mul"], col["rhi"]), col["sh"]) + zero_point, out_dtype)


def _clamp(x, lo: int, hi: int):
    """min(max(x, lo), hi) in x's dtype."""
    from tvm import tirx

    return tirx.max(tirx.min(x, tirx.const(hi, str(x.ty))), tirx.const(lo, str(x.ty)))
