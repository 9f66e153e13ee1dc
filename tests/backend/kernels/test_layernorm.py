"""The generated `layernorm` kernel: integer LayerNorm bit-exact (int8/int16 input), float32 within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.ops import get_op
from elementwise_cases import assert_no_tvm, c_source, check, generate, layernorm_case


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 5), d=st.integers(1, 70), dtype=st.sampled_from(["int8", "int16"]),
       schedule=st.sampled_from(["fast", "reference"]), chunk=st.booleans())
def test_int_layernorm_is_bit_exact(seed, n, d, dtype, schedule, chunk) -> None:
    rng = np.random.default_rng(seed)
    case = layernorm_case(rng, n, d, dtype)
    x = case.inputs[0]
    x[0] = x[0, 0]  # a constant row: V == 0, every output is the rounded bias
    check(case, rows=int(rng.integers(1, n + 1)) if chunk else None, schedule=schedule)


def _extreme_rows(dtype: str, d: int) -> np.ndarray:
    """Rows at the limits: max variance (alternating min/max), one outlier, constant min/max, a ramp."""
    info = np.iinfo(dtype)
    alt = np.where(np.arange(d) % 2, info.max, info.min)
    outlier = np.full(d, info.min)
    outlier[d // 2] = info.max
    ramp = np.linspace(info.min, info.max, d).round()
    return np.stack([alt, outlier, np.full(d, info.min), np.full(d, info.max), ramp, np.zeros(d)]).astype(dtype)


@pytest.mark.parametrize("dtype, d, schedule", [("int8", 1024, "fast"), ("int8", 2, "reference"), ("int8", 1, "fast"),
                                                ("int16", 1024, "fast"), ("int16", 1024, "reference"),
                                                ("int16", 193, "fast")])
def test_int_layernorm_extremes(dtype, d, schedule) -> None:
    rng = np.random.default_rng(d)
    x = _extreme_rows(dtype, d)
    check(layernorm_case(rng, len(x), d, dtype, x=x), schedule=schedule)


@pytest.mark.parametrize("dtype, schedule", [("int8", "fast"), ("int8", "reference"), ("float32", "fast")])
def test_layernorm_in_place(dtype, schedule) -> None:
    case = layernorm_case(np.random.default_rng(7), 4, 24, dtype)
    check(case, schedule=schedule, inplace=0, atol=1e-5)


@pytest.mark.parametrize("schedule, rows", [("fast", None), ("reference", 3)])
def test_float_layernorm(schedule, rows) -> None:
    case = layernorm_case(np.random.default_rng(11), 5, 33, "float32")
    case.inputs[0][1] = 2.5  # constant row: var 0, output beta
    check(case, rows=rows, schedule=schedule, atol=1e-5)


def test_code_traits_and_sharing() -> None:
    traits = get_op("layernorm").traits
    assert traits.row_wise and traits.inplace == (0,) and traits.scratch(None, [], [], None) == 0
    rng = np.random.default_rng(3)
    a, b = layernorm_case(rng, 6, 16), layernorm_case(rng, 6, 16)
    code_a, _ = generate(a)
    code_b, _ = generate(b)
    assert code_a.func == code_b.func and code_a.helpers == ("isqrt64",)
    assert [arg.kind for arg in code_a.args] == ["tensor", "const", "const", "tensor", "int", "int", "int", "int"]
    for case in (a, layernorm_case(rng, 2, 8, "int16"), layernorm_case(rng, 2, 8, "float32")):
        for schedule in ("fast", "reference"):
            assert_no_tvm(c_source(case, schedule=schedule))
