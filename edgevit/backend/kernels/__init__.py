"""Kernel registry: one file per Program op registers a `KernelDef` (see base.py and
docs/mcu-backend.md). Importing this package registers every kernel; TVM is only imported
when a generator runs."""

from __future__ import annotations

import importlib

from edgevit.errors import EdgevitError
from edgevit.backend.kernels.base import KernelDef

_KERNELS: dict[str, KernelDef] = {}
_LOADED = False
KERNEL_MODULES = ("linear", "patch_embed", "attention", "layernorm", "add", "add_pos", "gelu",
                  "cls_concat", "pool", "reshape", "token_merge")


class UnsupportedKernelError(EdgevitError):
    """A Program kernel this backend has no generated code for (op or dtype)."""

    exit_code = 2


def register_kernel(kdef: KernelDef) -> KernelDef:
    """Add a kernel definition to the registry (one per op); returns it."""
    if kdef.op in _KERNELS:
        raise ValueError(f"kernel for op {kdef.op!r} registered twice")
    _KERNELS[kdef.op] = kdef
    return kdef


def _load_all() -> None:
    global _LOADED
    _LOADED = True
    for mod in KERNEL_MODULES:
        try:
            importlib.import_module(f"edgevit.backend.kernels.{mod}")
        except ModuleNotFoundError as e:  # a kernel file not written yet
            if e.name != f"edgevit.backend.kernels.{mod}":
                raise


def get_kernel(op: str, dtype: str | None = None) -> KernelDef:
    """The KernelDef of `op`; UnsupportedKernelError if none exists (or it lacks `dtype`)."""
    if not _LOADED:
        _load_all()
    kdef = _KERNELS.get(op)
    if kdef is None:
        raise UnsupportedKernelError(f"op {op!r} has no MCU kernel yet (have: {sorted(_KERNELS)}); "
                                     "use passes that avoid it or another target")
    if dtype is not None and dtype not in kdef.dtypes:
        raise UnsupportedKernelError(f"op {op!r}: no {dtype} kernel (have {list(kdef.dtypes)})")
    return kdef


def registered_ops() -> list[str]:
    """Names of the ops with a kernel."""
    if not _LOADED:
        _load_all()
    return sorted(_KERNELS)
