"""TIR expression builders shared by the generic kernels (TVM imported lazily).

Integer steps of docs/integer-semantics.md (`tir_rshift`, `tir_half`, `tir_clamp`,
`tir_requantize`) and exact float constants through their IEEE-754 bits (`f32_const`,
`f64_const`; the C side is micro/f32bits.h, helper `F32_HELPER`).
"""

from __future__ import annotations

import struct

import numpy as np

from edgevit.lower.intmath import qrange

F32_HELPER = "f32bits"  # micro/f32bits.h: exact float constants from their bits


def tir_rshift(x, n):
    """rounding_rshift for int64 `x` and int64 shift `n` >= 1: (x + 2^(n-1)) >> n (round half up)."""
    from tvm.script import tirx as T

    return T.shift_right(x + T.shift_left(T.int64(1), n - T.int64(1)), n)


def tir_half(n):
    """2^(n-1) as int64 for an int32 shift `n` >= 1 (the rounding constant of `tir_rshift`)."""
    from tvm.script import tirx as T

    return T.shift_left(T.int64(1), T.Cast("int64", n) - T.int64(1))


def tir_clamp(x, dtype: str):
    """clamp(x, qmin, qmax) of `dtype`, computed in x's type, then cast to `dtype`."""
    from tvm import tirx
    from tvm.script import tirx as T

    lo, hi = qrange(dtype)
    xt = str(x.ty)
    return T.Cast(dtype, T.max(T.min(x, tirx.const(hi, xt)), tirx.const(lo, xt)))


def tir_requantize(acc, mult, shift, zp, dtype: str):
    """requantize(acc): clamp(rounding_rshift((int64)acc * M, 31 - shift) + zp) as `dtype`.

    acc int32 expression; mult, shift, zp int32 scalars (shift in [-31, 30], so the shift is 1..62).
    """
    from tvm.script import tirx as T

    n = T.int64(31) - T.Cast("int64", shift)
    return tir_clamp(tir_rshift(T.Cast("int64", acc) * T.Cast("int64", mult), n) + T.Cast("int64", zp), dtype)


def f32_const(value: float):
    """An exact float32 constant (TVM prints float literals with 7 digits; this goes through bits)."""
    from tvm.script import tirx as T

    bits = struct.unpack("<I", struct.pack("<f", np.float32(value)))[0]
    return T.call_pure_extern("float32", "ev_f32_bits", T.uint32(bits))


def f64_const(value: float):
    """An exact float64 constant (see `f32_const`)."""
    from tvm.script import tirx as T

    bits = struct.unpack("<Q", struct.pack("<d", float(value)))[0]
    return T.call_pure_extern("float64", "ev_f64_bits", T.uint32(bits >> 32), T.uint32(bits & 0xFFFFFFFF))
