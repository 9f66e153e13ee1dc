"""What the cpu kernels read off a `KernelRequest.isa` (kernels.kernel_isa: the architecture, then
the LLVM features): vector width, register count and the int8 dot-product instruction family."""

from __future__ import annotations

from typing import Sequence

DOT_K = 4  # int8 values one dot-product lane sums (vpdpbusd, sdot)


def lanes32(isa: Sequence[str]) -> int:
    """32-bit lanes per vector register: 16 with AVX-512, 8 with AVX2/AVX, 4 otherwise (SSE, NEON)."""
    if "avx512f" in isa:
        return 16
    return 8 if "avx2" in isa or "avx" in isa else 4


def vector_registers(isa: Sequence[str]) -> int:
    """Vector registers of the ISA: 32 on aarch64 and with AVX-512, 16 otherwise."""
    return 32 if "aarch64" in isa or "avx512f" in isa else 16


def dot_family(isa: Sequence[str]) -> str | None:
    """The int8 dot-product instructions the ISA has: "vnni" (AVX-512 VNNI, with AVX-512BW/F),
    "sdot" (Arm dot product), None."""
    if "avx512vnni" in isa and "avx512bw" in isa and "avx512f" in isa:
        return "vnni"
    if "aarch64" in isa and "dotprod" in isa:
        return "sdot"
    return None
