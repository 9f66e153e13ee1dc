"""The generic `linear` kernel against the reference interpreter (ops/linear.py): bit-exact for int8
(8- and 4-bit weights, fused GELU, both schedules, chunked rows), within 1e-4 relative for float32;
the fast requantize's two modes over every shift and extreme accumulators; shared function names;
TVM-free plain C (no micro-kernel headers), also bit-exact on the emulated Cortex-M7 (QEMU) when
the Arm toolchain is installed. The MCU's DSP override: tests/targets/mcu/kernels."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.ops import get_op
from edgevit.backend.kernels import get_kernel
from edgevit.backend.kernels.harness import kernel_source
from edgevit.backend.kernels.tvmc import lower_to_c
from edgevit.backend.kernels.requant import fast_requant_mode, requant_mode
from gemm_cases import (assert_float_close, linear_float_case, linear_int8_case, needs_qemu, reference, request,
                        requant_sweep_case, run_generated, run_on_qemu)

FEW = settings(max_examples=8, deadline=None)
K_VALUES = st.one_of(st.integers(1, 24), st.integers(1, 6).map(lambda v: 4 * v))  # K % 4 == 0 half the time


def generate(req):
    """The generic linear generator."""
    return get_kernel("linear").generate(req)


@FEW
@given(seed=st.integers(0, 2**31), n=st.integers(1, 7), k=K_VALUES, m=st.integers(1, 9), bits=st.sampled_from([8, 4]),
       gelu=st.booleans(), schedule=st.sampled_from(["fast", "reference"]), chunk=st.booleans(), extremes=st.booleans())
def test_int8_linear_is_bit_exact(seed, n, k, m, bits, gelu, schedule, chunk, extremes) -> None:
    rng = np.random.default_rng(seed)
    case = linear_int8_case(rng, n, k, m, bits, gelu, extremes)
    rows = int(rng.integers(1, n + 1)) if chunk else None
    req = request(case, schedule, rows=rows)
    got = run_generated(case, generate(req), req)
    np.testing.assert_array_equal(got, reference(case)[: rows or n])


@pytest.mark.parametrize("hi", [True, False])
def test_fast_requantize_is_exact_for_every_shift(hi) -> None:
    """Both requantize modes over every shift, extreme multipliers and accumulators (host C, UBSan
    catches any int32 overflow of the shortcuts)."""
    case = requant_sweep_case(np.random.default_rng(7), hi)
    req = request(case, "fast")
    code = generate(req)
    assert fast_requant_mode(req, case.kernel.attrs["out_quant"]["zero_point"]) == ("hi" if hi else "wide")
    np.testing.assert_array_equal(run_generated(case, code, req), reference(case))


def test_requant_mode_takes_hi_exactly_when_its_shortcut_is_exact() -> None:
    m30 = 1 << 30
    assert requant_mode([m30, m30], [-1 - 2, -1 - 14], 127) == "hi"            # n = 34, 46
    assert requant_mode([m30], [-2], 0) == "hi"                                 # n = 33
    assert requant_mode([m30], [-1], 0) == "wide"                               # n = 32: no 32-bit shortcut
    assert requant_mode([0, m30], [0, -5], -128) == "hi"                        # multiplier 0: any shift
    assert requant_mode([m30], [-31], 0) == "hi" and requant_mode([m30], [-31], 1) == "wide"  # zp 2^30 overflows
    assert requant_mode([m30], [-24], -128) == "hi" and requant_mode([m30], [-25], -128) == "wide"  # sh 23 / 24


@FEW
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), k=st.integers(1, 20), m=st.integers(1, 8), bias=st.booleans(),
       gelu=st.booleans(), schedule=st.sampled_from(["fast", "reference"]), chunk=st.booleans())
def test_float_linear_matches_reference(seed, n, k, m, bias, gelu, schedule, chunk) -> None:
    rng = np.random.default_rng(seed)
    case = linear_float_case(rng, n, k, m, bias, gelu)
    rows = int(rng.integers(1, n + 1)) if chunk else None
    req = request(case, schedule, rows=rows)
    assert_float_close(run_generated(case, generate(req), req), reference(case)[: rows or n])


@pytest.mark.parametrize("dsp", [True, False])
def test_generic_code_is_plain_c_on_any_core(dsp) -> None:
    """No micro-kernel calls or headers, whatever the ISA: the requantize's int32 steps are C arithmetic."""
    rng = np.random.default_rng(1)
    for schedule in ("fast", "reference"):
        code = generate(request(linear_int8_case(rng, 5, 16, 6, gelu=True), schedule, dsp))
        c = lower_to_c({code.func: code.prim_func})[code.func]
        assert code.helpers == () and not re.search(r"\bev_\w+\(", c.replace(code.func, "")), (schedule, dsp)


def test_equal_shapes_share_one_function_and_differences_do_not() -> None:
    rng = np.random.default_rng(2)
    a, b = linear_int8_case(rng, 4, 16, 6), linear_int8_case(rng, 4, 16, 6)
    assert not np.array_equal(a.consts["weight"], b.consts["weight"])
    name_a, name_b = generate(request(a, "fast")).func, generate(request(b, "fast")).func
    assert name_a == name_b
    others = {generate(request(a, "reference")).func, generate(request(a, "fast", rows=2)).func,
              generate(request(linear_int8_case(rng, 4, 16, 7), "fast")).func,
              generate(request(linear_int8_case(rng, 4, 16, 6, gelu=True), "fast")).func}
    assert name_a not in others and len(others) == 4


def test_per_layer_numbers_are_arguments() -> None:
    case = linear_int8_case(np.random.default_rng(3), 3, 8, 4, gelu=True)
    code = generate(request(case))
    kinds = [(a.kind, a.ref if a.kind != "int" else None) for a in code.args]
    assert kinds == [("tensor", "x"), ("const", "weight"), ("const", "bias"), ("const", "multiplier"),
                     ("const", "shift"), ("const", "act_lut"), ("tensor", "y"), ("int", None)]
    assert code.args[-1].ref == case.kernel.attrs["act_in_quant"]["zero_point"] and code.scratch_bytes == 0


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_generated_c_is_plain_strict_c(dtype, tmp_path) -> None:
    """No TVM references; compiles at -O2 (strict aliasing on) without a warning, with several output
    regions whose local buffers TVM may merge."""
    rng = np.random.default_rng(4)
    make = linear_int8_case if dtype == "int8" else linear_float_case
    case = make(rng, 5, 12, 7, gelu=True)
    code = generate(request(case, "fast"))
    c = lower_to_c({code.func: code.prim_func})
    assert c[code.func].startswith(f"static void {code.func}(") and "tvm" not in c[code.func].lower()
    assert "Workspace" not in c[code.func]
    (tmp_path / "k.c").write_text(kernel_source([code], c) + f"void *keep = (void *){code.func};\n")
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", "k.c"], cwd=tmp_path, check=True)


def test_traits_row_wise_without_scratch() -> None:
    traits = get_op("linear").traits
    assert traits.row_wise and not traits.inplace and not traits.alias
    case = linear_int8_case(np.random.default_rng(5), 6, 8, 4)
    assert traits.scratch(case.kernel, [case.tensors["x"]], [case.tensors["y"]], 2) == 0


@needs_qemu
@pytest.mark.parametrize("hi", [True, False])
def test_fast_requantize_is_exact_on_cortex_m7(tmp_path, hi) -> None:
    """The generic code (plain C int32 steps, odd edges) on the emulated M7 over the requantize sweep."""
    case = requant_sweep_case(np.random.default_rng(8), hi, rows=3)
    req = request(case, "fast")
    got, _ = run_on_qemu(case, generate(req), req, tmp_path)
    np.testing.assert_array_equal(got, reference(case))
