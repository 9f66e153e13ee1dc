"""The generated `linear` kernel against the reference interpreter (ops/linear.py): bit-exact for int8
(8- and 4-bit weights, fused GELU, both schedules, with and without the DSP micro-kernel, chunked
rows), within 1e-4 relative for float32; the fast requantize's two modes over every shift and
extreme accumulators; shared function names; TVM-free C; the DSP micro-kernel and requantize
helpers on the emulated Cortex-M7 (QEMU) when the Arm toolchain is installed."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.backend.kernels import get_kernel
from edgevit.backend.kernels.harness import kernel_source
from edgevit.backend.kernels.tvmc import lower_to_c
from edgevit.backend.kernels.linear import fast_requant_mode, requant_mode
from gemm_cases import (assert_float_close, linear_float_case, linear_int8_case, needs_qemu, reference, request,
                        requant_sweep_case, run_generated, run_on_qemu)

FEW = settings(max_examples=8, deadline=None)
K_VALUES = st.one_of(st.integers(1, 24), st.integers(1, 6).map(lambda v: 4 * v))  # K % 4 == 0 half the time


def generate(req):
    """The registered linear generator."""
    return get_kernel("linear").generate(req)


@FEW
@given(seed=st.integers(0, 2**31), n=st.integers(1, 7), k=K_VALUES, m=st.integers(1, 9), bits=st.sampled_from([8, 4]),
       gelu=st.booleans(), schedule=st.sampled_from(["fast", "reference"]), dsp=st.booleans(), chunk=st.booleans(),
       extremes=st.booleans())
def test_int8_linear_is_bit_exact(seed, n, k, m, bits, gelu, schedule, dsp, chunk, extremes) -> None:
    rng = np.random.default_rng(seed)
    case = linear_int8_case(rng, n, k, m, bits, gelu, extremes)
    rows = int(rng.integers(1, n + 1)) if chunk else None
    req = request(case, schedule, dsp, rows)
    got = run_generated(case, generate(req), req)
    np.testing.assert_array_equal(got, reference(case)[: rows or n])


@pytest.mark.parametrize("n, k, m, gelu", [(5, 16, 7, False), (4, 32, 6, True), (1, 4, 1, False)])
def test_dsp_micro_kernel_is_bit_exact_on_host(n, k, m, gelu) -> None:
    """The plain-C fallbacks of micro/gemm_dsp.h (sanitizers on): main 2x2 region and odd edges."""
    case = linear_int8_case(np.random.default_rng(n * k * m), n, k, m, gelu=gelu)
    req = request(case, "fast", True)
    np.testing.assert_array_equal(run_generated(case, generate(req), req), reference(case))


@pytest.mark.parametrize("hi", [True, False])
def test_fast_requantize_is_exact_for_every_shift(hi) -> None:
    """Both requantize modes over every shift, extreme multipliers and accumulators (host C, UBSan
    catches any int32 overflow of the shortcuts)."""
    case = requant_sweep_case(np.random.default_rng(7), hi)
    req = request(case, "fast", True)
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
    req = request(case, schedule, True, rows)
    assert_float_close(run_generated(case, generate(req), req), reference(case)[: rows or n])


def test_dsp_micro_kernel_is_used_exactly_when_it_applies() -> None:
    rng = np.random.default_rng(1)
    for k, bits, dsp, schedule, expect in [(16, 8, True, "fast", True), (18, 8, True, "fast", False),
                                           (16, 4, True, "fast", False), (16, 8, False, "fast", False),
                                           (16, 8, True, "reference", False)]:
        case = linear_int8_case(rng, 5, k, 6, bits)
        code = generate(request(case, schedule, dsp))
        c = lower_to_c({code.func: code.prim_func})[code.func]
        assert ("ev_gemm_dsp_2x2(" in c) == expect, (k, bits, dsp, schedule)
        # the fast requantize's helpers (SMMLA, SSAT) come from the same header
        assert (code.helpers == ("gemm_dsp",)) == (schedule == "fast") == ("ev_ssat8(" in c), (k, bits, schedule)


def test_equal_shapes_share_one_function_and_differences_do_not() -> None:
    rng = np.random.default_rng(2)
    a, b = linear_int8_case(rng, 4, 16, 6), linear_int8_case(rng, 4, 16, 6)
    assert not np.array_equal(a.consts["weight"], b.consts["weight"])
    name_a, name_b = generate(request(a, "fast", True)).func, generate(request(b, "fast", True)).func
    assert name_a == name_b
    others = {generate(request(a, "reference", True)).func, generate(request(a, "fast", False)).func,
              generate(request(a, "fast", True, rows=2)).func, generate(request(linear_int8_case(rng, 4, 16, 7),
                                                                                "fast", True)).func,
              generate(request(linear_int8_case(rng, 4, 16, 6, gelu=True), "fast", True)).func}
    assert name_a not in others and len(others) == 5


def test_per_layer_numbers_are_arguments() -> None:
    case = linear_int8_case(np.random.default_rng(3), 3, 8, 4, gelu=True)
    code = generate(request(case))
    kinds = [(a.kind, a.ref if a.kind != "int" else None) for a in code.args]
    assert kinds == [("tensor", "x"), ("const", "weight"), ("const", "bias"), ("const", "multiplier"),
                     ("const", "shift"), ("const", "act_lut"), ("tensor", "y"), ("int", None)]
    assert code.args[-1].ref == case.kernel.attrs["act_in_quant"]["zero_point"] and code.scratch_bytes == 0


@pytest.mark.parametrize("dtype, dsp", [("int8", True), ("int8", False), ("float32", False)])
def test_generated_c_is_plain_strict_c(dtype, dsp, tmp_path) -> None:
    """No TVM references; compiles at -O2 (strict aliasing on) without a warning, with several output
    regions whose local buffers TVM may merge."""
    rng = np.random.default_rng(4)
    make = linear_int8_case if dtype == "int8" else linear_float_case
    case = make(rng, 5, 12, 7, gelu=True)
    code = generate(request(case, "fast", dsp))
    c = lower_to_c({code.func: code.prim_func})
    assert c[code.func].startswith(f"static void {code.func}(") and "tvm" not in c[code.func].lower()
    assert "Workspace" not in c[code.func]
    (tmp_path / "k.c").write_text(kernel_source([code], c) + f"void *keep = (void *){code.func};\n")
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", "k.c"], cwd=tmp_path, check=True)


def test_traits_row_wise_without_scratch() -> None:
    traits = get_kernel("linear").traits
    assert traits.row_wise and not traits.inplace and not traits.alias
    case = linear_int8_case(np.random.default_rng(5), 6, 8, 4)
    assert traits.scratch(case.kernel, [case.tensors["x"]], [case.tensors["y"]], 2) == 0


@needs_qemu
@pytest.mark.parametrize("k, extremes", [(24, True), (20, False)])
def test_dsp_kernel_is_bit_exact_on_cortex_m7(tmp_path, k, extremes) -> None:
    """The inline-assembly path (__ARM_FEATURE_DSP) on QEMU mps2-an500, odd edges included, both
    requantize modes; K = 20 runs the micro-kernel's unrolled loop and its single-step tail."""
    case = linear_int8_case(np.random.default_rng(6), 7, k, 9, gelu=True, extremes=extremes)
    req = request(case, "fast", True)
    got, _ = run_on_qemu(case, generate(req), req, tmp_path)
    np.testing.assert_array_equal(got, reference(case))


@needs_qemu
@pytest.mark.parametrize("hi", [True, False])
def test_fast_requantize_is_exact_on_cortex_m7(tmp_path, hi) -> None:
    """The SMMLA / SSAT helpers on the emulated M7 over the requantize sweep."""
    case = requant_sweep_case(np.random.default_rng(8), hi, rows=3)
    req = request(case, "fast", True)
    got, _ = run_on_qemu(case, generate(req), req, tmp_path)
    np.testing.assert_array_equal(got, reference(case))
