"""The generated `attention` kernel (streamed query rows, LUT softmax) against the reference interpreter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.intlut import make_score_lut, score_index_params
from edgevit.lower.ops import get_op
from elementwise_cases import assert_no_tvm, attention_case, c_source, check, generate, kernel_def, random_int

# score multipliers with a right shift >= 32 (small qkv scales) and < 32 (large): both index paths
QSCALES = [0.02, 0.08, 0.3, 0.9]


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), heads=st.integers(1, 3), hd=st.integers(1, 9),
       qscale=st.sampled_from(QSCALES), schedule=st.sampled_from(["fast", "reference"]))
def test_int8_attention_is_bit_exact(seed, n, heads, hd, qscale, schedule) -> None:
    check(attention_case(np.random.default_rng(seed), n, heads, hd, qscale=qscale), schedule=schedule)


@pytest.mark.parametrize("schedule, heads, hd, qscale", [("fast", 2, 8, 0.05), ("reference", 1, 16, 0.5),
                                                         ("fast", 1, 64, 0.01)])
def test_int8_attention_197_tokens(schedule, heads, hd, qscale) -> None:
    check(attention_case(np.random.default_rng(hd), 197, heads, hd, qscale=qscale), schedule=schedule)


@pytest.mark.parametrize("schedule", ["fast", "reference"])
def test_int8_attention_ties_and_extremes(schedule) -> None:
    rng = np.random.default_rng(5)
    n, heads, hd = 9, 2, 4
    qkv = random_int(rng, "int8", (n, 3 * heads * hd))
    k = qkv[:, heads * hd:2 * heads * hd]
    k[:4] = k[0]              # head 0 and 1: four keys tie for every query (several maxima)
    k[4:6] = -128             # saturated keys: the largest scores and score differences
    qkv[0, :heads * hd] = 127  # a saturated query
    qkv[1, :heads * hd] = 0    # an all-zero query: every score ties at 0
    for qscale in (0.02, 0.9):
        check(attention_case(rng, n, heads, hd, qscale=qscale, qkv=qkv.copy()), schedule=schedule)


@pytest.mark.parametrize("max_len", [1 << 16, 200])
def test_int8_attention_other_score_tables(max_len) -> None:
    """Tables with fewer fraction bits (wider reciprocals) and a shorter, coarser table."""
    rng = np.random.default_rng(max_len)
    lut = make_score_lut(step=1 / 32, table_size=300, max_len=max_len) if max_len == 200 else make_score_lut(
        max_len=max_len)
    case = attention_case(rng, 13, 2, 8, qscale=0.1)
    case.consts["score_lut"] = lut["table"]
    case.kernel.attrs["score_multiplier"], case.kernel.attrs["score_shift"] = score_index_params(
        0.01 / math.sqrt(8), lut)
    check(case, schedule="fast")


@pytest.mark.parametrize("schedule, n", [("fast", 11), ("reference", 197)])
def test_float_attention(schedule, n) -> None:
    check(attention_case(np.random.default_rng(n), n, 2, 8, "float32"), schedule=schedule, atol=1e-5)


def test_streaming_scratch_and_code() -> None:
    kernel_def("attention")  # a kernel is defined for the op
    assert not get_op("attention").traits.row_wise and get_op("attention").traits.inplace == ()
    rng = np.random.default_rng(0)
    case = attention_case(rng, 50, 4, 16)
    code, req = generate(case)
    assert code.scratch_bytes == 50 * 4 == get_op("attention").traits.scratch(case.kernel, list(req.in_infos), [], None)
    assert [a.kind for a in code.args] == ["tensor", "const", "tensor", "scratch", "int", "int", "int", "int", "int"]
    other = attention_case(rng, 50, 4, 16)  # another layer: other multipliers, same function
    assert generate(other)[0].func == code.func and generate(case, schedule="reference")[0].func != code.func
    for c in (case, attention_case(rng, 5, 1, 4, "float32")):
        for schedule in ("fast", "reference"):
            src = c_source(c, schedule=schedule)
            assert_no_tvm(src)
            assert "2500" not in src and "[2500]" not in src  # never an N x N buffer


@pytest.mark.parametrize("dtype, schedule, qscale", [("int8", "fast", 0.03), ("int8", "reference", 0.03),
                                                     ("int8", "fast", 0.9), ("float32", "fast", None),
                                                     ("float32", "reference", None)])
def test_proportional_attention_with_token_sizes(dtype, schedule, qscale) -> None:
    """The optional `size` input (token merging): s_j += log_size[size_j - 1] (int8) / log(size_j) (float)."""
    rng = np.random.default_rng(17)
    n, max_size = 10, 7
    sizes = rng.integers(1, max_size + 1, n)
    sizes[:3] = (1, max_size, max_size)
    case = attention_case(rng, n, 2, 4, dtype, qscale=qscale, sizes=sizes, max_size=max_size)
    check(case, schedule=schedule, atol=1e-5)
    code, req = generate(case, schedule=schedule)
    assert code.scratch_bytes == get_op("attention").traits.scratch(case.kernel, list(req.in_infos), [], None)
    assert code.scratch_bytes == n * (4 if dtype == "int8" else 8)
    assert_no_tvm(c_source(case, schedule=schedule))


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_other_head_split_of_the_same_shapes_is_another_function(dtype) -> None:
    """2 heads x 16 and 1 head x 32 read and write the same shapes but compute differently: sharing one
    C function gave wrong firmware outputs (found by the NAS latency calibration)."""
    rng = np.random.default_rng(3)
    two, one = attention_case(rng, 10, 2, 16, dtype), attention_case(rng, 10, 1, 32, dtype)
    assert generate(two)[0].func != generate(one)[0].func
