"""Pins `quant_from_range` (edgevit/passes/observers.py), the range -> TensorQuant step of every observer:
the asymmetric zero point is the *rounded* code of the range's low end (round half up, the one rule of
docs/integer-semantics.md), then clamped; the symmetric one is 0. Ranges are chosen so that every
quotient is exact in binary floating point: the expected zero points are exact, not approximations.
A zero point truncated toward zero or floored instead of rounded fails here (and only rounding fits
every case: -117.7 -> -118 but 72.7 -> 73 and the tie -117.5 -> -117)."""

from __future__ import annotations

import pytest

from edgevit.passes.observers import quant_from_range

STEP = 0.0625  # 2^-4: lo / scale below is exact


@pytest.mark.parametrize("codes_below_zero, zero_point", [
    (10.3, -118),    # qmin + 10.3 = -117.7: rounds to -118 (truncation toward zero: -117)
    (10.7, -117),    # -117.3 -> -117 (floor: -118)
    (10.5, -117),    # the tie -117.5: half up -> -117 (half to even, Python's round: -118)
    (200.7, 73),     # 72.7 -> 73 (truncation or floor: 72)
    (200.5, 73),     # the tie 72.5: half up -> 73 (half to even: 72)
    (0.0, -128),     # the range starts at 0: zp = qmin
    (300.0, 127),    # the range ends at 0 (hi widened): zp = qmax
])
def test_asymmetric_int8_zero_point_is_the_rounded_code_of_lo(codes_below_zero, zero_point) -> None:
    lo = -codes_below_zero * STEP
    hi = lo + 255 * STEP
    q = quant_from_range(lo, max(hi, 0.0), "int8")
    if hi > 0:
        assert q.scale == STEP  # (hi - lo) / 255 exactly
    assert (q.zero_point, q.dtype) == (zero_point, "int8")


def test_asymmetric_int16_zero_point_rounds_half_up() -> None:
    lo = -1000.5 * STEP
    q = quant_from_range(lo, lo + 65535 * STEP, "int16")
    assert q.scale == STEP and q.zero_point == -32768 + 1001  # -31767.5 -> -31767


def test_symmetric_zero_point_is_zero_and_scale_covers_the_larger_end() -> None:
    q = quant_from_range(-3.0, 1.0, "int8", symmetric=True)
    assert q.zero_point == 0 and q.scale == pytest.approx(3.0 / 127)


def test_range_is_widened_to_contain_zero() -> None:
    q = quant_from_range(2.0, 2.0 + 255 * STEP, "int8")  # lo > 0 becomes 0
    assert q.zero_point == -128 and q.scale == pytest.approx((2.0 + 255 * STEP) / 255)
