"""Integer arithmetic primitives: the int8 semantics of edgevit (spec: docs/integer-semantics.md).

Two kinds of functions live here:

* build time (``quantize_multiplier``, ``make_*_params``): Python floats allowed; they turn real
  scales into integer constants (multipliers, shifts, biases) that a C kernel embeds;
* run time (``rounding_rshift``, ``requantize``, ``add_int``, ``layernorm_int``, ``isqrt64``,
  ``bit_length``): integer NumPy only (int64 intermediates), each line translating one-to-one to C
  with ``int64_t``. No float, no libm, no allocation is implied.

THE rounding rule (used everywhere, build time included): round half up,

    rounding_rshift(x, n) = floor((x + 2^(n-1)) / 2^n)   (n >= 1),   x   (n == 0)

computed as ``(x + ((int64_t)1 << (n - 1))) >> n`` with an arithmetic right shift (GCC/Clang/armcc
define ``>>`` on negative signed values as arithmetic). Ties go toward +infinity: 2.5 -> 3,
-2.5 -> -2. This is TFLite's single-rounding MultiplyByQuantizedMultiplier rule.

LUT-based operators (softmax, GELU) are in ``edgevit.lower.intlut``.

Scales a calibrated model may bring that these constants cannot represent raise ``QuantScaleError``
(a UserInputError: exit code 2, with what to try); a broken call contract (wrong dtype, shapes,
constants not made here) stays a ValueError / TypeError / OverflowError.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from edgevit.errors import UserInputError

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_RSHIFT = 62            # largest shift rounding_rshift accepts (x + 2^61 cannot overflow int64)
MAX_ABS_RSHIFT_IN = 1 << 62  # |x| bound for rounding_rshift
SHIFT_MIN, SHIFT_MAX = -31, 30  # quantize_multiplier exponent range: right shift 31 - shift in [1, 62]
LN_MAX_DIM = 1024
RECALIBRATE = ("recalibrate (e.g. quant(observer=percentile) or more calib images) or check the checkpoint "
               "for extreme or non-finite weights")


class QuantScaleError(UserInputError):
    """Quantization scales (from calibrating the user's model) that the integer arithmetic cannot represent."""


# ---------------------------------------------------------------- helpers (build time)

def round_half_up(x: float) -> int:
    """floor(x + 1/2) computed exactly for a Python float ``x`` (no x + 0.5 double rounding)."""
    f = math.floor(x)
    return int(f) + (1 if x - f >= 0.5 else 0)


def round_half_up_array(x) -> np.ndarray:
    """Elementwise ``round_half_up`` of a float array (float64 math): int64, same shape.

    floor(v) + (v - floor(v) >= 1/2) is exact for every double (the subtraction is exact), unlike
    floor(v + 0.5), which misrounds 0.49999999999999994. Build-time / host-side use only.
    """
    v = np.asarray(x, dtype=np.float64)
    f = np.floor(v)
    return (f + (v - f >= 0.5)).astype(np.int64)


@functools.lru_cache(maxsize=64)  # every kernel check asks; np.iinfo is slow to build
def qrange(dtype, qmin: int | None = None, qmax: int | None = None) -> tuple[int, int]:
    """Clamp range for an integer dtype: (qmin, qmax) defaulting to the dtype limits."""
    info = np.iinfo(np.dtype(dtype))
    lo = info.min if qmin is None else int(qmin)
    hi = info.max if qmax is None else int(qmax)
    if not info.min <= lo <= hi <= info.max:
        raise ValueError(f"clamp range [{lo}, {hi}] does not fit {np.dtype(dtype).name}")
    return lo, hi


def _require_range(x: np.ndarray, lo: int, hi: int, what: str) -> None:
    """Raise OverflowError unless every element of integer ``x`` lies in [lo, hi].

    Free when x's dtype cannot hold anything outside [lo, hi] (e.g. int8 data for an int16 bound).
    """
    info = np.iinfo(x.dtype)
    if lo <= info.min and info.max <= hi:
        return
    if x.size and (x.min() < lo or x.max() > hi):
        raise OverflowError(f"{what} out of range [{lo}, {hi}]: got [{x.min()}, {x.max()}]")


def _as_int64(x, what: str) -> np.ndarray:
    """Integer array -> int64 array (no copy if it already is one: never modify the result in place);
    floats are rejected (run-time functions are integer only)."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _check_int(x, lo: int, hi: int, what: str) -> np.ndarray:
    """x as an integer array (its own dtype, no copy) checked to lie in [lo, hi]; floats rejected."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer array, got dtype {a.dtype}")
    _require_range(a, lo, hi, what)
    return a


def _int_input(x, lo: int, hi: int, what: str) -> np.ndarray:
    """Integer array checked to lie in [lo, hi] (in its own dtype), then as int64 (maybe not a copy)."""
    return _check_int(x, lo, hi, what).astype(np.int64, copy=False)


def _rshift_inplace(y: np.ndarray, n) -> np.ndarray:
    """rounding_rshift without checks, in place on a fresh int64 array ``y`` (shape already broadcast).

    n: int or int64 array broadcastable to y, values in [0, 62]; |y| <= 2^62. Returns y.
    """
    if np.ndim(n) == 0:
        k = int(n)
        if k:
            y += 1 << (k - 1)
            y >>= k
        return y
    n = np.asarray(n, dtype=np.int64)
    y += np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), np.int64(0))
    y >>= n
    return y


def _clamp_cast(y: np.ndarray, lo: int, hi: int, dtype) -> np.ndarray:
    """clamp(y, lo, hi) in place on a fresh int64 array, then cast to ``dtype``."""
    np.clip(y, lo, hi, out=y)
    return y.astype(dtype)


# ---------------------------------------------------------------- multipliers

def quantize_multiplier(real: float) -> tuple[int, int]:
    """Encode a real scale as ``real ~= multiplier * 2^(shift - 31)``.

    Returns ``(multiplier, shift)`` with multiplier in [2^30, 2^31) (fits int32) and shift in
    [-31, 30], so the run-time right shift ``31 - shift`` lies in [1, 62]. Relative error
    <= 2^-31. ``real == 0`` and ``0 < real < 2^-32`` give (0, 0): for any int32 accumulator
    |acc * real| < 1/2 there, which rounds to exactly 0, so the flush is exact. real that rounds to
    >= 2^30 (i.e. real >= 2^30 (1 - 2^-32)), negative or non-finite values raise QuantScaleError.
    """
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise QuantScaleError(f"requantization multiplier must be a finite non-negative real, got {real}; "
                              f"{RECALIBRATE}")
    if real == 0.0:
        return 0, 0
    frac, exp = math.frexp(real)                     # real = frac * 2^exp, frac in [0.5, 1)
    mult = round_half_up(math.ldexp(frac, 31))       # exact: ldexp only changes the exponent
    if mult == 1 << 31:
        mult, exp = 1 << 30, exp + 1
    if exp > SHIFT_MAX:
        raise QuantScaleError(f"requantization multiplier {real} >= 2^{SHIFT_MAX} is not representable (an "
                              f"input*weight/output scale ratio that large means a degenerate calibration); "
                              f"{RECALIBRATE}")
    if exp < SHIFT_MIN:
        return 0, 0
    return mult, exp


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``quantize_multiplier``: float [C] -> (multiplier int32 [C], shift int32 [C])."""
    pairs = [quantize_multiplier(r) for r in np.asarray(reals, dtype=np.float64).reshape(-1)]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    return mult, shift


# ---------------------------------------------------------------- run time: rounding, requantize

def rounding_rshift(x, n) -> np.ndarray:
    """Round-half-up arithmetic right shift: floor((x + 2^(n-1)) / 2^n), x unchanged for n == 0.

    x: integer array (any shape), |x| <= 2^62; n: int or integer array broadcastable to x, in
    [0, 62]. Returns int64. C: ``n ? (x + ((int64_t)1 << (n - 1))) >> n : x``.
    """
    x = _int_input(x, -MAX_ABS_RSHIFT_IN, MAX_ABS_RSHIFT_IN, "rounding_rshift input")
    n = _int_input(n, 0, MAX_RSHIFT, "rounding_rshift shift")
    half = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), np.int64(0))
    y = x + half
    y >>= n
    return y


def _check_multiplier(mult: np.ndarray, shift: np.ndarray) -> None:
    """Validate (multiplier, shift) as produced by quantize_multiplier."""
    ok = (mult == 0) | ((mult >= 1 << 30) & (mult <= INT32_MAX))
    if not np.all(ok):
        raise ValueError("multiplier must be 0 or in [2^30, 2^31) (use quantize_multiplier)")
    _require_range(shift, SHIFT_MIN, SHIFT_MAX, "requantize shift")


def requantize(acc, multiplier, shift, zero_point: int = 0, qmin: int | None = None,
               qmax: int | None = None, out_dtype=np.int8) -> np.ndarray:
    """Fixed-point rescale of int32 accumulators to a quantized output.

    acc: integer array [..., C] whose values fit int32 (checked); multiplier/shift: scalars or
    per-channel arrays [C] (broadcast along the last axis) from quantize_multiplier.
    Returns out_dtype [..., C]:

        y = clamp(floor((acc * M + 2^(n-1)) / 2^n) + zero_point, qmin, qmax),   n = 31 - shift

    i.e. ``round_half_up(acc * real) + zero_point`` with real = M * 2^(shift-31). |acc * M| < 2^62,
    so the int64 product and rounding never overflow. qmin/qmax default to the out_dtype limits.
    """
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu":
        raise TypeError(f"requantize acc must be an integer array, got dtype {acc.dtype}")
    _require_range(acc, INT32_MIN, INT32_MAX, "requantize accumulator")
    mult = _as_int64(multiplier, "multiplier")
    sh = _as_int64(shift, "shift")
    _check_multiplier(mult, sh)
    lo, hi = qrange(out_dtype, qmin, qmax)
    y = acc.astype(np.int64)                                  # a fresh copy: in-place from here
    y *= mult                                                 # |acc * M| < 2^62
    n = 31 - sh
    zp = int(zero_point)
    if zp and n.max(initial=0) <= 46 and abs(zp) <= 1 << 15:
        # ((y + 2^(n-1)) >> n) + zp == (y + 2^(n-1) + zp * 2^n) >> n, and |y + ...| < 2^62 + 2^61 here
        y += np.left_shift(np.int64(1), n - 1) + np.left_shift(np.int64(zp), n)
        y >>= n
    else:
        _rshift_inplace(y, n)
        if zp:
            y += zp
    return _clamp_cast(y, lo, hi, out_dtype)


# ---------------------------------------------------------------- residual add

def make_add_params(a_scale: float, b_scale: float, out_scale: float, a_zp: int = 0, b_zp: int = 0,
                    out_zp: int = 0, out_dtype=np.int8) -> dict:
    """Constants for ``add_int``: out = (a_scale*(a-a_zp) + b_scale*(b-b_zp)) / out_scale + out_zp.

    Both ratios r = scale/out_scale are put on ONE fixed-point grid 2^-n:
    ka = round_half_up(r_a * 2^n), kb = round_half_up(r_b * 2^n) (int32, <= 2^30),
    n = min(62, 30 - e) with max(r_a, r_b) in [2^(e-1), 2^e); bias = -(a_zp*ka + b_zp*kb) (int64).
    Requires max ratio < 2^14 (n >= 16). Multiplier error per output <= (|a|+|b|) * 2^-(n+1) steps.
    """
    ra, rb = a_scale / out_scale, b_scale / out_scale
    if not (ra > 0 and rb > 0 and math.isfinite(ra) and math.isfinite(rb)):
        raise QuantScaleError(f"add: scales must be positive and finite (a={a_scale} b={b_scale} "
                              f"out={out_scale}); {RECALIBRATE}")
    n = min(MAX_RSHIFT, 30 - math.frexp(max(ra, rb))[1])
    if n < 16:
        raise QuantScaleError(f"add: scale ratio {max(ra, rb):.3g} >= 2^14 (output scale far too fine); "
                              f"{RECALIBRATE}")
    ka, kb = round_half_up(math.ldexp(ra, n)), round_half_up(math.ldexp(rb, n))
    lo, hi = qrange(out_dtype)
    if not lo <= out_zp <= hi:
        raise ValueError(f"add: out_zp {out_zp} outside {np.dtype(out_dtype).name}")
    return {"ka": ka, "kb": kb, "bias": -(int(a_zp) * ka + int(b_zp) * kb), "shift": n,
            "out_zp": int(out_zp), "qmin": lo, "qmax": hi, "out_dtype": np.dtype(out_dtype).name}


def add_int(a, b, params: dict) -> np.ndarray:
    """Rescaling add of int8/int16 tensors a, b (broadcastable) -> params['out_dtype'] (int8/int16).

        acc = a*ka + b*kb + bias          (int64, |acc| < 2^49)
        out = clamp(rounding_rshift(acc, n) + out_zp, qmin, qmax)
    """
    a = _check_int(a, -(1 << 15), (1 << 15) - 1, "add input a (int16 max)")
    b = _check_int(b, -(1 << 15), (1 << 15) - 1, "add input b (int16 max)")
    acc = a.astype(np.int64)                                  # fresh copies: in-place from here
    acc *= int(params["ka"])
    bk = b.astype(np.int64)
    bk *= int(params["kb"])
    if acc.shape == np.broadcast_shapes(acc.shape, bk.shape):
        acc += bk
    else:
        acc = acc + bk
    acc += int(params["bias"])
    _rshift_inplace(acc, int(params["shift"]))
    acc += int(params["out_zp"])
    return _clamp_cast(acc, params["qmin"], params["qmax"], params["out_dtype"])


# ---------------------------------------------------------------- integer sqrt helpers

def bit_length(x) -> np.ndarray:
    """Number of significant bits of int64 x >= 0 (0 -> 0), elementwise. C: x ? 64 - clzll(x) : 0."""
    y = _as_int64(x, "bit_length x")
    _require_range(y, 0, np.iinfo(np.int64).max, "bit_length input")
    n = np.zeros_like(y)
    for s in (32, 16, 8, 4, 2, 1):
        big = y >= (np.int64(1) << s)
        n = n + np.where(big, s, 0)
        y = np.where(big, y >> s, y)
    return n + (y > 0)


def isqrt64(x) -> np.ndarray:
    """floor(sqrt(x)) for int64 0 <= x < 2^62, elementwise (the result is unique, so any exact method
    matches). C uses the binary digit-by-digit method (exactly 32 iterations, no division):
        uint64_t r = 0, bit = 1ULL << 62;
        while (bit) { if (x >= r + bit) { x -= r + bit; r = (r >> 1) + bit; } else r >>= 1; bit >>= 2; }
    """
    x = _int_input(x, 0, (1 << 62) - 1, "isqrt64 input")
    # Same result as the C loop (floor(sqrt(x)) is unique), computed faster: a float64 estimate
    # (off by at most one here) corrected exactly in integers; (r + 1)^2 <= (2^31 + 1)^2 < 2^63.
    r = np.floor(np.sqrt(x.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        r -= r * r > x
        r += (r + 1) * (r + 1) <= x
    return r


# ---------------------------------------------------------------- LayerNorm

def make_layernorm_params(in_scale: float, gamma, beta, out_scale: float, eps: float = 1e-6,
                          out_zp: int = 0, in_dtype=np.int8, out_dtype=np.int8) -> dict:
    """Constants for ``layernorm_int`` over the last axis, D = len(gamma) <= 1024.

    The input zero point cancels in x - mean, so it is not needed. With c = D*x - sum(x),
    V = sum(c^2) = D^3 * var (exact integers), the normalised value is
    u = c / sqrt(V + D^3 * eps / in_scale^2) = y / sqrt(D), |u| < 1. Constants:
      frac_bits F (even, <= 30): largest with V_max * 2^F <= 2^61, V_max = D^3 * (qmax-qmin)^2 / 4
      eps_fixed E = clamp(round_half_up(eps / in_scale^2 * D^3 * 2^F), 1, 2^61)   (int64)
      g_d = gamma_d * sqrt(D) / out_scale,  b_d = beta_d / out_scale
      out_shift n = min(61, 59 - eg, 59 - eb), max|g| in [2^(eg-1), 2^eg), same for b; n >= 40
      gain G_d = round_half_up(g_d * 2^(n-30)) (|G| <= 2^29, int32), bias B_d = round_half_up(b_d * 2^n)
      (|B| <= 2^59, int64)
    """
    gamma = np.asarray(gamma, dtype=np.float64).reshape(-1)
    beta = np.asarray(beta, dtype=np.float64).reshape(-1)
    d = gamma.size
    if beta.size != d:
        raise ValueError(f"layernorm: len(beta) {beta.size} != len(gamma) {d}")
    if not 1 <= d <= LN_MAX_DIM:
        raise UserInputError(f"layernorm: integer LayerNorm supports 1 <= D <= {LN_MAX_DIM} channels (got {d}); "
                             f"use an embed_dim <= {LN_MAX_DIM} or keep the model float (no quant pass)")
    if not (eps >= 0 and in_scale > 0 and out_scale > 0):
        raise QuantScaleError(f"layernorm: scales must be > 0 and eps >= 0 (in {in_scale}, out {out_scale}, "
                              f"eps {eps}); {RECALIBRATE}")
    if np.dtype(in_dtype) not in (np.dtype(np.int8), np.dtype(np.int16)):
        raise ValueError("layernorm: in_dtype must be int8 or int16")
    lo, hi = qrange(in_dtype)
    vmax = -(-(d ** 3) * (hi - lo) ** 2 // 4)            # ceil(D^3 r^2 / 4), exact int
    if vmax > 1 << 61:
        raise OverflowError("layernorm: variance bound exceeds 2^61")
    frac_bits = 0
    while frac_bits + 2 <= 30 and vmax << (frac_bits + 2) <= 1 << 61:
        frac_bits += 2
    e_real = eps / in_scale ** 2 * d ** 3 * 2.0 ** frac_bits
    if e_real >= 2.0 ** 61:
        raise QuantScaleError(f"layernorm: eps / in_scale^2 = {eps / in_scale ** 2:.3g} is too large (input scale "
                              f"far too fine); {RECALIBRATE}")
    g = gamma * math.sqrt(d) / out_scale
    b = beta / out_scale
    n = MAX_RSHIFT - 1
    for v in (np.abs(g).max(), np.abs(b).max()):
        if v > 0:
            n = min(n, 59 - math.frexp(float(v))[1])
    if n < 40:
        raise QuantScaleError("layernorm: |gamma|*sqrt(D)/out_scale or |beta|/out_scale >= 2^19 (output scale far "
                              f"too fine for the LayerNorm weights); {RECALIBRATE}")
    out_lo, out_hi = qrange(out_dtype)
    return {"dim": d, "frac_bits": frac_bits, "eps_fixed": max(1, round_half_up(e_real)),
            "gain": round_half_up_array(np.ldexp(g, n - 30)).astype(np.int32),  # ldexp: exact, as math.ldexp
            "bias": round_half_up_array(np.ldexp(b, n)),
            "out_shift": n, "out_zp": int(out_zp), "qmin": out_lo, "qmax": out_hi,
            "in_dtype": np.dtype(in_dtype).name, "out_dtype": np.dtype(out_dtype).name}


def layernorm_int(x, params: dict) -> np.ndarray:
    """Integer LayerNorm of x int8/int16 [..., D] -> params['out_dtype'] [..., D] (per row).

    Per row (bounds for D <= 1024, |x| <= 2^15):
      1. S  = sum(x)                                  |S| <= 2^25
      2. c  = D*x - S                                 |c| <= 2^26 (exact: c = D*(x - mean))
      3. V  = sum(c*c)                                V <= 2^60 (int64)
      4. W  = (V << F) + E                            1 <= W < 2^62
      5. s  = min((62 - bit_length(W)) >> 1, 30 - F/2);  q = isqrt64(W << 2s)   (q < 2^31)
      6. R  = (2^61 + (q >> 1)) / q   (uint64 division, one per row)  R <= 2^31 if V > 0
         (if V == 0 the cap on s may leave q < 2^30 and R < 2^61, but then every c == 0)
      7. U  = rounding_rshift(c * R, 31 - F/2 - s)    U ~ u * 2^30, |U| <= 2^30 + 1
      8. out = clamp(rounding_rshift(U * G + B, n) + out_zp, qmin, qmax)   |U*G + B| < 2^61
    Step 7's shift is >= 1 whenever V > 0 (then W >= 2^(F+1)); when V == 0 every c == 0.
    """
    d, f = params["dim"], params["frac_bits"]
    if np.shape(x)[-1] != d:
        raise ValueError(f"layernorm: last axis {np.shape(x)[-1]} != D = {d}")
    xi = _check_int(x, *qrange(params["in_dtype"]), what=f"layernorm input ({params['in_dtype']})")
    c = xi.astype(np.int64)                                       # a fresh copy: in-place from here
    s1 = c.sum(axis=-1, keepdims=True)
    c *= d
    c -= s1                                                       # steps 1-2
    w = (np.einsum("...i,...i->...", c, c)[..., None] << f) + params["eps_fixed"]   # steps 3-4
    s = np.minimum((62 - bit_length(w)) >> 1, 30 - f // 2)
    q = isqrt64(w << (2 * s))
    r = ((np.int64(1) << 61) + (q >> 1)) // q
    c *= r                                                        # step 7: |c R| <= 2^57
    u = _rshift_inplace(c, 31 - f // 2 - s)
    u *= params["gain"].astype(np.int64)
    u += params["bias"]                                           # step 8: |U G + B| < 2^61
    _rshift_inplace(u, int(params["out_shift"]))
    u += int(params["out_zp"])
    return _clamp_cast(u, params["qmin"], params["qmax"], params["out_dtype"])
