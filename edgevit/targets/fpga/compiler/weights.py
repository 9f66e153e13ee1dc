"""The weight image: every constant the stream loads (WGT tiles, PARAM blocks, ACT constants), one DDR region.

Blocks are appended in the order the compiler first needs them (so tiles appear in the order the stream
loads them) and deduplicated by content, each starting at a multiple of ALIGN bytes. Offsets are relative
to the start of the `weights` region; the stream builder relocates them once the region is placed.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgevit.targets.fpga.compiler.common import align

ALIGN = 16  # bytes: each block's start (tiles are bm*bk bytes, a multiple of 16)


class WeightImage:
    """An append-only byte image with content deduplication: `add(array) -> offset`."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._seen: dict[bytes, int] = {}

    def add(self, data: np.ndarray | bytes) -> int:
        """Offset of `data` (an array's little-endian C-order bytes, or bytes) in the image; equal
        contents share one copy."""
        raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        key = hashlib.sha256(raw).digest() + len(raw).to_bytes(8, "little")
        if key in self._seen:
            return self._seen[key]
        offset = align(self._size, ALIGN)
        if offset > self._size:
            self._chunks.append(bytes(offset - self._size))
        self._chunks.append(raw)
        self._size = offset + len(raw)
        self._seen[key] = offset
        return offset

    @property
    def size(self) -> int:
        """Bytes of the image so far."""
        return self._size

    def tobytes(self) -> bytes:
        """The whole image."""
        return b"".join(self._chunks)
