"""The generic `patch_embed` kernel (im2col fused into the GEMM) against the reference interpreter
(ops/patch_embed.py): bit-exact int8 -> int8/int16 tokens with both schedules, float32 within 1e-4
relative, shared function names, not row-wise, plain C, and bit-exact on the emulated Cortex-M7.
The MCU's DSP override: tests/targets/mcu/kernels."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.ops import get_op
from edgevit.backend.kernels import get_kernel
from edgevit.backend.kernels.tvmc import lower_to_c
from gemm_cases import (assert_float_close, needs_qemu, patch_embed_float_case, patch_embed_int8_case, reference,
                        request, run_generated, run_on_qemu)

FEW = settings(max_examples=6, deadline=None)
GEOMETRY = dict(c=st.sampled_from([1, 3]), gh=st.integers(1, 3), gw=st.integers(1, 4),
                patch=st.sampled_from([1, 2, 3, 4]), d=st.integers(1, 7))


def generate(req):
    """The generic patch_embed generator."""
    return get_kernel("patch_embed").generate(req)


@FEW
@given(seed=st.integers(0, 2**31), out_dtype=st.sampled_from(["int8", "int16"]),
       schedule=st.sampled_from(["fast", "reference"]), **GEOMETRY)
def test_int8_patch_embed_is_bit_exact(seed, out_dtype, schedule, c, gh, gw, patch, d) -> None:
    case = patch_embed_int8_case(np.random.default_rng(seed), c, (gh, gw), patch, d, out_dtype)
    req = request(case, schedule)
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
    assert generate(request(a)).func != generate(request(patch_embed_int8_case(rng, 1, (3, 3), 2, 6))).func
    assert generate(request(a)).func != generate(request(patch_embed_int8_case(rng, 1, (3, 3), 2, 5, "int16"))).func


def test_arguments_traits_and_plain_c() -> None:
    case = patch_embed_int8_case(np.random.default_rng(2), 3, (2, 2), 2, 4, "int16")
    code = generate(request(case))
    assert [(a.kind, a.ctype) for a in code.args] == [
        ("tensor", "int8_t*"), ("const", "int8_t*"), ("const", "int32_t*"), ("const", "int32_t*"),
        ("const", "int32_t*"), ("tensor", "int16_t*"), ("int", "int32_t")]
    assert code.scratch_bytes == 0 and code.helpers == () and not generate(request(case, "reference")).helpers
    c = lower_to_c({code.func: code.prim_func})[code.func]
    assert "tvm" not in c.lower() and "Workspace" not in c and not re.search(r"\bev_\w+\(", c.replace(code.func, ""))
    traits = get_op("patch_embed").traits
    assert not traits.row_wise and not traits.inplace and not traits.alias
    with pytest.raises(ValueError, match="not a row-wise kernel"):
        generate(request(case, rows=1))


@needs_qemu
@pytest.mark.parametrize("d, extremes", [(16, False), (18, True)])
def test_patch_embed_is_bit_exact_on_cortex_m7(tmp_path, d, extremes) -> None:
    """The fmnist-tiny geometry (1x28x28, patch 4, 7x7 grid) on QEMU mps2-an500, generic code (d = 18:
    leftover columns) and both requantize modes."""
    case = patch_embed_int8_case(np.random.default_rng(3), 1, (7, 7), 4, d, extremes=extremes)
    req = request(case, "fast")
    got, _ = run_on_qemu(case, generate(req), req, tmp_path)
    np.testing.assert_array_equal(got, reference(case))
