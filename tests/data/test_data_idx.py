"""IDX reading: round trips (gzip and raw) and clear errors on corrupt files."""

import gzip

import numpy as np
import pytest

from edgevit.data.idx import read_idx, write_idx
from edgevit.errors import DataError


@pytest.mark.parametrize("name", ["tiny-idx3-ubyte", "tiny-idx3-ubyte.gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([0, 9, 3, 255], dtype=np.uint8),
        np.array([[-5, 7], [300, -40000]], dtype=np.int32),
        np.array([1.5, -2.25], dtype=np.float32),
    ],
)
def test_round_trip(tmp_path, name, array):
    path = write_idx(tmp_path / name, array)
    out = read_idx(path)
    assert out.dtype == array.dtype and out.dtype.isnative
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_gzip_detected_from_content_and_header_layout(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    raw = write_idx(tmp_path / "a", array).read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 2])
    assert raw[4:12] == bytes([0, 0, 0, 2, 0, 0, 0, 3])
    (tmp_path / "b.idx").write_bytes(gzip.compress(raw))  # gzip without a .gz name
    np.testing.assert_array_equal(read_idx(tmp_path / "b.idx"), array)


def test_write_is_deterministic(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    a = write_idx(tmp_path / "a.gz", array).read_bytes()
    b = write_idx(tmp_path / "b.gz", array).read_bytes()
    assert a == b


def _raw(tmp_path):
    return write_idx(tmp_path / "ok", np.arange(24, dtype=np.uint8).reshape(2, 3, 4)).read_bytes()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00\x01", "trailing"),
        (lambda b: b"\x01\x02" + b[2:], "magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "dtype code"),
        (lambda b: b[:6], "header is truncated"),
        (lambda b: b[:2], "not an IDX file"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, mutate, message):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(mutate(_raw(tmp_path)))
    with pytest.raises(DataError, match=message) as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_truncated_gzip(tmp_path):
    data = gzip.compress(_raw(tmp_path))
    bad = tmp_path / "bad.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="gzip") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope.gz")


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(DataError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
