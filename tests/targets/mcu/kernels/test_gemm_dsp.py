"""The MCU's kernel overrides (edgevit/targets/mcu/kernels: linear, patch_embed with the Arm DSP
micro-kernels and SMMLA/SSAT requantize of micro/gemm_dsp.h) against the reference interpreter:
bit-exact on the host through the header's plain-C fallbacks (sanitizers on) and, when the Arm
toolchain is installed, on the emulated Cortex-M7; the micro-kernel exactly where it applies; the
lookup picks the override for these two ops only."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.backend.kernels import get_kernel
from edgevit.backend.kernels import linear as generic_linear
from edgevit.backend.kernels import patch_embed as generic_patch_embed
from edgevit.backend.kernels.harness import kernel_source
from edgevit.backend.kernels.tvmc import lower_to_c
from edgevit.targets.mcu.kernels import KERNEL_PACKAGE
from edgevit.targets.mcu.kernels import linear as mcu_linear
from edgevit.targets.mcu.kernels import patch_embed as mcu_patch_embed
from tests.backend.kernels.gemm_cases import (linear_int8_case, needs_qemu, patch_embed_float_case,
                                              patch_embed_int8_case, reference, request, requant_sweep_case,
                                              run_generated, run_on_qemu)

FEW = settings(max_examples=6, deadline=None)
K_VALUES = st.one_of(st.integers(1, 24), st.integers(1, 6).map(lambda v: 4 * v))  # K % 4 == 0 half the time


def generate(req):
    """The MCU's generator for the request's op (the override of linear / patch_embed)."""
    return get_kernel(req.kernel.op, overrides=KERNEL_PACKAGE).generate(req)


def run_mcu(case, req):
    """Output of the MCU kernel's C on the host (gcc, sanitizers, gemm_dsp.h's plain-C fallbacks)."""
    return run_generated(case, generate(req), req, KERNEL_PACKAGE)


def c_of(code) -> str:
    """The lowered C definition of a generated kernel."""
    return lower_to_c({code.func: code.prim_func})[code.func]


def test_the_mcu_overrides_linear_and_patch_embed_and_nothing_else() -> None:
    assert get_kernel("linear", overrides=KERNEL_PACKAGE) is mcu_linear.KERNEL
    assert get_kernel("patch_embed", overrides=KERNEL_PACKAGE) is mcu_patch_embed.KERNEL
    assert get_kernel("linear") is generic_linear.KERNEL and get_kernel("patch_embed") is generic_patch_embed.KERNEL
    for op in ("attention", "layernorm", "add", "gelu", "reshape", "token_merge"):
        assert get_kernel(op, overrides=KERNEL_PACKAGE) is get_kernel(op), op


# ---------------------------------------------------------------- linear

@FEW
@given(seed=st.integers(0, 2**31), n=st.integers(1, 7), k=K_VALUES, m=st.integers(1, 9), bits=st.sampled_from([8, 4]),
       gelu=st.booleans(), dsp=st.booleans(), chunk=st.booleans(), extremes=st.booleans())
def test_int8_linear_is_bit_exact(seed, n, k, m, bits, gelu, dsp, chunk, extremes) -> None:
    rng = np.random.default_rng(seed)
    case = linear_int8_case(rng, n, k, m, bits, gelu, extremes)
    rows = int(rng.integers(1, n + 1)) if chunk else None
    req = request(case, "fast", dsp, rows)
    np.testing.assert_array_equal(run_mcu(case, req), reference(case)[: rows or n])


@pytest.mark.parametrize("n, k, m, gelu", [(5, 16, 7, False), (4, 32, 6, True), (1, 4, 1, False)])
def test_dsp_micro_kernel_is_bit_exact_on_host(n, k, m, gelu) -> None:
    """The plain-C fallbacks of micro/gemm_dsp.h (sanitizers on): main 2x2 region and odd edges."""
    case = linear_int8_case(np.random.default_rng(n * k * m), n, k, m, gelu=gelu)
    req = request(case, "fast", True)
    np.testing.assert_array_equal(run_mcu(case, req), reference(case))


@pytest.mark.parametrize("hi", [True, False])
def test_fast_requantize_helpers_are_exact_for_every_shift(hi) -> None:
    """ev_smmla / ev_ssat8 over every shift, extreme multipliers and accumulators (UBSan on)."""
    case = requant_sweep_case(np.random.default_rng(7), hi)
    req = request(case, "fast", True)
    np.testing.assert_array_equal(run_mcu(case, req), reference(case))


def test_dsp_micro_kernel_is_used_exactly_when_it_applies() -> None:
    """On a DSP core, fast schedule, 8-bit weights, K % 4 == 0; the SMMLA/SSAT requantize whenever
    the schedule is fast (also without DSP), where the generic kernel has plain C."""
    rng = np.random.default_rng(1)
    for k, bits, dsp, schedule, expect in [(16, 8, True, "fast", True), (18, 8, True, "fast", False),
                                           (16, 4, True, "fast", False), (16, 8, False, "fast", False),
                                           (16, 8, True, "reference", False)]:
        case = linear_int8_case(rng, 5, k, 6, bits)
        req = request(case, schedule, dsp)
        code, plain = generate(req), generic_linear.generate(req)
        c, plain_c = c_of(code), c_of(plain)
        assert ("ev_gemm_dsp_2x2(" in c) == expect, (k, bits, dsp, schedule)
        assert (code.helpers == ("gemm_dsp",)) == (schedule == "fast") == ("ev_ssat8(" in c), (k, bits, schedule)
        assert plain.helpers == () and "ev_gemm_dsp" not in plain_c and "ev_ssat8(" not in plain_c


def test_dsp_code_has_its_own_function_name() -> None:
    case = linear_int8_case(np.random.default_rng(2), 4, 16, 6)
    names = {generate(request(case, "fast", dsp)).func for dsp in (True, False)}
    assert len(names) == 2 and generic_linear.generate(request(case, "fast")).func not in names


@pytest.mark.parametrize("dsp", [True, False])
def test_generated_c_is_strict_c_with_the_header(dsp, tmp_path) -> None:
    """TVM-free; compiles at -O2 (strict aliasing on) with micro/gemm_dsp.h without a warning."""
    case = linear_int8_case(np.random.default_rng(4), 5, 12, 7, gelu=True)
    code = generate(request(case, "fast", dsp))
    c = lower_to_c({code.func: code.prim_func})
    assert "tvm" not in c[code.func].lower() and "Workspace" not in c[code.func]
    (tmp_path / "k.c").write_text(kernel_source([code], c, KERNEL_PACKAGE) + f"void *keep = (void *){code.func};\n")
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", "k.c"], cwd=tmp_path, check=True)


# ---------------------------------------------------------------- patch_embed

@FEW
@given(seed=st.integers(0, 2**31), out_dtype=st.sampled_from(["int8", "int16"]), dsp=st.booleans(),
       c=st.sampled_from([1, 3]), gh=st.integers(1, 3), gw=st.integers(1, 4), patch=st.sampled_from([2, 4, 8]),
       d=st.integers(1, 7))
def test_int8_patch_embed_is_bit_exact(seed, out_dtype, dsp, c, gh, gw, patch, d) -> None:
    case = patch_embed_int8_case(np.random.default_rng(seed), c, (gh, gw), patch, d, out_dtype)
    req = request(case, "fast", dsp)
    np.testing.assert_array_equal(run_mcu(case, req), reference(case))


@pytest.mark.parametrize("c, patch, d, out_dtype", [(3, 8, 6, "int8"), (1, 4, 9, "int16"), (2, 4, 3, "int8")])
def test_patch_micro_kernel_is_bit_exact_on_host(c, patch, d, out_dtype) -> None:
    """The plain-C fallbacks of the patch micro-kernels: 1x4 tiles, leftover 1x1 columns, channels."""
    case = patch_embed_int8_case(np.random.default_rng(c * patch * d), c, (2, 3), patch, d, out_dtype)
    np.testing.assert_array_equal(run_mcu(case, request(case, "fast", True)), reference(case))


def test_patch_micro_kernel_is_used_exactly_when_it_applies() -> None:
    rng = np.random.default_rng(4)
    for patch, dsp, schedule, expect in [(4, True, "fast", True), (8, True, "fast", True), (2, True, "fast", False),
                                         (4, False, "fast", False), (4, True, "reference", False)]:
        c = c_of(generate(request(patch_embed_int8_case(rng, 1, (2, 2), patch, 5), schedule, dsp)))
        assert ("ev_patch_dsp_1x4(" in c) == ("ev_patch_dsp_1x1(" in c) == expect, (patch, dsp, schedule)
    a, b = patch_embed_int8_case(rng, 1, (3, 3), 2, 5), patch_embed_int8_case(rng, 1, (3, 3), 4, 5)
    assert generate(request(a, dsp=True)).func == generate(request(a)).func  # p = 2: the same code
    assert generate(request(b, dsp=True)).func != generate(request(b)).func  # the DSP micro-kernel
    float_case = patch_embed_float_case(rng, 1, (2, 2), 4, 3)
    assert generate(request(float_case, dsp=True)).helpers == ()


# ---------------------------------------------------------------- on the emulated Cortex-M7

@needs_qemu
@pytest.mark.parametrize("k, extremes", [(24, True), (20, False)])
def test_dsp_kernel_is_bit_exact_on_cortex_m7(tmp_path, k, extremes) -> None:
    """The inline-assembly path (__ARM_FEATURE_DSP) on QEMU mps2-an500, odd edges included, both
    requantize modes; K = 20 runs the micro-kernel's unrolled loop and its single-step tail."""
    case = linear_int8_case(np.random.default_rng(6), 7, k, 9, gelu=True, extremes=extremes)
    req = request(case, "fast", True)
    got, _ = run_on_qemu(case, generate(req), req, tmp_path, KERNEL_PACKAGE)
    np.testing.assert_array_equal(got, reference(case))


@needs_qemu
@pytest.mark.parametrize("hi", [True, False])
def test_fast_requantize_is_exact_on_cortex_m7(tmp_path, hi) -> None:
    """The SMMLA / SSAT helpers on the emulated M7 over the requantize sweep."""
    case = requant_sweep_case(np.random.default_rng(8), hi, rows=3)
    req = request(case, "fast", True)
    got, _ = run_on_qemu(case, generate(req), req, tmp_path, KERNEL_PACKAGE)
    np.testing.assert_array_equal(got, reference(case))


@needs_qemu
@pytest.mark.parametrize("d, extremes", [(16, False), (18, True)])
def test_patch_embed_is_bit_exact_on_cortex_m7(tmp_path, d, extremes) -> None:
    """The fmnist-tiny geometry (1x28x28, patch 4, 7x7 grid): the DSP micro-kernels (d = 18:
    leftover 1x1 columns) and both requantize modes."""
    case = patch_embed_int8_case(np.random.default_rng(3), 1, (7, 7), 4, d, extremes=extremes)
    req = request(case, "fast", True)
    got, _ = run_on_qemu(case, generate(req), req, tmp_path, KERNEL_PACKAGE)
    np.testing.assert_array_equal(got, reference(case))
