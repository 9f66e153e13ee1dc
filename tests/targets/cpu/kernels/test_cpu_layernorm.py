"""The cpu target's layernorm override (targets/cpu/kernels/layernorm.py) against the reference
interpreter: int8/int16 bit-exact, float32 within 1e-4, natively for every x86 ISA path this host runs:
the zoo's and DeiT-Tiny's widths (64, 96, 192; 197 rows run as a parallel loop), random shapes with
vector tails, chunked calls (`rows`), constant rows (variance 0: the reciprocal above 2^31), full-range
inputs; no call of the generic kernel's isqrt/bitlen helpers; both Arm profiles under qemu (slow)."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.backend.kernels import get_kernel
from edgevit.backend.kernels.harness import request_for
from edgevit.lower.intmath import qrange
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import llvm_target
from edgevit.targets.cpu.kernels import KERNEL_PACKAGE, kernel_isa
from edgevit.targets.cpu.llvm_kernels import compile_kernels
from tests.backend.kernels.elementwise_cases import layernorm_case
from tests.targets.cpu.llvm_harness import NATIVE, Toolchain, aarch64_toolchain, needs_aarch64, needs_x86, run_llvm_kernel
from tests.targets.cpu.op_cases import assert_matches, reference_outputs



def generate(case, target: dict, rows: int | None = None):
    """(KernelCode, KernelRequest) of the cpu override for `case` on `target` (`rows`: a chunked call)."""
    req = request_for(case.kernel, case.tensors, case.consts, rows=rows, isa=kernel_isa(target))
    return get_kernel("layernorm", req.dtype, overrides=KERNEL_PACKAGE).generate(req), req


def check(case, target: dict, rows: int | None = None, tc: Toolchain | None = None) -> None:
    """The override's output (the first `rows` rows) equals the reference's."""
    code, req = generate(case, target, rows)
    args = (code, req, case.inputs, target) + ((tc,) if tc else ())
    want = reference_outputs(case)
    assert_matches(run_llvm_kernel(*args), [w[:rows] if rows else w for w in want])


@needs_x86
@pytest.mark.parametrize("n, d", [(50, 96), (50, 64), (197, 192)])
@pytest.mark.parametrize("dtype", ["int8", "int16", "float32"])
def test_model_widths_natively(n, d, dtype) -> None:
    rng = np.random.default_rng(n + d)
    check(layernorm_case(rng, n, d, dtype), NATIVE[(n + d) % len(NATIVE)])


@needs_x86
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 20), d=st.integers(1, 200), dtype=st.sampled_from(["int8", "int16", "float32"]),
       chunk=st.booleans(), which=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_random_shapes_natively(n, d, dtype, chunk, which, seed) -> None:
    """Vector tails (D % lanes), row blocks with tails, chunked calls of the first rows."""
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, n + 1)) if chunk else None
    check(layernorm_case(rng, n, d, dtype), NATIVE[which % len(NATIVE)], rows)


@needs_x86
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_constant_and_extreme_rows_natively(dtype) -> None:
    """Constant rows (V = 0, eps alone: R > 2^31 and every centred value 0), rows at the type's
    limits and alternating extremes (the largest variance)."""
    rng = np.random.default_rng(5)
    lo, hi = qrange(dtype)
    d = 37
    x = np.stack([np.full(d, 0), np.full(d, lo), np.full(d, hi), np.where(np.arange(d) % 2, lo, hi),
                  rng.integers(lo, hi + 1, d)]).astype(dtype)
    for target in NATIVE:
        check(layernorm_case(rng, len(x), d, dtype, x=x), target)


@needs_x86
def test_no_helper_calls() -> None:
    """The integer kernel computes the square root and bit length inline (no ev_isqrt64 / ev_bitlen64)."""
    code, _ = generate(layernorm_case(np.random.default_rng(2), 3, 40, "int8"), NATIVE[0])
    assert not code.helpers and not compile_kernels([code], NATIVE[0]).externals


@needs_aarch64
@pytest.mark.slow
@pytest.mark.parametrize("profile", ["cortex-a76", "rpi4"])
def test_arm_profiles_under_qemu(profile) -> None:
    p = load_profile(profile)
    tc = aarch64_toolchain(profile)
    rng = np.random.default_rng(13)
    for dtype in ("int8", "int16", "float32"):
        check(layernorm_case(rng, 50, 96, dtype), llvm_target(p), tc=tc)
        check(layernorm_case(rng, 7, 21, dtype), llvm_target(p), 5, tc)
