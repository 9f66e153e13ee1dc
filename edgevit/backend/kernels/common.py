"""Request helpers shared by every kernel generator (no TVM): validation, row counts, names, arguments."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgevit.backend.csrc import ctype_of
from edgevit.backend.kernels.base import SCHEDULES, Arg, KernelRequest, func_name


def check_request(req: KernelRequest, row_wise: bool = True) -> None:
    """Reject a request a generator cannot honour: an unknown schedule, or `rows` that are not
    1..N (or set at all for a kernel that is not row-wise)."""
    if req.schedule not in SCHEDULES:
        raise ValueError(f"kernel {req.kernel.name!r} ({req.kernel.op}): schedule {req.schedule!r} "
                         f"is not one of {SCHEDULES}")
    n = req.in_infos[0].shape[0]
    if req.rows is not None and (not row_wise or not 1 <= req.rows <= n):
        raise ValueError(f"kernel {req.kernel.name!r} ({req.kernel.op}): rows={req.rows} is not valid "
                         f"({'1..' + str(n) if row_wise else 'not a row-wise kernel'})")


def row_count(req: KernelRequest) -> int:
    """Rows the generated code processes: `req.rows` for a chunked row-wise call, else all rows."""
    return req.in_infos[0].shape[0] if req.rows is None else req.rows


def row_elems(shape: tuple[int, ...]) -> int:
    """Elements per row (product of every axis but the first; 1 for a 1-D tensor)."""
    return int(np.prod(shape[1:], dtype=np.int64))


def kernel_func_name(req: KernelRequest, **static: Any) -> str:
    """ev_<op>_<dtype>_<hash>: the hash covers op, tensor and constant shapes/dtypes, rows,
    schedule, ISA and `static` (compiled-in facts such as a float scale or a pooling mode)."""
    key = {"op": req.kernel.op, "in": [[list(i.shape), i.dtype] for i in req.in_infos],
           "out": [[list(i.shape), i.dtype] for i in req.out_infos],
           "consts": {r: [list(np.shape(v)), str(np.asarray(v).dtype)] for r, v in sorted(req.consts.items())},
           "rows": req.rows, "schedule": req.schedule, "isa": sorted(req.isa), "static": static}
    return func_name(req.kernel.op, req.dtype, key)


def tensor_arg(name: str, dtype: str) -> Arg:
    """A tensor pointer argument."""
    return Arg("tensor", name, f"{ctype_of(dtype)}*")


def const_arg(role: str, value: np.ndarray) -> Arg:
    """A constant pointer argument (the driver passes the flash array of constant role `role`)."""
    return Arg("const", role, f"{ctype_of(np.asarray(value).dtype)}*")


def int_arg(value: int, ctype: str = "int32_t") -> Arg:
    """An integer literal argument (a per-layer scalar such as a zero point)."""
    return Arg("int", int(value), ctype)
