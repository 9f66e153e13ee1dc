"""Integer primitives (edgevit.lower.intmath / intlut) vs exact rational arithmetic and float math."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.errors import UserInputError
from edgevit.lower.intlut import (SCORE_STEP, gelu_float, gelu_int, make_gelu_lut, make_score_lut,
                                  make_softmax_lut, score_index_params, softmax_from_scores, softmax_int)
from edgevit.lower.intmath import (QuantScaleError, add_int, bit_length, isqrt64, layernorm_int, make_add_params,
                                   make_layernorm_params, quantize_multiplier, quantize_multipliers,
                                   requantize, round_half_up, rounding_rshift)

FAST = settings(max_examples=150, deadline=None)
RNG = np.random.default_rng(1234)


def rhu(fr: Fraction) -> int:
    """The documented rounding rule on an exact rational: floor(x + 1/2)."""
    return math.floor(fr + Fraction(1, 2))


def float_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------- rounding and multipliers

def test_round_half_up_exact():
    assert [round_half_up(v) for v in (2.5, -2.5, 0.49999999999999994, -0.5, 1e300 * 0 + 3.0)] == [3, -2, 0, 0, 3]


@FAST
@given(st.floats(min_value=2.0 ** -32, max_value=2.0 ** 30 - 1))
def test_quantize_multiplier_accuracy(real):
    m, s = quantize_multiplier(real)
    assert 1 << 30 <= m < 1 << 31 and -31 <= s <= 30
    assert abs(Fraction(m) * Fraction(2) ** (s - 31) - Fraction(real)) <= Fraction(real) * Fraction(1, 2 ** 31)


def test_quantize_multiplier_edges():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(math.nextafter(2.0 ** -32, 0)) == (1 << 30, -31)  # rounds up to 2^-32
    assert quantize_multiplier(2.0 ** -32 * (1 - 2.0 ** -31)) == (0, 0)     # flushed: exact, see below
    acc = np.array([-(1 << 31), (1 << 31) - 1])
    assert np.all(requantize(acc, 0, 0) == 0)                               # |acc * real| < 1/2 -> 0
    for bad in (2.0 ** 30 * (1 - 2.0 ** -40), 2.0 ** 30, -1.0, float("nan"), float("inf")):  # first: rounds up
        with pytest.raises(QuantScaleError, match="recalibrate"):
            quantize_multiplier(bad)
    ms, ss = quantize_multipliers([0.5, 3.0, 0.0])
    assert ms.dtype == np.int32 and list(ss) == [0, 2, 0]


@FAST
@given(st.integers(-(1 << 62), 1 << 62), st.integers(0, 62))
def test_rounding_rshift_exact(x, n):
    assert int(rounding_rshift(np.int64(x), n)) == rhu(Fraction(x, 2 ** n))


def test_rounding_rshift_ties_and_bounds():
    assert rounding_rshift(np.array([5, -5, 3, -3, 1, -1]), 1).tolist() == [3, -2, 2, -1, 1, 0]
    assert rounding_rshift(np.array([6, 6]), np.array([0, 2])).tolist() == [6, 2]
    with pytest.raises(OverflowError):
        rounding_rshift(np.int64(1 << 62) + 1, 3)
    with pytest.raises(OverflowError):
        rounding_rshift(np.int64(1), 63)


multipliers = st.one_of(st.just(0), st.integers(1 << 30, (1 << 31) - 1))
accs = st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.sampled_from([-(1 << 31), (1 << 31) - 1, 0, 1, -1]))


@FAST
@given(accs, multipliers, st.integers(-31, 30), st.integers(-128, 127),
       st.sampled_from([np.int8, np.int16, np.int32, np.uint8]))
def test_requantize_equals_rational(acc, m, s, zp, dt):
    lo, hi = np.iinfo(dt).min, np.iinfo(dt).max
    zp = min(max(zp, lo), hi)
    got = requantize(np.array([acc], dtype=np.int64), m, s, zero_point=zp, out_dtype=dt)
    want = min(max(rhu(Fraction(acc * m, 2 ** (31 - s))) + zp, lo), hi)
    assert got.dtype == dt and int(got[0]) == want


@FAST
@given(st.integers(-(1 << 20), 1 << 20))
def test_requantize_ties(k):
    """Exact .5 ties: real 1/2 (M = 2^30, shift 0) on odd acc = 2k+1 gives k + 1/2 -> k + 1, any sign."""
    acc = 2 * k + 1
    got = int(requantize(np.array([acc]), 1 << 30, 0, out_dtype=np.int32)[0])
    assert got == k + 1                                                     # (2k+1)/2 -> k+1 (half up)


def test_requantize_per_channel_broadcast():
    acc = RNG.integers(-(1 << 20), 1 << 20, (3, 4, 6))
    m, s = quantize_multipliers(RNG.uniform(1e-4, 2e-2, 6))
    got = requantize(acc, m, s, zero_point=-5, qmin=-5)                    # fused ReLU via qmin = zp
    for c in range(6):
        np.testing.assert_array_equal(got[..., c], requantize(acc[..., c], int(m[c]), int(s[c]), -5, qmin=-5))
    assert got.min() >= -5


def test_requantize_rejects_bad_inputs():
    with pytest.raises(OverflowError):
        requantize(np.array([1 << 31]), 1 << 30, 0)
    with pytest.raises(ValueError):
        requantize(np.array([1]), 12345, 0)
    with pytest.raises(TypeError):
        requantize(np.array([1.0]), 1 << 30, 0)


def test_isqrt_and_bit_length():
    xs = [0, 1, 2, 3, 4, 15, 16, 17, (1 << 62) - 1, (1 << 60), (1 << 61) + 12345, 10 ** 18]
    xs += [int(v) for v in RNG.integers(0, 1 << 62, 200)]
    arr = np.array(xs, dtype=np.int64)
    assert isqrt64(arr).tolist() == [math.isqrt(v) for v in xs]
    assert bit_length(arr).tolist() == [v.bit_length() for v in xs]


# ---------------------------------------------------------------- softmax

@pytest.mark.parametrize("scale", [0.01, 0.03, 0.1, 0.25])
@pytest.mark.parametrize("n", [1, 7, 197])
def test_softmax_int8_vs_float(scale, n):
    """|p_int - p_float| <= 0.6/255 per probability (0.5 from output rounding, rest LUT/reciprocal)."""
    x = RNG.integers(-128, 128, (40, n)).astype(np.int8)
    x[0] = 5                                                               # uniform row
    x[1, :] = -128
    x[1, 0] = 127                                                          # one-hot row
    lut = make_softmax_lut(scale)
    q = softmax_int(x, lut)
    assert q.dtype == np.uint8 and q.shape == x.shape
    p, pf = q / 255.0, float_softmax(x.astype(np.float64) * scale)
    assert np.abs(p - pf).max() <= 0.6 / 255
    assert np.abs(p.sum(-1) - 1).max() <= n * 0.6 / 255
    np.testing.assert_array_equal(softmax_int(x, lut, out_dtype=np.int8), q.astype(np.int16) - 128)


def test_softmax_tables_and_limits():
    lut = make_softmax_lut(0.05, max_len=256)
    t = lut["table"]
    assert t[0] == 1 << lut["frac_bits"] == 1 << 22 and np.all(np.diff(t) <= 0)
    with pytest.raises(ValueError):
        softmax_int(np.zeros((2, 257), np.int8), lut)
    s = make_score_lut()
    assert s["table"][-1] == 0 and s["table"][0] == 1 << 20 and s["table"].size == 1024


@pytest.mark.parametrize("score_scale", [2e-4, 1e-3, 5e-3, 3e-2])
def test_softmax_from_scores_vs_float(score_scale):
    """Bound: 0.5/255 (output) + step/4 (index rounding) + 0.1/255 (tables) < 1/128."""
    lut = make_score_lut()
    m, s = score_index_params(score_scale, lut)
    n = 65
    scores = RNG.integers(-int(12 / score_scale), int(12 / score_scale), (30, n))
    scores[0] = 123                                                        # uniform row
    scores[1] = RNG.integers(-(1 << 31), (1 << 31) - 1, n)                 # extremes: no overflow
    scores[1, :2] = [-(1 << 31), (1 << 31) - 1]
    q = softmax_from_scores(scores, m, s, lut)
    p, pf = q / 255.0, float_softmax(scores.astype(np.float64) * score_scale)
    bound = 0.6 / 255 + SCORE_STEP / 4
    assert bound < 1 / 128 and np.abs(p - pf).max() <= bound
    # streaming: each query row alone gives the same bytes
    for r in (0, 1, 7):
        np.testing.assert_array_equal(softmax_from_scores(scores[r], m, s, lut), q[r])


def test_score_index_params_rejects_tiny_scale():
    from edgevit.lower.intmath import QuantScaleError

    with pytest.raises(QuantScaleError, match="score scale 1e-10 too small.*recalibrate") as e:
        score_index_params(1e-10, make_score_lut())
    assert e.value.exit_code == 2


# ---------------------------------------------------------------- GELU

@pytest.mark.parametrize("in_scale,in_zp,out_scale,out_zp", [(0.05, 0, 0.04, -100), (0.1, 10, 0.02, -120),
                                                              (0.02, -3, 0.01, 0)])
def test_gelu_lut(in_scale, in_zp, out_scale, out_zp):
    lut = make_gelu_lut(in_scale, in_zp, out_scale, out_zp)
    assert lut.dtype == np.int8 and lut.shape == (256,)
    x = np.arange(-128, 128).astype(np.int8).reshape(16, 16)
    y = gelu_int(x, lut)
    assert y.shape == x.shape and y.dtype == np.int8
    ref = np.vectorize(gelu_float)((x.astype(np.float64) - in_zp) * in_scale) / out_scale + out_zp
    err = np.abs(y - np.clip(ref, -128, 127))
    assert err.max() <= 0.5 + 1e-9                                         # half an output step
    # continuous input: plus the input quantisation effect, max|gelu'| = 1.129 < 1.13
    xf = RNG.uniform(-128 - in_zp, 127 - in_zp, 1000) * in_scale
    xq = np.clip(np.floor(xf / in_scale + 0.5) + in_zp, -128, 127).astype(np.int8)
    yf = np.vectorize(gelu_float)(xf) / out_scale + out_zp
    assert np.abs(gelu_int(xq, lut) - np.clip(yf, -128, 127)).max() <= 0.5 + 1.13 * in_scale / 2 / out_scale


# ---------------------------------------------------------------- LayerNorm

def layernorm_bigint(row, p) -> list[int]:
    """The documented algorithm in Python ints, asserting every int64 bound the spec states."""
    d, f, h = len(row), p["frac_bits"], p["frac_bits"] // 2
    s1 = sum(row)
    c = [d * x - s1 for x in row]
    v2 = sum(v * v for v in c)
    w = (v2 << f) + p["eps_fixed"]
    assert 1 <= w < 1 << 62 and all(abs(v) <= 1 << 26 for v in c)
    s = min((62 - w.bit_length()) >> 1, 30 - h)
    q = math.isqrt(w << (2 * s))
    r = ((1 << 61) + (q >> 1)) // q
    sh, n = 31 - h - s, p["out_shift"]
    assert q < 1 << 31 and sh >= 1 and (v2 == 0 or (q >= 1 << 30 and r <= 1 << 31))  # V == 0: all c == 0
    out = []
    for v, g, b in zip(c, p["gain"].tolist(), p["bias"].tolist()):
        u = (v * r + (1 << (sh - 1))) >> sh
        acc = u * g + b
        assert abs(v * r) < 1 << 62 and abs(u) <= (1 << 30) + 1 and abs(acc) < 1 << 61
        out.append(min(max(((acc + (1 << (n - 1))) >> n) + p["out_zp"], p["qmin"]), p["qmax"]))
    return out


def float_layernorm(x, scale, gamma, beta, eps):
    xf = x.astype(np.float64) * scale
    mu, var = xf.mean(-1, keepdims=True), xf.var(-1, keepdims=True)
    return (xf - mu) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("dt,scale,d", [(np.int8, 0.05, 8), (np.int8, 0.1, 64), (np.int8, 0.02, 192),
                                        (np.int16, 1e-3, 192), (np.int16, 3e-4, 1024), (np.int8, 0.05, 1)])
def test_layernorm_vs_float(dt, scale, d):
    """Within 0.5 + 0.02 output steps of float LayerNorm (before clamping); constant rows exact."""
    gamma, beta, out_scale, eps = RNG.normal(1, 0.3, d), RNG.normal(0, 0.5, d), 0.04, 1e-5
    p = make_layernorm_params(scale, gamma, beta, out_scale, eps, out_zp=3, in_dtype=dt)
    info = np.iinfo(dt)
    x = RNG.integers(info.min, info.max + 1, (24, d)).astype(dt)
    x[1] = info.max                                                        # constant rows: variance 0
    x[2] = 0
    x[3] = (RNG.normal(0, 3, d)).astype(dt)                                # tiny spread
    x[4, ::2], x[4, 1::2] = info.min, info.max                             # extremes
    x[5] = (RNG.normal(0, 1, d) * np.logspace(0, math.log10(info.max / 4), d)).astype(dt)  # wide range
    y = layernorm_int(x, p)
    assert y.dtype == np.int8 and y.shape == x.shape
    ref = np.clip(float_layernorm(x, scale, gamma, beta, eps) / out_scale + 3, -128, 127)
    assert np.abs(y - ref).max() <= 0.52
    np.testing.assert_array_equal(y[1], np.clip(np.floor(beta / out_scale + 0.5) + 3, -128, 127))


def test_layernorm_no_overflow_int16_d1024():
    d = 1024
    gamma, beta = RNG.normal(0, 2, d), RNG.normal(0, 3, d)
    p = make_layernorm_params(1e-4, gamma, beta, 0.05, 1e-6, in_dtype=np.int16)
    lo, hi = -(1 << 15), (1 << 15) - 1
    rows = np.stack([np.full(d, lo), np.full(d, hi), np.r_[[hi], np.full(d - 1, lo)],
                     np.r_[[lo], np.full(d - 1, hi)], np.tile([lo, hi], d // 2),
                     np.r_[np.full(d // 2, lo), np.full(d // 2, hi)],
                     RNG.integers(lo, hi + 1, d), np.r_[[1], np.zeros(d - 1, int)]]).astype(np.int16)
    y = layernorm_int(rows, p)
    for r in range(rows.shape[0]):
        assert y[r].tolist() == layernorm_bigint([int(v) for v in rows[r]], p)
    ref = np.clip(float_layernorm(rows, 1e-4, gamma, beta, 1e-6) / 0.05, -128, 127)
    assert np.abs(y - ref).max() <= 0.52


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([np.int8, np.int16]), st.sampled_from([1, 2, 5, 16, 96, 384]), st.floats(-5, 0),
       st.floats(-8, -3), st.floats(-2.5, 0), st.floats(0, 4.5), st.integers(0, 2 ** 32 - 1))
def test_layernorm_random_configs(dt, d, log_scale, log_eps, log_out, log_spread, seed):
    """Bit-equal to the Python-int algorithm (no int64 overflow) and within 0.52 steps of float."""
    rng = np.random.default_rng(seed)
    scale, eps, out_scale = 10.0 ** log_scale, 10.0 ** log_eps, 10.0 ** log_out
    gamma, beta = rng.normal(0, 1.5, d), rng.normal(0, 1, d)
    try:
        p = make_layernorm_params(scale, gamma, beta, out_scale, eps, out_zp=-7, in_dtype=dt)
    except QuantScaleError:
        return                                                             # documented limits
    info = np.iinfo(dt)
    x = np.clip(rng.normal(rng.uniform(-0.5, 0.5) * info.max, min(10.0 ** log_spread, info.max), (4, d)),
                info.min, info.max).astype(dt)
    y = layernorm_int(x, p)
    assert [y[r].tolist() for r in range(4)] == [layernorm_bigint([int(v) for v in row], p) for row in x]
    ref = np.clip(float_layernorm(x, scale, gamma, beta, eps) / out_scale - 7, -128, 127)
    assert np.abs(y - ref).max() <= 0.52


def test_layernorm_bad_params():
    with pytest.raises(UserInputError, match="embed_dim <= 1024"):
        make_layernorm_params(0.1, np.ones(1025), np.zeros(1025), 0.1)
    with pytest.raises(QuantScaleError, match="output scale far too fine"):
        make_layernorm_params(0.1, np.ones(4), np.zeros(4), 1e-7)
    with pytest.raises(ValueError):
        layernorm_int(np.zeros((2, 5), np.int8), make_layernorm_params(0.1, np.ones(4), np.zeros(4), 0.1))


# ---------------------------------------------------------------- residual add

@FAST
@given(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.floats(0.05, 1.0), st.integers(-20, 20),
       st.integers(-20, 20), st.integers(-20, 20), st.sampled_from([np.int8, np.int16]),
       st.sampled_from([np.int8, np.int16]))
def test_add_vs_float(sa, sb, so, za, zb, zo, in_dt, out_dt):
    """Within 0.5 + (|a|+|b|) 2^-(n+1) output steps of the real sum (so <= 1 step)."""
    so = max(sa, sb) * so * 4 / (64 if out_dt == np.int16 else 1)           # max ratio in [1/4, 5], x64 for int16
    p = make_add_params(sa, sb, so, za, zb, zo, out_dtype=out_dt)
    info = np.iinfo(in_dt)
    a = np.r_[RNG.integers(info.min, info.max + 1, 64), info.min, info.max, info.max].astype(in_dt)
    b = np.r_[RNG.integers(info.min, info.max + 1, 64), info.min, info.max, info.min].astype(in_dt)
    y = add_int(a, b, p)
    oi = np.iinfo(out_dt)
    real = (sa * (a.astype(np.float64) - za) + sb * (b.astype(np.float64) - zb)) / so + zo
    err = np.abs(y - np.clip(real, oi.min, oi.max))
    assert y.dtype == out_dt and err.max() <= 0.5 + 2.0 ** (16 - p["shift"]) and err.max() <= 1
    exact = [min(max(rhu(Fraction(int(x) * p["ka"] + int(z) * p["kb"] + p["bias"], 2 ** p["shift"])) + zo,
                     oi.min), oi.max) for x, z in zip(a, b)]
    assert y.tolist() == exact


def test_add_broadcast_and_limits():
    p = make_add_params(0.02, 0.05, 0.03)
    a = RNG.integers(-128, 128, (2, 5, 8)).astype(np.int8)
    b = RNG.integers(-128, 128, (8,)).astype(np.int8)
    assert add_int(a, b, p).shape == (2, 5, 8)
    with pytest.raises(QuantScaleError, match="scale ratio .* recalibrate"):
        make_add_params(1.0, 1.0, 1e-5)
