"""The generated `add` kernel (residual add) against the reference interpreter: bit-exact int8/int16."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.ops import get_op
from edgevit.backend.kernels import get_kernel
from elementwise_cases import add_case, assert_no_tvm, c_source, check, generate, kernel_def

FEW = settings(max_examples=6, deadline=None)
DTYPES = [("int8", "int8", "int8"), ("int16", "int8", "int16"), ("int16", "int8", "int8"), ("int8", "int8", "int16"),
          ("int16", "int16", "int16")]


@FEW
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), d=st.integers(1, 21), dtypes=st.sampled_from(DTYPES),
       schedule=st.sampled_from(["fast", "reference"]), chunk=st.booleans())
def test_int_add_is_bit_exact(seed, n, d, dtypes, schedule, chunk) -> None:
    rng = np.random.default_rng(seed)
    case = add_case(rng, (n, d), *dtypes)
    check(case, rows=int(rng.integers(1, n + 1)) if chunk else None, schedule=schedule)


@pytest.mark.parametrize("dtype, inplace", [("int8", 0), ("int16", 1), ("float32", 1)])
def test_add_in_place_on_either_input(dtype, inplace) -> None:
    case = add_case(np.random.default_rng(inplace), (5, 9), dtype, dtype, dtype)
    check(case, schedule="fast" if inplace else "reference", inplace=inplace)


def test_float_add_and_no_tvm_in_the_code() -> None:
    case = add_case(np.random.default_rng(3), (3, 7), "float32")
    check(case, rows=2, schedule="reference")
    for dtypes in (("float32",) * 3, DTYPES[1]):
        assert_no_tvm(c_source(add_case(np.random.default_rng(4), (3, 7), *dtypes)))


def test_traits_and_shared_function_names() -> None:
    kdef = kernel_def("add")
    assert get_kernel("add") is kdef and get_op("add").traits.inplace == (0, 1) and get_op("add").traits.row_wise
    assert set(kdef.dtypes) == {"float32", "int8", "int16"}
    rng = np.random.default_rng(5)
    a, b = add_case(rng, (4, 6)), add_case(rng, (4, 6))
    assert a.kernel.attrs != b.kernel.attrs
    code_a, _ = generate(a)
    code_b, _ = generate(b)
    assert code_a.func == code_b.func  # per-layer numbers are int arguments
    assert [x.ref for x in code_a.args[3:]] == [a.kernel.attrs[k] for k in ("ka", "kb", "bias", "shift")] + [
        a.kernel.attrs["out_quant"]["zero_point"]]
    names = {generate(a, rows=r, schedule=s)[0].func for r in (None, 2) for s in ("fast", "reference")}
    assert len(names) == 4
    assert generate(add_case(rng, (4, 6), "int16", "int8", "int16"))[0].func != code_a.func
