"""Lookup-table operators of edgevit's int8 semantics: softmax (int8 and attention-score inputs), GELU.

Spec: docs/integer-semantics.md. Tables are built at compile time with float math and rounded with
``round_half_up``; they are emitted into C verbatim, so the run time is integer-only and bit-exact.

Softmax output format (both variants): uint8 q in [0, 255] meaning p = q / 255 (zero point 0),
or, with ``out_dtype=np.int8``, q - 128 (scale 1/255, zero point -128). Everything is computed
independently per row (last axis), so kernels can stream one query row at a time.
"""

from __future__ import annotations

import math

import numpy as np

from edgevit.errors import UserInputError
from edgevit.lower.intmath import (INT32_MAX, INT32_MIN, RECALIBRATE, QuantScaleError, _check_int, _int_input,
                                   _rshift_inplace, qrange, quantize_multiplier, round_half_up, rounding_rshift)

SOFTMAX_OUT_SCALE = 1.0 / 255.0
SOFTMAX_RECIP_BITS = 40        # K: fixed-point bits of the per-row reciprocal 255 * 2^K / sum
DEFAULT_MAX_LEN = 1024         # longest softmax row (tokens) a table is built for
SCORE_STEP = 1.0 / 64.0        # real step of one score-LUT index
SCORE_TABLE_SIZE = 1024        # score-LUT entries; the last one is 0 ("beyond the table")


def exp_frac_bits(max_len: int) -> int:
    """Fraction bits F of the exp table so that a row sum of max_len entries <= 2^30 (int32 safe).

    F = 30 - ceil(log2(max_len)); every entry is <= 2^F = table[0].
    """
    if not 1 <= max_len <= 1 << 22:
        raise UserInputError(f"softmax over {max_len} tokens: the integer softmax handles 1 to 2^22 tokens; "
                             "use a larger patch size or a smaller image")
    return 30 - (max_len - 1).bit_length()


def _exp_table(step: float, size: int, frac_bits: int) -> np.ndarray:
    """int32 [size]: table[i] = round_half_up(2^frac_bits * exp(-i * step))."""
    return np.array([round_half_up(math.ldexp(math.exp(-i * step), frac_bits)) for i in range(size)],
                    dtype=np.int32)


# ---------------------------------------------------------------- int8-input softmax

def make_softmax_lut(input_scale: float, max_len: int = DEFAULT_MAX_LEN) -> dict:
    """Constants for ``softmax_int`` on int8 inputs of scale ``input_scale`` (zero point irrelevant).

    Returns {'table': int32 [256] (entry d = round_half_up(2^F exp(-d * input_scale)), table[0] = 2^F),
    'frac_bits': F, 'step': input_scale, 'max_len', 'recip_bits': 40, 'out_scale': 1/255}.
    """
    if not input_scale > 0:
        raise QuantScaleError(f"softmax input scale {input_scale!r} must be > 0; {RECALIBRATE}")
    f = exp_frac_bits(max_len)
    return {"table": _exp_table(input_scale, 256, f), "frac_bits": f, "step": float(input_scale),
            "max_len": int(max_len), "recip_bits": SOFTMAX_RECIP_BITS, "out_scale": SOFTMAX_OUT_SCALE}


def _normalise(e: np.ndarray, lut: dict, out_dtype) -> np.ndarray:
    """Exp values e int64 [..., N] (each <= 2^F, row sum <= 2^30; consumed: modified in place)
    -> probabilities [..., N].

        S = sum(e)                                     (int32 range, S >= table[0] > 0)
        R = ((255 << K) + (S >> 1)) / S                (one int64 / uint32 division per row)
        q = min(rounding_rshift(e * R, K), 255)        (e * R < 2^49)
    """
    if not 1 <= e.shape[-1] <= lut["max_len"]:
        raise ValueError(f"softmax row length {e.shape[-1]} not in [1, max_len {lut['max_len']}] of the table")
    k = lut["recip_bits"]
    s = e.sum(axis=-1, keepdims=True)
    r = ((np.int64(255) << k) + (s >> 1)) // s
    q = e
    q *= r                                                         # e * R < 2^49
    np.minimum(_rshift_inplace(q, k), 255, out=q)
    if np.dtype(out_dtype) == np.dtype(np.uint8):
        return q.astype(np.uint8)
    if np.dtype(out_dtype) == np.dtype(np.int8):
        return (q - 128).astype(np.int8)
    raise ValueError(f"softmax out_dtype must be uint8 or int8, got {np.dtype(out_dtype).name}")


def softmax_int(x, lut: dict, out_dtype=np.uint8) -> np.ndarray:
    """Softmax over the last axis of int8 x [..., N] -> uint8 (or int8) [..., N], p = q/255.

    Per row: m = max(x); d = m - x in [0, 255]; e = table[d]; then ``_normalise``.
    """
    xi = _int_input(x, -128, 127, "softmax input (int8)")
    d = xi.max(axis=-1, keepdims=True) - xi
    return _normalise(np.take(lut["table"].astype(np.int64), d), lut, out_dtype)


# ---------------------------------------------------------------- attention-score softmax

def make_score_lut(step: float = SCORE_STEP, table_size: int = SCORE_TABLE_SIZE,
                   max_len: int = DEFAULT_MAX_LEN) -> dict:
    """Exp table for ``softmax_from_scores``, shared by every attention layer.

    Index i stands for a real logit difference i * step: table[i] = round_half_up(2^F exp(-i step))
    for i < table_size - 1 and table[table_size - 1] = 0 (differences clamped there count as 0).
    Defaults: step 1/64, 1024 entries (covers differences up to ~16; exp(-16) * 2^20 < 0.5).
    """
    if not (step > 0 and 2 <= table_size <= 1 << 16):
        raise ValueError("score LUT: need step > 0 and 2 <= table_size <= 65536")
    f = exp_frac_bits(max_len)
    table = _exp_table(step, table_size, f)
    table[-1] = 0
    return {"table": table, "frac_bits": f, "step": float(step), "table_size": int(table_size),
            "max_len": int(max_len), "recip_bits": SOFTMAX_RECIP_BITS, "out_scale": SOFTMAX_OUT_SCALE}


def score_index_params(score_scale: float, lut: dict) -> tuple[int, int]:
    """(multiplier, shift) mapping an int32 score difference to a LUT index: real = score_scale / step.

    score_scale is the real value of one unit of the q.k accumulator, 1/sqrt(head_dim) folded in:
    score_scale = q_scale * k_scale / sqrt(head_dim). Checks that a difference of INT32_MAX reaches
    the last table index, so clamping differences at INT32_MAX is exact.
    """
    mult, shift = quantize_multiplier(score_scale / lut["step"])
    top = rounding_rshift(np.int64(INT32_MAX) * mult, 31 - shift)
    if top < lut["table_size"] - 1:
        raise QuantScaleError(f"attention score scale {score_scale:.3g} too small: INT32_MAX differences would not "
                              f"reach the end of the score LUT; {RECALIBRATE}")
    return mult, shift


def softmax_from_scores(scores, multiplier: int, shift: int, lut: dict, out_dtype=np.uint8) -> np.ndarray:
    """Softmax over the last axis of int32 attention scores [..., N] -> uint8 (or int8) [..., N].

    Per query row:
      m   = max_j s_j
      d_j = min(m - s_j, INT32_MAX)                       (int64 subtraction, d_j >= 0)
      i_j = min(rounding_rshift(d_j * M, 31 - shift), T - 1)
      e_j = table[i_j];  then ``_normalise`` (q = round(255 e_j / sum e)).
    """
    s = _check_int(scores, INT32_MIN, INT32_MAX, "attention scores (int32)")
    d = s.astype(np.int64)                                         # a fresh copy: in-place from here
    np.subtract(d.max(axis=-1, keepdims=True), d, out=d)
    np.minimum(d, INT32_MAX, out=d)
    d *= int(multiplier)                                           # d * M < 2^62
    idx = np.minimum(_rshift_inplace(d, 31 - int(shift)), lut["table_size"] - 1, out=d)
    return _normalise(np.take(lut["table"].astype(np.int64), idx), lut, out_dtype)


# ---------------------------------------------------------------- elementwise int8 LUTs (GELU)

def gelu_float(v: float) -> float:
    """Exact (erf) GELU of a Python float: v * (1 + erf(v / sqrt 2)) / 2."""
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def make_int8_lut(fn, in_scale: float, in_zp: int, out_scale: float, out_zp: int,
                  out_dtype=np.int8) -> np.ndarray:
    """Table [256] for y = fn(x) on int8 x: entry x + 128 = clamp(round_half_up(fn(in_scale (x - in_zp))
    / out_scale) + out_zp). fn is any float -> float function evaluated at build time."""
    if not (in_scale > 0 and out_scale > 0):
        raise QuantScaleError(f"activation LUT scales must be > 0 (got in {in_scale!r}, out {out_scale!r}); "
                              f"{RECALIBRATE}")
    lo, hi = qrange(out_dtype)
    vals = [round_half_up(fn(in_scale * (x - in_zp)) / out_scale) + out_zp for x in range(-128, 128)]
    return np.clip(np.array(vals, dtype=np.int64), lo, hi).astype(out_dtype)


def make_gelu_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 [256] GELU table indexed by x + 128 (exact erf GELU, quantised with round_half_up)."""
    return make_int8_lut(gelu_float, in_scale, in_zp, out_scale, out_zp)


def lut_int8(x, lut: np.ndarray) -> np.ndarray:
    """Elementwise table lookup y = lut[x + 128] for int8 x (any shape) -> lut.dtype."""
    xi = _check_int(x, -128, 127, "LUT input (int8)")
    return np.take(lut, xi.astype(np.int16) + 128)


def gelu_int(x, lut: np.ndarray) -> np.ndarray:
    """GELU of int8 x (any shape) with a table from make_gelu_lut -> int8, same shape."""
    return lut_int8(x, lut)
