"""Vectorizable float32 math for the cpu kernels: exp and GELU as plain TIR arithmetic.

LLVM turns `exp` / `erfc` calls of a vectorized loop into one libm call per lane; these are
polynomials and bit operations instead, so a vector loop stays vector code:

- `exp_f32(y)`: 2^n * p(r), n = round(y log2 e), r = y - n ln 2 (ln 2 split in two for exactness),
  p a degree-7 Taylor polynomial on |r| <= ln2/2 (relative error < 2e-8 there, so the result is
  within a few float32 ulps); y is clamped to [-87, 88] (the float32 range; exp(-87) ~ 1.6e-38);
- `erfc_f32(x)`: the Chebyshev-fitted form erfc(x) = t exp(-x^2 + P(t)), t = 1 / (1 + |x|/2), with
  fractional error below 1.2e-7 for every x (Press et al., Numerical Recipes, "erfcc"), and
  erfc(-x) = 2 - erfc(x);
- `gelu_f32(v)` = 0.5 v erfc(-v / sqrt 2), the exact GELU the reference interpreter computes, to
  ~1e-7 relative (the float32 outputs are checked within 1e-4).
"""

from __future__ import annotations

import math

F32 = "float32"
LN2_HI, LN2_LO = 0.693145751953125, 1.428606765330187e-06  # ln 2 = HI + LO, HI exact in few bits
ERFC_P = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
          1.48851587, -0.82215223, 0.17087277)


def _c(v: float):
    from tvm import tirx

    return tirx.const(v, F32)


def exp_f32(y):
    """TIR float32 exp(y) without a libm call (see the module docstring)."""
    from tvm import tirx

    y = tirx.max(tirx.min(y, _c(88.0)), _c(-87.0))
    n = tirx.round(y * _c(1.0 / math.log(2.0)))
    r = (y - n * _c(LN2_HI)) - n * _c(LN2_LO)
    p = _c(1.0 / math.factorial(7))
    for i in range(6, -1, -1):
        p = p * r + _c(1.0 / math.factorial(i))
    bits = tirx.shift_left(tirx.Cast("int32", n) + tirx.const(127, "int32"), tirx.const(23, "int32"))
    return p * tirx.reinterpret(F32, bits)


def erfc_f32(x):
    """TIR float32 erfc(x) without a libm call (see the module docstring)."""
    from tvm import tirx

    z = tirx.abs(x)
    t = _c(1.0) / (_c(1.0) + _c(0.5) * z)
    poly = _c(ERFC_P[-1])
    for coef in reversed(ERFC_P[:-1]):
        poly = poly * t + _c(coef)
    e = t * exp_f32(poly - z * z)
    return tirx.Select(x >= _c(0.0), e, _c(2.0) - e)


def gelu_f32(v):
    """TIR float32 GELU 0.5 v erfc(-v / sqrt 2) without a libm call."""
    return _c(0.5) * v * erfc_f32(v * _c(-1.0 / math.sqrt(2.0)))
