"""The cpu target's GEMM overrides (targets/cpu/kernels/linear.py, patch_embed.py on vector_gemm.py):
random shapes x every ISA path against the reference interpreter, int8 bit-exact, float32 within 1e-4:
AVX-512 with the VNNI dot product and AVX2 vector FMAs / int32 products natively on this host (when it
has them), Arm `sdot` (cortex-a76) and the NEON fallback (rpi4) under qemu-aarch64 (slow); tails of
rows and columns, K not a multiple of 4, 4-bit weights, GELU; the weight packing."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.backend.kernels import get_kernel
from edgevit.backend.kernels.harness import request_for
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import llvm_target
from edgevit.targets.cpu.kernels import KERNEL_PACKAGE, kernel_isa
from edgevit.targets.cpu.kernels.vector_gemm import cpu_gemm, pack_columns, vector_regions
from tests.backend.kernels import gemm_cases as gemm
from tests.targets.cpu.llvm_harness import NATIVE, Toolchain, aarch64_toolchain, needs_aarch64, needs_x86, run_llvm_kernel
from tests.targets.cpu.op_cases import assert_matches



def check(case: gemm.Case, target: dict, tc: Toolchain | None = None) -> None:
    """The cpu override's output for `case` on `target` equals the reference."""
    req = request_for(case.kernel, case.tensors, case.consts, isa=kernel_isa(target))
    code = get_kernel(case.kernel.op, req.dtype, overrides=KERNEL_PACKAGE).generate(req)
    assert code.packed, "the cpu GEMM kernels take packed weights"
    args = (code, req, [case.x], target) + ((tc,) if tc else ())
    assert_matches(run_llvm_kernel(*args), [gemm.reference(case)])


def linear_case(rng, n: int, k: int, m: int, dtype: str, bits: int, gelu: bool, extremes: bool) -> gemm.Case:
    """A random linear case of either dtype."""
    if dtype == "float32":
        return gemm.linear_float_case(rng, n, k, m, gelu=gelu)
    return gemm.linear_int8_case(rng, n, k, m, bits=bits, gelu=gelu, extremes=extremes)


@needs_x86
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 14), k=st.integers(1, 70), m=st.integers(1, 70), dtype=st.sampled_from(["int8", "float32"]),
       bits=st.sampled_from([8, 4]), gelu=st.booleans(), extremes=st.booleans(), which=st.integers(0, 1),
       seed=st.integers(0, 2**16))
def test_linear_matches_reference_natively(n, k, m, dtype, bits, gelu, extremes, which, seed) -> None:
    check(linear_case(np.random.default_rng(seed), n, k, m, dtype, bits, gelu, extremes), NATIVE[which % len(NATIVE)])


@needs_x86
@pytest.mark.parametrize("hi", [True, False])
def test_requantize_sweep_on_the_dot_product_path(hi) -> None:
    """Every shift, multiplier extremes and biases near the int32 limits (where the VNNI bias
    correction wraps) through the dot-product path (K = 4)."""
    for target in NATIVE:
        check(gemm.requant_sweep_case(np.random.default_rng(3), hi), target)


@needs_x86
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.integers(1, 3), gh=st.integers(1, 3), gw=st.integers(1, 3), patch=st.sampled_from([2, 3, 4, 8]),
       d=st.integers(1, 40), dtype=st.sampled_from(["int8", "float32"]), which=st.integers(0, 1),
       seed=st.integers(0, 2**16))
def test_patch_embed_matches_reference_natively(c, gh, gw, patch, d, dtype, which, seed) -> None:
    rng = np.random.default_rng(seed)
    case = (gemm.patch_embed_float_case(rng, c, (gh, gw), patch, d) if dtype == "float32"
            else gemm.patch_embed_int8_case(rng, c, (gh, gw), patch, d))
    check(case, NATIVE[which % len(NATIVE)])


@pytest.mark.slow
@needs_aarch64
@pytest.mark.parametrize("profile", ["cortex-a76", "rpi4"])
def test_gemm_kernels_on_qemu_aarch64(profile) -> None:
    """sdot (cortex-a76) and the NEON fallback (rpi4): linears with tails, K % 4 != 0, GELU, 4-bit
    weights, patch embeddings."""
    target, tc = llvm_target(load_profile(profile)), aarch64_toolchain(profile)
    rng = np.random.default_rng(11)
    cases = [linear_case(rng, 13, 36, 37, "int8", 8, False, True), linear_case(rng, 5, 30, 20, "int8", 4, True, False),
             linear_case(rng, 9, 40, 33, "float32", 8, True, False),
             gemm.patch_embed_int8_case(rng, 2, (2, 3), 4, 21), gemm.patch_embed_float_case(rng, 1, (3, 2), 4, 18)]
    for case in cases:
        check(case, target, tc)


def test_tiles_follow_the_vector_isa() -> None:
    """AVX-512 16 lanes x 6 rows, VNNI for int8 with K % 4 == 0 only; AVX2 8 lanes x 3 rows; NEON 4
    lanes x 4 rows, sdot only with dotprod."""
    avx512 = ("x86_64", "avx2", "avx512bw", "avx512f", "avx512vl", "avx512vnni")
    assert (cpu_gemm(avx512, "float32", 64).lanes, cpu_gemm(avx512, "float32", 64).rows) == (16, 6)
    assert cpu_gemm(avx512, "int8", 64).dot == "vnni" and cpu_gemm(avx512, "int8", 66).dot is None
    assert cpu_gemm(avx512, "float32", 64).dot is None
    assert cpu_gemm(("x86_64", "avx2", "fma"), "int8", 64).dot is None
    assert (cpu_gemm(("x86_64", "avx2", "fma"), "float32", 8).lanes, cpu_gemm(("x86_64", "avx2"), "int8", 8).rows) == (8, 3)
    assert cpu_gemm(("aarch64", "dotprod", "neon"), "int8", 64).dot == "sdot"
    assert cpu_gemm(("aarch64", "neon"), "int8", 64).dot is None
    assert (cpu_gemm(("aarch64", "neon"), "float32", 64).lanes, cpu_gemm(("aarch64", "neon"), "int8", 4).rows) == (4, 4)


def test_packing_and_regions() -> None:
    """Panels are k-major (dot: groups of 4 k), zero-padded; regions cover the output exactly once
    with whole tiles."""
    w = np.arange(5 * 8, dtype=np.int8).reshape(5, 8)
    p = pack_columns(w, 4)
    assert p.shape == (2, 8, 4) and p[0, 3, 2] == w[2, 3] and p[1, 7, 0] == w[4, 7] and not p[1, :, 1:].any()
    d = pack_columns(w, 4, dot=True)
    assert d.shape == (2, 2, 4, 4) and d[0, 1, 3, 2] == w[3, 6] and not d[1, :, 1:].any()
    tile = cpu_gemm(("x86_64", "avx2"), "float32", 8)
    for rows, cols in ((7, 37), (3, 16), (1, 5), (12, 32)):
        seen = np.zeros((rows, cols), int)
        for r in vector_regions(rows, cols, tile):
            assert r.rows % r.tile[0] == 0 and r.cols % r.tile[1] == 0
            seen[r.n0:r.n0 + r.rows, r.m0:r.m0 + r.cols] += 1
        assert (seen == 1).all()
