"""The generated `patch_embed` kernel (im2col fused into the GEMM) against the reference interpreter
(ops/patch_embed.py): bit-exact int8 -> int8/int16 tokens with both schedules, float32 within 1e-4
relative, shared function names, not row-wise, the DSP micro-kernel exactly when p % 4 == 0, and
bit-exact on the emulated Cortex-M7."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.backend.kernels import get_kernel
from edgevit.backend.kernels.tvmc import lower_to_c
from gemm_cases import (assert_float_close, needs_qemu, patch_embed_float_case, patch_embed_int8_case, reference,
                        request, run_generated, run_on_qemu)

FEW = settings(max_examples=6, deadline=None)
GEOMETRY = dict(c=st.sampled_from([1, 3]), gh=st.integers(1, 3), gw=st.integers(1, 4),
                patch=st.sampled_from([1, 2, 3, 4]), d=st.integers(1, 7))


def generate(req):
    """The registered patch_embed generator."""
    return get_kernel("patch_embed").generate(req)


@FEW
@given(seed=st.integers(0, 2**31), out_dtype=st.sampled_from(["int8", "int16"]),
       schedule=st.sampled_from(["fast", "reference"]), dsp=st.booleans(), **GEOMETRY)
def test_int8_patch_embed_is_bit_exact(seed, out_dtype, schedule, dsp, c, gh, gw, patch, d) -> None:
    case = patch_embed_int8_case(np.random.default_rng(seed), c, (gh, gw), patch, d, out_dtype)
    req = request(case, schedule, dsp)
    got = run_generated(case, generate(req), req)
    assert got.dtype == np.dtype(out_dtype)
    np.testing.assert_array_equal(got, reference(case))


@FEW
@given(seed=st.integers(0, 2**31), schedule=st.sampled_from(["fast", "reference"]), **GEOMETRY)
def test_float_patch_embed_matches_reference(seed, schedule, c, gh, gw, patch, d) -> None:
    case = patch_embed_float_case(np.random.default_rng(seed), c, (gh, gw), patch, d)
    req = request(case, schedule)
    assert_float_close(run_generated(case, generate(req), req), reference(case))


def test_equal_geometry_shares_one_function() -> None:
    rng = np.random.default_rng(1)
    a, b = patch_embed_int8_case(rng, 1, (3, 3), 2, 5), patch_embed_int8_case(rng, 1, (3, 3), 2, 5)
    assert generate(request(a)).func == generate(request(b)).func
    assert generate(request(a)).func != generate(request(a, "reference")).func
    assert generate(request(a, dsp=True)).func == generate(request(a)).func  # p = 2: the same code
    c = patch_embed_int8_case(rng, 1, (3, 3), 4, 5)
    assert generate(request(c, dsp=True)).func != generate(request(c)).func  # the DSP micro-kernel
    assert generate(request(a)).func != generate(request(patch_embed_int8_case(rng, 1, (3, 3), 2, 5, "int16"))).func


def test_arguments_traits_and_plain_c() -> None:
    case = patch_embed_int8_case(np.random.default_rng(2), 3, (2, 2), 2, 4, "int16")
    code = generate(request(case))
    assert [(a.kind, a.ctype) for a in code.args] == [
        ("tensor", "int8_t*"), ("const", "int8_t*"), ("const", "int32_t*"), ("const", "int32_t*"),
        ("const", "int32_t*"), ("tensor", "int16_t*"), ("int", "int32_t")]
    assert code.scratch_bytes == 0 and code.helpers == ("gemm_dsp",)  # the fast requantize's SMMLA / SSAT
    assert not generate(request(case, "reference")).helpers
    c = lower_to_c({code.func: code.prim_func})[code.func]
    assert "tvm" not in c.lower() and "Workspace" not in c
    traits = get_kernel("patch_embed").traits
    assert not traits.row_wise and not traits.inplace and not traits.alias
    with pytest.raises(ValueError, match="not a row-wise kernel"):
        generate(request(case, rows=1))


@pytest.mark.parametrize("c, patch, d, out_dtype", [(3, 8, 6, "int8"), (1, 4, 9, "int16"), (2, 4, 3, "int8")])
def test_dsp_micro_kernel_is_bit_exact_on_host(c, patch, d, out_dtype) -> None:
    """The plain-C fallbacks of the patch micro-kernels: 1x4 tiles, leftover 1x1 columns, channels."""
    case = patch_embed_int8_case(np.random.default_rng(c * patch * d), c, (2, 3), patch, d, out_dtype)
    req = request(case, "fast", True)
    np.testing.assert_array_equal(run_generated(case, generate(req), req), reference(case))


def test_dsp_micro_kernel_is_used_exactly_when_it_applies() -> None:
    rng = np.random.default_rng(4)
    for patch, dsp, schedule, expect in [(4, True, "fast", True), (8, True, "fast", True), (2, True, "fast", False),
                                         (4, False, "fast", False), (4, True, "reference", False)]:
        code = generate(request(patch_embed_int8_case(rng, 1, (2, 2), patch, 5), schedule, dsp))
        c = lower_to_c({code.func: code.prim_func})[code.func]
        assert ("ev_patch_dsp_1x4(" in c) == ("ev_patch_dsp_1x1(" in c) == expect, (patch, dsp, schedule)


@needs_qemu
@pytest.mark.parametrize("d, extremes", [(16, False), (18, True)])
def test_patch_embed_is_bit_exact_on_cortex_m7(tmp_path, d, extremes) -> None:
    """The fmnist-tiny geometry (1x28x28, patch 4, 7x7 grid) on QEMU mps2-an500: the DSP micro-kernels
    (d = 18: leftover 1x1 columns) and both requantize modes."""
    case = patch_embed_int8_case(np.random.default_rng(3), 1, (7, 7), 4, d, extremes=extremes)
    req = request(case, "fast", True)
    got, _ = run_on_qemu(case, generate(req), req, tmp_path)
    np.testing.assert_array_equal(got, reference(case))
