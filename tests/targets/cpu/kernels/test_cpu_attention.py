"""The cpu target's attention override (targets/cpu/kernels/attention.py) against the reference
interpreter: int8 bit-exact, float32 within 1e-4, natively for every x86 ISA path this host runs
(AVX-512 with the VNNI score dot product where present, AVX2 int32 products), on the zoo's and a
DeiT-Tiny-shaped model's shapes (tokens 50/65/197, head_dim 16/32/64, heads 3/4; the large ones
slow), random small shapes with partial query blocks and head_dim tails, token sizes, extreme
values; the Arm `sdot` (cortex-a76) and NEON (rpi4) paths under qemu-aarch64 (slow)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.backend.kernels import get_kernel
from edgevit.backend.kernels.harness import request_for
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import llvm_target
from edgevit.targets.cpu.kernels import KERNEL_PACKAGE, kernel_isa
from edgevit.targets.cpu.kernels.attention import ACCUMULATORS, Blocking
from edgevit.targets.cpu.kernels.vector_isa import lanes32
from edgevit.targets.cpu.llvm_kernels import compile_kernels
from tests.backend.kernels.elementwise_cases import attention_case
from tests.targets.cpu.llvm_harness import NATIVE, Toolchain, aarch64_toolchain, needs_aarch64, needs_x86, run_llvm_kernel
from tests.targets.cpu.op_cases import assert_matches, reference_outputs



def generate(case, target: dict):
    """(KernelCode, KernelRequest) of the cpu override for `case` on `target`."""
    req = request_for(case.kernel, case.tensors, case.consts, isa=kernel_isa(target))
    return get_kernel("attention", req.dtype, overrides=KERNEL_PACKAGE).generate(req), req


def check(case, target: dict, tc: Toolchain | None = None) -> None:
    """The cpu override's output for `case` on `target` equals the reference (float32: within 1e-4)."""
    code, req = generate(case, target)
    args = (code, req, case.inputs, target) + ((tc,) if tc else ())
    assert_matches(run_llvm_kernel(*args), reference_outputs(case))


def sized_case(rng, n: int, h: int, hd: int, dtype: str):
    """An attention case with token sizes (proportional attention after token merging)."""
    max_size = int(rng.integers(1, 9))
    return attention_case(rng, n, h, hd, dtype, sizes=rng.integers(1, max_size + 1, n), max_size=max_size)


@needs_x86
@pytest.mark.parametrize("n, h, hd, dtype, sized", [(50, 3, 32, "int8", False), (50, 3, 32, "float32", False),
                                                    (50, 4, 16, "int8", True), (50, 4, 16, "float32", True)])
def test_zoo_shapes_natively(n, h, hd, dtype, sized) -> None:
    """fmnist-small (50 tokens, 3 heads of 32) and fmnist-tiny (4 heads of 16, here with token sizes)."""
    rng = np.random.default_rng(n * h + hd)
    case = sized_case(rng, n, h, hd, dtype) if sized else attention_case(rng, n, h, hd, dtype)
    for target in NATIVE:
        check(case, target)


@needs_x86
@pytest.mark.slow
@pytest.mark.parametrize("n, h, hd", [(197, 3, 64), (65, 4, 16), (65, 3, 32), (197, 4, 16)])
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_deit_shapes_natively(n, h, hd, dtype) -> None:
    """A DeiT-Tiny-shaped model (197 tokens, 3 heads of 64) and other token counts, with and without sizes."""
    rng = np.random.default_rng(n + h + hd)
    for target in NATIVE:
        check(attention_case(rng, n, h, hd, dtype), target)
        check(sized_case(rng, n, h, hd, dtype), target)


@needs_x86
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), h=st.integers(1, 3), hd=st.sampled_from([1, 3, 4, 5, 8, 12, 20]),
       dtype=st.sampled_from(["int8", "float32"]), sized=st.booleans(), which=st.integers(0, 1),
       seed=st.integers(0, 2**16))
def test_random_shapes_natively(n, h, hd, dtype, sized, which, seed) -> None:
    """Partial query blocks, key tails, head_dim tails (and head_dim % 4 != 0: no dot product)."""
    rng = np.random.default_rng(seed)
    case = sized_case(rng, n, h, hd, dtype) if sized else attention_case(rng, n, h, hd, dtype)
    check(case, NATIVE[which % len(NATIVE)])


@needs_x86
@pytest.mark.parametrize("value", [127, -128])
def test_int8_extremes_natively(value) -> None:
    """All-equal extreme q, k, v (the VNNI +128 correction at its limits, every score the row max)
    and alternating extremes."""
    rng = np.random.default_rng(7)
    n, h, hd = 21, 2, 16
    flat = np.full((n, 3 * h * hd), value, np.int8)
    alternating = np.where(rng.integers(0, 2, (n, 3 * h * hd)) == 1, 127, -128).astype(np.int8)
    for qkv in (flat, alternating):
        for target in NATIVE:
            check(attention_case(rng, n, h, hd, "int8", qkv=qkv), target)


@needs_x86
def test_vnni_scores_when_the_host_has_them() -> None:
    """The int8 scores use `vpdpbusd` exactly on the target with AVX-512 VNNI (head_dim % 4 == 0)."""
    case = attention_case(np.random.default_rng(1), 9, 2, 8, "int8")
    for target in NATIVE:
        code, _ = generate(case, target)
        asm = compile_kernels([code], target).assembly
        assert bool(re.search(r"\bvpdpbusd\b", asm)) == ("+avx512vnni" in target["mattr"])


def test_blocking_follows_the_isa() -> None:
    """Query blocks of one vector of 32-bit lanes, output tiles within the accumulator budget (under
    TVM's 1 KiB stack limit), a parallel loop only for large kernels."""
    avx512 = ("x86_64", "avx2", "avx512f", "fma")
    assert lanes32(avx512) == 16 and lanes32(("x86_64", "avx2", "fma")) == 8 and lanes32(("aarch64", "neon")) == 4
    for isa in (avx512, ("x86_64", "avx2"), ("aarch64", "neon", "dotprod")):
        for hd in (1, 5, 16, 32, 64):
            bk = Blocking(50, 3, hd, isa)
            vectors = -(-bk.tw // bk.lanes)
            assert bk.qt * vectors <= max(ACCUMULATORS.values()) and bk.qt * bk.tw * 4 < 1024
            assert bk.full * bk.tw + bk.rest == hd and bk.tasks == 3 * -(-50 // bk.lanes)
    assert not Blocking(8, 1, 4, avx512).parallel and Blocking(197, 3, 64, avx512).parallel


@needs_aarch64
@pytest.mark.slow
@pytest.mark.parametrize("profile, dotprod", [("cortex-a76", True), ("rpi4", False)])
def test_arm_profiles_under_qemu(profile, dotprod) -> None:
    """Both Arm paths (sdot scores on cortex-a76, NEON int32 products on rpi4), int8 and float32, with
    sizes and a head_dim tail, under qemu-aarch64 with the profile's -cpu."""
    p = load_profile(profile)
    target = llvm_target(p)
    tc = aarch64_toolchain(profile)
    rng = np.random.default_rng(11)
    for case in (attention_case(rng, 50, 3, 32, "int8"), sized_case(rng, 13, 2, 16, "int8"),
                 attention_case(rng, 11, 2, 6, "int8"), attention_case(rng, 50, 4, 16, "float32"),
                 sized_case(rng, 9, 1, 5, "float32")):
        check(case, target, tc)
    code, _ = generate(attention_case(rng, 9, 2, 8, "int8"), target)
    assert bool(re.search(r"\bsdot\b", compile_kernels([code], target).assembly)) == dotprod
