"""Small shared pieces of the FPGA compiler: its error, alignment, dtype codes and PARAM word packing."""

from __future__ import annotations

import numpy as np

from edgevit.errors import EdgevitError
from edgevit.targets.fpga.isa import DTYPE_CODES

DDR_ALIGN = 64   # every DDR region and weight-image block starts at a multiple of this
ACT_ALIGN = 16   # every ACT buffer starts at a multiple of this
ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "float32": 4}


class FpgaCompileError(EdgevitError):
    """A Program the FPGA compiler cannot compile; the message names the kernel/tensor and what to do."""


def align(x: int, a: int) -> int:
    """x rounded up to a multiple of a."""
    return -(-int(x) // a) * a


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for non-negative ints."""
    return -(-int(a) // int(b))


def dtype_code(dtype: str) -> int:
    """The 2-bit element type code of the vector instructions for an int8/int16/int32/uint8 dtype."""
    return DTYPE_CODES[str(dtype)]


def words(*values: int) -> list[int]:
    """int32 PARAM words of scalar values (each must fit int32)."""
    out = []
    for v in values:
        v = int(v)
        if not -(1 << 31) <= v < (1 << 31):
            raise FpgaCompileError(f"PARAM word {v} does not fit int32")
        out.append(v)
    return out


def words64(v: int) -> list[int]:
    """An int64 value as two int32 PARAM words, low word first (two's complement halves)."""
    u = int(v) & ((1 << 64) - 1)
    lo, hi = u & 0xFFFFFFFF, u >> 32
    return [lo - (1 << 32) if lo >= 1 << 31 else lo, hi - (1 << 32) if hi >= 1 << 31 else hi]


def table_words(table: np.ndarray) -> list[int]:
    """A 256-entry int8 table packed four entries a word, entry 0 in the low byte -> 64 int32 words."""
    t = np.asarray(table, dtype=np.int8)
    if t.shape != (256,):
        raise FpgaCompileError(f"an int8 table has 256 entries, got shape {list(t.shape)}")
    return [int(w) for w in t.view(np.int32)]  # little-endian: entry 0 is the low byte


def param_block(parts: list[list[int]]) -> np.ndarray:
    """Concatenate lists of int32 words into one PARAM block (int32 array)."""
    flat = [w for p in parts for w in p]
    return np.asarray(flat, dtype=np.int64).astype(np.int32)
