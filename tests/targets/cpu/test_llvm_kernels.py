"""The generic kernels compiled by TVM's LLVM code generation (edgevit/targets/cpu/llvm_kernels.py)
and linked with plain C, no TVM runtime: every op and dtype against the reference interpreter on
random shapes (int8/int16 bit-exact, float32 within 1e-4) on the host, and for both Arm profiles
under qemu-aarch64; the runtime hooks (workspace arena, serial parallel launch) serve what TVM's
LLVM code calls; prototypes, externals and determinism of the output."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgevit.backend.kernels import get_kernel
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import llvm_target
from edgevit.targets.cpu.kernels import KERNEL_PACKAGE, kernel_isa
from edgevit.targets.cpu.llvm_kernels import c_prototype, compile_kernels, support_source
from tests.targets.cpu.llvm_harness import HOST, aarch64_toolchain, build_and_run, needs_aarch64, run_llvm_kernel
from tests.backend.kernels import gemm_cases as gemm
from tests.targets.cpu.op_cases import (CASES, assert_matches, from_gemm_case, make_case, reference_outputs,
                                       request)

@pytest.fixture(scope="module")
def host_target() -> dict:
    """The LLVM target of the `host` profile on this machine."""
    return llvm_target(load_profile("host"))


def generate(case, target: dict, schedule: str = "fast"):
    """(KernelCode, KernelRequest) of the case from the cpu target's kernel for `target` (its
    override, else the generic generator)."""
    req = request(case, schedule, kernel_isa(target))
    return get_kernel(case.kernel.op, req.dtype, overrides=KERNEL_PACKAGE).generate(req), req


@pytest.mark.parametrize("name", CASES)
def test_kernel_matches_reference_on_host(name, host_target) -> None:
    case = make_case(name, seed=sum(map(ord, name)))
    code, req = generate(case, host_target)
    assert_matches(run_llvm_kernel(code, req, case.inputs, host_target), reference_outputs(case))


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["fast", "reference"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", CASES)
def test_kernel_matches_reference_on_more_shapes(name, seed, schedule, host_target) -> None:
    case = make_case(name, seed=1000 + seed)
    code, req = generate(case, host_target, schedule)
    assert_matches(run_llvm_kernel(code, req, case.inputs, host_target), reference_outputs(case))


@needs_aarch64
@pytest.mark.parametrize("profile, dotprod", [("cortex-a76", True), ("rpi4", False)])
def test_int8_and_float_kernels_on_qemu_aarch64(profile, dotprod) -> None:
    """Int8 linears (one long enough for LLVM to vectorize its K loop) and float32 attention compiled
    for the Arm profile's LLVM target run under qemu-aarch64 (the profile's -cpu) and match the
    reference; LLVM uses `sdot` exactly when the profile has the dot-product extension."""
    target = llvm_target(load_profile(profile))
    long_k = from_gemm_case(gemm.linear_int8_case(np.random.default_rng(8), 9, 64, 16))
    for case in (long_k, make_case("linear-int8", 5), make_case("attention-float32", 6)):
        code, req = generate(case, target)
        assert_matches(run_llvm_kernel(code, req, case.inputs, target, aarch64_toolchain(profile)),
                       reference_outputs(case))
    code, _ = generate(long_k, target)
    assert bool(re.search(r"\bsdot\b", compile_kernels([code], target).assembly)) == dotprod


PARALLEL_MAIN = """#include <stdio.h>
#include <stdint.h>
#include <stddef.h>
#include "kernels.h"
size_t ev_workspace_peak_bytes(void);
static float a[16 * 1024], b[16 * 1024];
int main(void) {
  for (int i = 0; i < 16 * 1024; i++) a[i] = (float)(i % 97) - 48.0f;
  if (ev_par_scale(a, b) != 0) return 3;
  FILE *f = fopen("out.bin", "wb");
  fwrite(b, 1, sizeof b, f);
  size_t peak = ev_workspace_peak_bytes();
  fwrite(&peak, 1, sizeof peak, f);
  fclose(f);
  return 0;
}
"""


def parallel_workspace_func():
    """A PrimFunc with a parallel loop and a 256 KiB intermediate (too big for the stack), so TVM's
    LLVM code calls __TVMBackendParallelLaunch and __TVMBackendAllocWorkspace/FreeWorkspace:
    b[i, j] = 2 a[i, j] + 1 through the intermediate."""
    from tvm.script import tirx as T

    @T.prim_func(private=True)
    def func(a: T.handle("float32"), b: T.handle("float32")):
        A = T.decl_buffer((16, 1024), "float32", data=a)
        B = T.decl_buffer((16, 1024), "float32", data=b)
        for i in T.parallel(16):
            tmp = T.decl_buffer((1024 * 64,), "float32")
            for j in range(1024):
                tmp[j * 64] = A[i, j] * T.float32(2)
            for j in range(1024):
                B[i, j] = tmp[j * 64] + T.float32(1)

    return func


def test_runtime_hooks_serve_workspace_and_parallel_loops(host_target) -> None:
    """TVM's LLVM code reaches its runtime only through the __TVMBackend* pointers, which the
    support C serves: the result is right and the workspace came from the static arena."""
    from edgevit.backend.kernels.base import KernelCode

    kernels = compile_kernels([KernelCode("ev_par_scale", parallel_workspace_func(), ())], host_target)
    for hook in ("__TVMBackendAllocWorkspace", "__TVMBackendFreeWorkspace", "__TVMBackendParallelLaunch"):
        assert hook in kernels.assembly and hook in kernels.support
    with tempfile.TemporaryDirectory() as tmp:
        raw = build_and_run(kernels, PARALLEL_MAIN, HOST, Path(tmp))
    b = np.frombuffer(raw[:16 * 1024 * 4], dtype=np.float32)
    a = (np.arange(16 * 1024) % 97).astype(np.float32) - 48.0
    np.testing.assert_array_equal(b, 2 * a + 1)
    peak = int(np.frombuffer(raw[16 * 1024 * 4:], dtype=np.uint64)[0])
    assert (1023 * 64 + 1) * 4 <= peak <= 1024 * 64 * 4   # TVM compacts tmp to the elements it touches


def test_prototypes_externals_and_deterministic_assembly(host_target) -> None:
    """Plain C prototypes returning int32 in argument order; the assembly calls only libm and the
    micro-kernel helpers; two builds give the same text; each function is defined once."""
    cases = [make_case("linear-float32", 3), make_case("layernorm-int8", 4), make_case("layernorm-int8", 4)]
    codes = [generate(c, host_target)[0] for c in cases]
    one, two = compile_kernels(codes, host_target), compile_kernels(codes, host_target)
    assert one.assembly == two.assembly and one.header == two.header
    assert one.functions == tuple(sorted({c.func for c in codes}))
    ln = codes[1]
    assert c_prototype(ln.func, ln.prim_func).startswith(f"int32_t {ln.func}(")
    assert one.header.count("int32_t ev_") == 2
    params = c_prototype(ln.func, ln.prim_func).split("(", 1)[1].rstrip(");").split(", ")
    assert [p.rsplit(" ", 1)[0] for p in params] == [a.ctype for a in ln.args]
    assert set(one.externals) <= {"erfcf", "erff", "expf", "logf", "sqrtf", "ev_isqrt64", "ev_bitlen64", "ev_f32_bits",
                                  "ev_f64_bits", "ev_dot_s16", "ev_copy_bytes", "memcpy", "memset"}
    for name in one.functions:
        assert f"\n{name}:" in one.assembly


def test_support_defines_the_helpers_as_external_functions() -> None:
    src = support_source(["isqrt64", "f32bits"])
    assert "static inline" not in src.split("micro-kernel helpers", 1)[1]
    assert "uint64_t ev_isqrt64(uint64_t x)" in src and "float ev_f32_bits(uint32_t bits)" in src


def test_workspace_bound_from_the_llvm_ir() -> None:
    """Per function the sum of its allocation sizes (rounded to 64); the largest kernel plus the
    largest parallel lambda; None for a size that is not a constant."""
    from edgevit.targets.cpu.llvm_kernels import workspace_bound

    ir = """define dllexport i32 @ev_a(ptr %A) {
  %1 = load ptr, ptr @__TVMBackendAllocWorkspace, align 8
  %x = call ptr %1(i32 1, i32 0, i64 100, i32 2, i32 32)
  %y = call ptr %1(i32 1, i32 0, i64 64, i32 2, i32 32)
}
define dllexport i32 @ev_b(ptr %A) {
  %2 = load ptr, ptr @__TVMBackendAllocWorkspace, align 8
  %z = tail call ptr %2(i32 1, i32 0, i64 1000, i32 2, i32 32)
}
define private i32 @__tvm_parallel_lambda(i32 %task_id, ptr %0, ptr %1) {
  %3 = load ptr, ptr @__TVMBackendAllocWorkspace, align 8
  %t = tail call ptr %3(i32 1, i32 0, i64 65, i32 2, i32 32)
}
"""
    assert workspace_bound(ir) == 1024 + 128
    assert workspace_bound(ir.replace("i64 1000", "i64 %n")) is None
    assert workspace_bound("define i32 @ev_c() {\n}\n") == 0


def test_workspace_bound_of_a_parallel_kernel(host_target) -> None:
    """The parallel kernel's one 261,892-byte allocation per task: one arena of 261,952 bytes."""
    from edgevit.backend.kernels.base import KernelCode

    code = KernelCode("ev_par_scale", parallel_workspace_func(), ())
    assert compile_kernels([code], host_target).workspace_bytes == 261952
