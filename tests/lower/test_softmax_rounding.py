"""Softmax rows whose normalisation lands exactly on a rounding tie (docs/integer-semantics.md, "Softmax"):

    R = ((255 << K) + (S >> 1)) / S        the per-row reciprocal, rounded half up (K = 40)
    q = rounding_rshift(e * R, K)          each probability, rounded half up

Random rows (the other softmax tests) essentially never hit a tie, so the tie-breaking of either
rounding can change unnoticed. Here:

- a row of n equal logits: e = 2^F for all, R = 255 * 2^(K-F) / n exactly, and for n = 6, 30, 102 the
  product e * R is exactly (k + 1/2) * 2^K: q must be 43, 9, 3 (half up; half to even gives 42, 8, 2;
  truncation too);
- the row [0, 0, 0, -1, -1] with input scale ln(4/3): e = [2^20] * 3 + [3 * 2^18] * 2, S = 6 * 3 * 2^18, the
  exact value 255 e / S of the small entries is the tie 42.5, and 255 * 2^K / S has fraction 2/3, so only
  the rounded reciprocal gives 43 (a truncated one, (255 << K) / S, gives 42, as does a truncated
  product).

Both the int8-input softmax and the attention-score softmax share this normalisation; both are pinned.
The generated C attention kernel is checked on the same rows in
tests/backend/kernels/test_attention_rounding_ties.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgevit.lower.intlut import (SOFTMAX_RECIP_BITS, make_score_lut, make_softmax_lut, softmax_from_scores,
                                  softmax_int)
from edgevit.lower.intmath import quantize_multiplier

K = SOFTMAX_RECIP_BITS
STEP = math.log(4 / 3)  # table[1] = round(2^20 * 3/4) = 3 * 2^18


@pytest.mark.parametrize("n, q", [(6, 43), (30, 9), (102, 3)])
def test_equal_logits_land_on_a_tie_and_round_half_up(n, q) -> None:
    lut = make_softmax_lut(0.05)
    e, s = 1 << lut["frac_bits"], n << lut["frac_bits"]
    r = ((255 << K) + (s >> 1)) // s
    assert (e * r) % (1 << K) == 1 << (K - 1)  # an exact tie: the case is what it claims to be
    np.testing.assert_array_equal(softmax_int(np.full((2, n), 7, np.int8), lut), np.full((2, n), q, np.uint8))
    np.testing.assert_array_equal(softmax_int(np.full((1, n), -128, np.int8), lut, out_dtype=np.int8),
                                  np.full((1, n), q - 128, np.int8))


@pytest.mark.parametrize("n, q", [(6, 43), (30, 9), (102, 3)])
def test_equal_scores_land_on_a_tie_and_round_half_up(n, q) -> None:
    lut = make_score_lut()
    m, s = quantize_multiplier(0.01 / lut["step"])
    got = softmax_from_scores(np.full((3, n), -12345, np.int32), m, s, lut)
    np.testing.assert_array_equal(got, np.full((3, n), q, np.uint8))


def test_the_reciprocal_is_rounded_not_truncated() -> None:
    lut = make_softmax_lut(STEP)
    table = lut["table"]
    assert lut["frac_bits"] == 20 and table[0] == 1 << 20 and table[1] == 3 << 18
    e = [1 << 20] * 3 + [3 << 18] * 2
    s = sum(e)
    assert s == 6 * (3 << 18) and (255 << K) % s * 3 == 2 * s  # 255 * 2^K / S has fraction 2/3
    expected = [57, 57, 57, 43, 43]
    truncated_r = (255 << K) // s
    assert [((x * truncated_r) + (1 << (K - 1))) >> K for x in e] == [57, 57, 57, 42, 42]  # what the bug gives
    x = np.array([[0, 0, 0, -1, -1], [-1, 0, -1, 0, 0]], np.int8)
    got = softmax_int(x, lut)
    np.testing.assert_array_equal(got[0], expected)
    np.testing.assert_array_equal(got[1], [43, 57, 43, 57, 57])


def test_the_reciprocal_row_through_the_score_path() -> None:
    """The same row as attention scores: a score LUT with step ln(4/3) and a multiplier of exactly one
    index per score unit (score_scale = step)."""
    lut = make_score_lut(step=STEP, table_size=64)
    m, s = quantize_multiplier(1.0)
    got = softmax_from_scores(np.array([[5, 5, 5, 4, 4]], np.int32), m, s, lut)
    np.testing.assert_array_equal(got, [[57, 57, 57, 43, 43]])
