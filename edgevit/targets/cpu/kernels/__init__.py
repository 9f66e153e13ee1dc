"""The cpu target's kernel overrides (TFLite-Micro style, see edgevit/backend/kernels/__init__.py): a
file here named like a generic kernel (`linear.py` for edgevit/backend/kernels/linear.py) replaces
it in cpu builds; every other op keeps the generic kernel. The library passes `KERNEL_PACKAGE` as
the lookup's `overrides` and `kernel_isa(target)` as every request's `isa`."""

KERNEL_PACKAGE = __name__


def kernel_isa(target: dict) -> tuple[str, ...]:
    """The `KernelRequest.isa` of an LLVM target dict (isa.llvm_target): the architecture
    ("x86_64" / "aarch64") then the LLVM features without their "+" (e.g. "avx512vnni", "dotprod"),
    sorted. Kernels choose vector widths and dot-product instructions from it."""
    from edgevit.targets.cpu.isa import ARM64, X86

    arch = X86 if target["mtriple"].startswith("x86_64") else ARM64
    return (arch, *sorted(a.lstrip("+") for a in target.get("mattr", ())))
