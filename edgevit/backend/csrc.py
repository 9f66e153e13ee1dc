"""Printing C: types, exact literals and constant arrays (shared by the emitter and the kernel harness)."""

from __future__ import annotations

import numpy as np

CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
          "float32": "float"}
PER_LINE = 16


def ctype_of(dtype: str | np.dtype) -> str:
    """C element type of a NumPy/Program dtype name (int8 -> int8_t, float32 -> float)."""
    name = np.dtype(dtype).name
    if name not in CTYPES:
        raise ValueError(f"no C type for dtype {name!r}")
    return CTYPES[name]


def c_literal(value, dtype: str | np.dtype) -> str:
    """An exact C literal of `value` as `dtype`: integers safe at the type's minimum, floats in hex."""
    name = np.dtype(dtype).name
    if name == "float32":
        v = float(np.float32(value))
        if not np.isfinite(v):
            raise ValueError(f"non-finite float constant {v}")
        return f"{v.hex()}f" if v != 0 else "0.0f"
    v = int(value)
    if name == "int64":
        return f"(-INT64_C({-(v + 1)}) - 1)" if v < 0 else f"INT64_C({v})"
    if name == "int32" and v == -(1 << 31):
        return "(-2147483647 - 1)"
    return str(v)


def c_array(name: str, arr: np.ndarray, *, const: bool = True, static: bool = False, align: int = 8,
            section: str | None = None) -> str:
    """A C definition `[static] [const] T name[n] __attribute__((aligned)) = {...};` of a flattened array."""
    a = np.ascontiguousarray(arr).reshape(-1)
    ctype = ctype_of(a.dtype)
    attrs = [f"aligned({align})"] + ([f'section("{section}")'] if section else [])
    head = f"{'static ' if static else ''}{'const ' if const else ''}{ctype} {name}[{max(a.size, 1)}] " \
           f"__attribute__(({', '.join(attrs)}))"
    if a.size == 0:
        return head + " = {0};\n"
    items = _literals(a)
    lines = [", ".join(items[i:i + PER_LINE]) for i in range(0, len(items), PER_LINE)]
    return head + " = {\n  " + ",\n  ".join(lines) + "\n};\n"


def _literals(a: np.ndarray) -> list[str]:
    """`c_literal` of every element of the 1-D array `a`, without per-element dtype lookups (the
    constants of a DeiT-sized model are millions of elements)."""
    name = a.dtype.name
    if name == "float32":
        if not np.isfinite(a).all():
            raise ValueError(f"non-finite float constant {a[~np.isfinite(a)][0]}")
        return [f"{v.hex()}f" if v != 0 else "0.0f" for v in a.astype(np.float64).tolist()]
    if name == "int64":
        return [c_literal(v, a.dtype) for v in a.tolist()]
    items = list(map(str, a.tolist()))
    if name == "int32":
        for i in np.flatnonzero(a == -(1 << 31)).tolist():
            items[i] = c_literal(-(1 << 31), "int32")
    return items
