"""The cpu attention kernel's int8 output tiles of exactly 3 channels on Arm, under qemu-aarch64: head_dim 3
(one 3-channel tile) and 35 (a 3-channel tail after two tiles of 16 with NEON's 4 lanes). LLVM's AArch64
backend gets a `<3 x i8>` vector store wrong (the third byte lost, others changed); the kernel stores such
tiles with an unrolled loop. Found by the generated-code fuzzer (tests/fuzz/test_codegen_fuzz.py: head_dim 3,
cortex-a76 and rpi4, outputs off by up to 243); both cases failed before the fix."""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import llvm_target
from tests.backend.kernels.elementwise_cases import attention_case
from tests.targets.cpu.kernels.test_cpu_attention import check
from tests.targets.cpu.llvm_harness import aarch64_toolchain, needs_aarch64


@needs_aarch64
@pytest.mark.parametrize("profile, n, heads, head_dim", [("cortex-a76", 5, 1, 3), ("rpi4", 6, 1, 35),
                                                         ("cortex-a76", 9, 2, 3)])
def test_three_channel_int8_tiles_on_arm(profile, n, heads, head_dim) -> None:
    p = load_profile(profile)
    case = attention_case(np.random.default_rng(head_dim), n, heads, head_dim, "int8")
    check(case, llvm_target(p), aarch64_toolchain(profile))
