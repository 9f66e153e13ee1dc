"""The generated `pool` kernel: class-token select and the (requantized) mean over rows."""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.lower.ops import get_op
from elementwise_cases import assert_no_tvm, c_source, check, generate, pool_case

CASES = [("int8", "mean", "int8", "fast"), ("int16", "mean", "int16", "reference"), ("int16", "mean", "int8", "fast"),
         ("int8", "cls", "int8", "reference"), ("int16", "cls", "int16", "fast"), ("float32", "mean", "", "fast"),
         ("float32", "cls", "", "reference")]


@pytest.mark.parametrize("dtype, mode, out_dtype, schedule", CASES)
def test_pool_matches_reference(dtype, mode, out_dtype, schedule) -> None:
    rng = np.random.default_rng(len(dtype) + len(mode))
    case = pool_case(rng, 9, 6, dtype, mode, out_dtype or dtype)
    check(case, schedule=schedule)
    assert_no_tvm(c_source(case, schedule=schedule))


def test_mean_rounds_half_up_at_extremes() -> None:
    rng = np.random.default_rng(0)
    case = pool_case(rng, 4, 3, "int8", "mean", "int8")
    case.inputs[0][:] = np.array([[127, -128, 1], [127, -128, 0], [127, -128, 1], [127, -127, 0]], np.int8)
    check(case)


def test_mode_is_compiled_in() -> None:
    rng = np.random.default_rng(1)
    assert generate(pool_case(rng, 5, 4, mode="cls"))[0].func != generate(pool_case(rng, 5, 4, mode="mean"))[0].func
    t = get_op("pool").traits
    assert not t.row_wise and t.inplace == ()
