"""The generated `gelu` kernel: int8 table lookup (bit-exact) and the float32 erfc formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.ops import get_op
from elementwise_cases import (assert_no_tvm, c_source, check, gelu_case, generate, kernel_def, make_case,
                               run_generated)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31), shape=st.sampled_from([(7,), (3, 5), (4, 9), (2, 3, 4)]),
       schedule=st.sampled_from(["fast", "reference"]), chunk=st.booleans())
def test_int8_gelu_is_bit_exact(seed, shape, schedule, chunk) -> None:
    rng = np.random.default_rng(seed)
    check(gelu_case(rng, shape), rows=int(rng.integers(1, shape[0] + 1)) if chunk else None, schedule=schedule)


def test_int8_gelu_covers_the_whole_table_in_place() -> None:
    case = gelu_case(np.random.default_rng(1), (1, 256))
    case.inputs[0][:] = np.arange(-128, 128, dtype=np.int8)
    check(case, inplace=0)
    assert_no_tvm(c_source(case))


@pytest.mark.parametrize("schedule", ["fast", "reference"])
def test_float_gelu_matches_the_reference_formula(schedule) -> None:
    x = np.concatenate([np.linspace(-12, 12, 97), [0.0, -0.0, 1e-7, -1e-7, 3e-4]]).astype(np.float32).reshape(2, -1)
    case = make_case("gelu", [x])
    check(case, schedule=schedule, atol=1e-7)
    got = run_generated(case, schedule=schedule, inplace=0)
    exact = 0.5 * x.astype(np.float64) * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))
    assert np.abs(got - exact).max() < 1e-6


def test_traits() -> None:
    kdef = kernel_def("gelu")
    traits = get_op("gelu").traits
    assert traits.inplace == (0,) and traits.row_wise and set(kdef.dtypes) == {"float32", "int8"}
    code, _ = generate(gelu_case(np.random.default_rng(0), (2, 3), "float32"))
    assert code.helpers == ("f32bits",)
