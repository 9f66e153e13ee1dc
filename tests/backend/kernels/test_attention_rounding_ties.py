"""The generated int8 attention kernel on softmax rows that land exactly on a rounding tie (see
tests/lower/test_softmax_rounding.py for the arithmetic): every query sees the same scores, so every
softmax row is the tie row, and the values are chosen so that one probability step changes the output.
The kernel must equal the reference interpreter bit for bit, and the reference must give the
half-up probabilities (asserted first, so the case cannot silently stop hitting the tie)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgevit.lower.intlut import make_score_lut, softmax_from_scores
from edgevit.lower.intmath import quantize_multiplier
from edgevit.lower.ops.intcommon import quant_attr
from elementwise_cases import attention_case, check, reference

OUT_SCALE = 0.0075  # output real step per (sum p * v) unit: one probability step of the tie moves the output


def tie_case(keys: list[int], values: list[int], lut: dict, multiplier: tuple[int, int]):
    """One head of head_dim 1: every query is 1, so every row of scores equals `keys`."""
    n = len(keys)
    qkv = np.stack([np.ones(n), keys, values], axis=1).astype(np.int8)
    case = attention_case(np.random.default_rng(0), n, 1, 1, qscale=0.1, qkv=qkv)
    case.consts["score_lut"] = lut["table"]
    case.kernel.attrs["score_multiplier"], case.kernel.attrs["score_shift"] = multiplier
    case.kernel.attrs["out_multiplier"], case.kernel.attrs["out_shift"] = quantize_multiplier(OUT_SCALE)
    case.kernel.attrs["out_quant"] = quant_attr(0.05, 0, "int8")
    return case


@pytest.mark.parametrize("schedule, n, v, q, out", [("fast", 6, 64, 43, 124), ("reference", 6, 64, 43, 124),
                                                     ("fast", 30, 8, 9, 16)])  # out = 0.0075 * q * v * n rounded
def test_equal_scores_tie_rounds_half_up_in_c(schedule, n, v, q, out) -> None:
    lut = make_score_lut()
    mult = quantize_multiplier(0.01 / lut["step"])
    np.testing.assert_array_equal(softmax_from_scores(np.zeros((1, n), np.int32), *mult, lut), np.full((1, n), q))
    case = tie_case([3] * n, [v] * n, lut, mult)
    assert (reference(case) == out).all()  # with q - 1 (half to even, truncation): 121 and 14
    check(case, schedule=schedule)


@pytest.mark.parametrize("schedule", ["fast", "reference"])
def test_reciprocal_rounding_row_in_c(schedule) -> None:
    lut = make_score_lut(step=math.log(4 / 3), table_size=64)
    mult = quantize_multiplier(1.0)  # one LUT index per score unit
    keys, values = [5, 5, 5, 4, 4], [0, 0, 0, 90, 90]
    np.testing.assert_array_equal(softmax_from_scores(np.array([keys], np.int32), *mult, lut), [[57, 57, 57, 43, 43]])
    case = tie_case(keys, values, lut, mult)
    assert (reference(case) == 58).all()  # 0.0075 * 43 * 180 = 58.05 (with 42: 56.7 -> 57)
    check(case, schedule=schedule)
