"""Reading (and writing) IDX files, the format of MNIST and Fashion-MNIST.

Layout: two zero bytes, a dtype code byte, a byte with the number of dimensions,
then one big-endian uint32 per dimension, then the data in big-endian C order.
Files may be gzip-compressed; that is detected from the content, not the name.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from edgevit.errors import DataError

#: IDX dtype code → big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip'd or raw) into a native-endian, writable array.

    Returns an array of the dimensions stored in the header (e.g. uint8 [N, 28, 28]
    for images, uint8 [N] for labels) and the dtype given by the header's code.
    Raises DataError naming the file if it is missing, corrupt or truncated.
    """
    path = Path(path)
    raw = _read_bytes(path)
    dtype, dims, offset = _parse_header(raw, path)
    count = int(np.prod(dims, dtype=np.int64))
    expected = offset + count * dtype.itemsize
    if len(raw) < expected:
        raise DataError(
            f"{path}: IDX file is truncated: header says {list(dims)} {dtype.name} "
            f"({expected} bytes) but the file holds {len(raw)} bytes; re-download or reinstall it"
        )
    if len(raw) > expected:
        raise DataError(
            f"{path}: IDX file has {len(raw) - expected} unexpected trailing bytes after "
            f"{list(dims)} {dtype.name} data; the file is corrupt"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` (any shape; uint8, int8, int16, int32, float32 or float64) as IDX.

    Gzip-compressed if `compress` is True, or when None if the name ends in ".gz".
    The output is deterministic (gzip mtime 0). Returns the path written.
    """
    path = Path(path)
    array = np.asarray(array)
    code = next((c for c, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == array.dtype.newbyteorder("=")), None)
    if code is None:
        raise DataError(f"{path}: IDX cannot store dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"{path}: IDX needs 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip; DataError on I/O or gzip errors."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: IDX file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read IDX file: {exc.strerror or exc}") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(
            f"{path}: gzip data is corrupt or truncated ({exc}); re-download or reinstall the file"
        ) from None


def _parse_header(raw: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, data offset) from the IDX header; DataError if it is not IDX."""
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(raw)} bytes, the header alone needs 4)")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    if code not in IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (unknown dtype code 0x{code:02x})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(f"{path}: IDX header is truncated ({len(raw)} bytes, needs {offset} for {ndim} dims)")
    dims = struct.unpack(f">{ndim}I", raw[4:offset])
    return IDX_DTYPES[code], tuple(int(d) for d in dims), offset
