"""The generated `add_pos` kernel (tokens + position embedding) against the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.ops import get_op
from elementwise_cases import add_case, assert_no_tvm, c_source, check, generate, kernel_def

DTYPES = [("int8", "int8", "int8"), ("int16", "int16", "int16"), ("int16", "int8", "int8"), ("int8", "int16", "int16")]


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), d=st.integers(1, 17), dtypes=st.sampled_from(DTYPES),
       schedule=st.sampled_from(["fast", "reference"]))
def test_int_add_pos_is_bit_exact(seed, n, d, dtypes, schedule) -> None:
    check(add_case(np.random.default_rng(seed), (n, d), *dtypes, op="add_pos"), schedule=schedule)


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32"])
def test_add_pos_in_place(dtype) -> None:
    case = add_case(np.random.default_rng(1), (6, 5), dtype, dtype, dtype, op="add_pos")
    check(case, inplace=0)
    assert_no_tvm(c_source(case))


def test_traits_not_row_wise() -> None:
    kernel_def("add_pos")  # a kernel is defined for the op
    traits = get_op("add_pos").traits
    assert traits.inplace == (0,) and not traits.row_wise  # pos would need a per-chunk offset
    case = add_case(np.random.default_rng(2), (4, 3), op="add_pos")
    with pytest.raises(ValueError, match="not a row-wise kernel"):
        generate(case, rows=2)
