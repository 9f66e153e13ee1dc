"""edgevit.lower (docs/architecture.md): the Program IR, its ops, the reference interpreter and lowering.

`lower`, `lower_float` and `lower_int8` are imported lazily (they need torch), so that
`edgevit.lower.program` and the interpreter stay light to import.
"""

from __future__ import annotations

__all__ = ["lower", "lower_float", "lower_int8"]


def __getattr__(name: str):
    if name in ("lower", "lower_int8"):
        from edgevit.lower import from_quantized

        return getattr(from_quantized, name)
    if name == "lower_float":
        from edgevit.lower.from_model import lower_float

        return lower_float
    raise AttributeError(f"module 'edgevit.lower' has no attribute {name!r}")
