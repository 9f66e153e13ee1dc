"""The contract between Program ops and their generated C kernels (docs/mcu-backend.md, "Kernels").

A kernel file `<op>.py` defines `KERNEL`, a `KernelDef` (looked up by op name: kernels/__init__.py):
`generate`, which builds a TVM PrimFunc (imported lazily) for one kernel and says how the driver
calls it. What the planner needs (in-place, alias, row-wise, scratch) is the op's `PlanTraits`
(edgevit/lower/ops/traits.py), which the code honours.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgevit.lower.program import Kernel, TensorInfo

SCHEDULES = ("fast", "reference")
ARG_KINDS = ("tensor", "const", "packed", "scratch", "int")


@dataclass(frozen=True)
class Arg:
    """One argument of a kernel call.

    kind "tensor": ref = tensor name (the driver passes its arena address, offset to the
    chunk's first row for chunked calls); "const": ref = constant role in kernel.consts;
    "packed": ref = a key of the KernelCode's `packed` arrays (constants the kernel derived from
    its own, e.g. weights re-laid out for vector loads: the driver stores them like constants);
    "scratch": the kernel's scratch buffer; "int": ref = the integer value itself.
    ctype: the C type of the parameter, e.g. "int8_t*", "int32_t*", "float*", "int32_t", "int64_t".
    """

    kind: str
    ref: Any
    ctype: str

    def __post_init__(self) -> None:
        if self.kind not in ARG_KINDS:
            raise ValueError(f"Arg kind {self.kind!r} is not one of {ARG_KINDS}")


@dataclass(frozen=True)
class KernelRequest:
    """Everything a generator may depend on: the kernel, its tensors and constants, the rows
    the code is specialised for (row-wise kernels; None = all rows), the schedule and ISA."""

    kernel: Kernel
    in_infos: tuple[TensorInfo, ...]
    out_infos: tuple[TensorInfo, ...]
    consts: dict[str, np.ndarray] = field(compare=False)
    rows: int | None = None
    schedule: str = "fast"
    isa: tuple[str, ...] = ()

    @property
    def dtype(self) -> str:
        """The kernel dtype (its first input's dtype), e.g. "int8", "int16", "float32"."""
        return self.in_infos[0].dtype


@dataclass(frozen=True)
class KernelCode:
    """A generated kernel: C function `func`, its TVM PrimFunc, the call's arguments in order,
    the scratch bytes it uses, the micro-kernel headers it needs (NAME: micro/NAME.h of a
    kernel package, see `helper_header`) and the `packed` constants its "packed" arguments name
    (key -> array, e.g. a weight matrix in the kernel's own layout)."""

    func: str
    prim_func: Any
    args: tuple[Arg, ...]
    scratch_bytes: int = 0
    helpers: tuple[str, ...] = ()
    packed: dict[str, np.ndarray] = field(default_factory=dict, compare=False)


GenerateFn = Callable[[KernelRequest], KernelCode]


@dataclass(frozen=True)
class KernelDef:
    """An op's kernel: its generator (None: no code, e.g. an alias) and the `dtypes` it supports."""

    op: str
    generate: GenerateFn | None
    dtypes: tuple[str, ...] = ("float32", "int8")


def func_name(op: str, dtype: str, key: Any) -> str:
    """A C function name unique for everything the code depends on: ev_<op>_<dtype>_<10 hex>."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"ev_{op}_{dtype}_{digest}"
