"""Kernel lookup by op name, TFLite-Micro style (docs/mcu-backend.md, "Kernels").

The generic kernel of op `x` is the file `edgevit/backend/kernels/x.py`, which defines
`KERNEL = KernelDef(op="x", ...)` (base.py). A target overrides it by a file of the same name in
its own kernel package (e.g. `edgevit/targets/<kind>/kernels/x.py`) and passes that package as
`overrides`: the target's file wins, every other op keeps the generic kernel. Micro-kernel headers
(`micro/NAME.h`, named by `KernelCode.helpers`) are found the same way. This package never names
a target; TVM is only imported when a generator runs.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
from functools import lru_cache

from edgevit.errors import EdgevitError
from edgevit.backend.kernels.base import KernelDef

GENERIC_PACKAGE = "edgevit.backend.kernels"
MICRO_DIR = "micro"


class UnsupportedKernelError(EdgevitError):
    """A Program kernel this backend has no generated code for (op or dtype)."""

    exit_code = 2


def kernel_packages(overrides: str | None = None) -> tuple[str, ...]:
    """The kernel packages searched for an op's kernel, first match wins: the target's `overrides`
    package (if any), then the generic kernels."""
    return (overrides, GENERIC_PACKAGE) if overrides else (GENERIC_PACKAGE,)


@lru_cache(maxsize=None)
def _kernel_in(package: str, op: str) -> KernelDef | None:
    """`KERNEL` of module `package.op` if that module exists and defines the kernel of `op`, else None."""
    if not op.isidentifier() or importlib.util.find_spec(f"{package}.{op}") is None:
        return None
    kdef = getattr(importlib.import_module(f"{package}.{op}"), "KERNEL", None)
    return kdef if isinstance(kdef, KernelDef) and kdef.op == op else None


def get_kernel(op: str, dtype: str | None = None, overrides: str | None = None) -> KernelDef:
    """The KernelDef of `op`: `overrides.<op>` (a target's kernel package) if it has one, else the
    generic `edgevit.backend.kernels.<op>`; UnsupportedKernelError if neither exists (or the kernel
    lacks `dtype`)."""
    packages = kernel_packages(overrides)
    kdef = next((k for k in (_kernel_in(p, op) for p in packages) if k is not None), None)
    if kdef is None:
        raise UnsupportedKernelError(f"op {op!r} has no kernel in {', '.join(packages)}; "
                                     "use passes that avoid it or another target")
    if dtype is not None and dtype not in kdef.dtypes:
        raise UnsupportedKernelError(f"op {op!r}: no {dtype} kernel (have {list(kdef.dtypes)})")
    return kdef


def helper_header(name: str, overrides: str | None = None) -> str:
    """Text of the micro-kernel header `micro/<name>.h` of the first kernel package that has it
    (`overrides`, then the generic kernels); FileNotFoundError if none does."""
    for package in kernel_packages(overrides):
        path = importlib.resources.files(package) / MICRO_DIR / f"{name}.h"
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"no micro-kernel header {MICRO_DIR}/{name}.h in {', '.join(kernel_packages(overrides))}")
