"""Data sets for the CLI fuzzer: the valid ones of cli_inputs.Assets, or broken .npz files (an array
removed, retyped, reshaped, emptied; extra or inconsistent keys; mutated bytes; a text file named .npz)
and image folders (unusual or broken images: other modes, sizes, truncated, empty, a decompression bomb,
a directory named like an image; empty classes, no classes, loose files, a partial split layout).
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from hypothesis import strategies as st

from tests.fuzz.cli_values import mutated_bytes

if TYPE_CHECKING:
    from tests.fuzz.cli_inputs import Assets


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG file content of a uint8 array [H, W] or [H, W, 3 | 4] (via Pillow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb: the data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def write_file(path: Path, content: bytes | str) -> Path:
    """Write text or bytes at `path` (parents created); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _bad_array(data, key: str, good: np.ndarray) -> np.ndarray:
    """A wrong replacement for one npz array: dtype, range, shape, length or emptiness."""
    n = len(good)
    options = {
        "float255": good.astype(np.float32) * 255 + 1, "nan": np.full(good.shape, np.nan, np.float32),
        "negative": -good.astype(np.int64) - 1, "big": good.astype(np.int64) + 300, "bool": good.astype(bool),
        "complex": good.astype(np.complex64), "strings": good.astype(str), "2d": good.reshape(n, -1)[:, :3],
        "5d": good.reshape(n, 1, 1, *good.shape[1:]) if good.ndim > 1 else good[:, None, None, None, None],
        "channels": np.repeat(good[:, None], 2, axis=1) if good.ndim == 3 else good[:, None] * np.ones((1, 2), int),
        "short": good[: n // 2], "empty": good[:0], "scalar": np.array(3), "tiny": np.zeros((n, 1, 1), np.uint8),
        "label-float": np.full(n, 0.5), "label-huge": np.full(n, 2**40), "label-nan": np.full(n, np.nan),
    }
    return options[data.draw(st.sampled_from(sorted(options)), label=f"bad {key}")]


def draw_npz(data, assets: "Assets", inputs: Path) -> Path:
    """An .npz dataset with one array removed, replaced by a bad one, or extra keys; or mutated bytes,
    or a text file named .npz."""
    kind = data.draw(st.sampled_from(["array", "array", "drop", "extra", "bytes", "text"]), label="npz kind")
    path = inputs / "data.npz"
    if kind == "text":
        return write_file(path, "x_train,y_train\n1,2\n")
    if kind == "bytes":
        return write_file(path, data.draw(mutated_bytes(assets.npz.read_bytes()), label="npz bytes"))
    with np.load(assets.npz) as z:
        arrays = {k: z[k] for k in z.files}
    key = data.draw(st.sampled_from(NPZ_KEYS), label="npz key")
    if kind == "drop":
        del arrays[key]
    elif kind == "array":
        arrays[key] = _bad_array(data, key, arrays[key])
    else:
        extra = data.draw(st.sampled_from(["x_val", "classes", "classes-short", "classes-dup"]), label="extra key")
        arrays.update({"x_val": {"x_val": arrays["x_test"]}, "classes": {"classes": np.array([1, 2, 3])},
                       "classes-short": {"classes": np.array(["a"])},
                       "classes-dup": {"classes": np.array(["a", "a", "b"])}}[extra])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


IMAGE_VARIANTS = ("rgb", "rgba", "palette", "16bit", "bilevel", "size", "tiny", "truncated", "empty", "text", "bomb",
                  "jpeg-cmyk", "directory")


def _bad_image(data, path: Path) -> None:
    """Write one unusual or broken image at `path` (or a directory named like one)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    kind = data.draw(st.sampled_from(IMAGE_VARIANTS), label="image variant")
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    if kind == "directory":
        path.mkdir(parents=True)
        return
    if kind == "jpeg-cmyk":
        buf = io.BytesIO()
        Image.new("CMYK", (8, 8)).save(buf, format="JPEG")
        write_file(path, buf.getvalue())
        return
    content = {"rgb": lambda: png_bytes(np.stack([gray] * 3, -1)), "rgba": lambda: png_bytes(np.stack([gray] * 4, -1)),
               "palette": lambda: _pil_bytes(Image.fromarray(gray).convert("P")),
               "16bit": lambda: _pil_bytes(Image.fromarray(gray.astype(np.uint16) * 256)),
               "bilevel": lambda: _pil_bytes(Image.fromarray(gray).convert("1")),
               "size": lambda: png_bytes(rng.integers(0, 256, (9, 7), dtype=np.uint8)),
               "tiny": lambda: png_bytes(gray[:1, :1]), "truncated": lambda: png_bytes(gray)[:40],
               "empty": lambda: b"", "text": lambda: b"not an image", "bomb": lambda: png_claiming(30000, 30000)}[kind]()
    write_file(path, content)


def _pil_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def draw_folder(data, assets: "Assets", inputs: Path) -> Path:
    """An image folder with some bad images, an empty class, no classes, or files at the top level."""
    root = inputs / "folder"
    kind = data.draw(st.sampled_from(["images", "images", "empty-class", "no-classes", "loose-files", "split"]),
                     label="folder kind")
    shutil.copytree(assets.folder, root)
    if kind == "images":
        for i in range(data.draw(st.integers(1, 3), label="bad images")):
            _bad_image(data, root / data.draw(st.sampled_from(["c0", "c1", "c2"])) / f"bad{i}.png")
    elif kind == "empty-class":
        (root / "c3").mkdir()
    elif kind == "no-classes":
        shutil.rmtree(root)
        root.mkdir()
    elif kind == "loose-files":
        write_file(root / "readme.png", png_bytes(np.zeros((8, 8), np.uint8)))
    else:
        (root / "train").mkdir()
        shutil.move(str(root / "c0"), str(root / "train" / "c0"))
    return root


def draw_dataset(data, assets: "Assets", inputs: Path, bad: bool) -> str:
    """A --data value: valid (the npz, the image folder, a synthetic data set), or bad: a broken npz or
    folder, a malformed synthetic spec or a name that is no data set."""
    if not bad:
        return data.draw(st.sampled_from([str(assets.npz), str(assets.npz), str(assets.folder), "synthetic:1x8x8:3"]),
                         label="dataset")
    kind = data.draw(st.sampled_from(["bad-npz", "bad-npz", "bad-folder", "synthetic", "name"]), label="dataset kind")
    if kind == "synthetic":
        return data.draw(st.sampled_from(["synthetic:0x8x8", "synthetic:1x0x8", "synthetic:1x8", "synthetic:1x8x8:0",
                                          "synthetic:1x8x8:-2", "synthetic:99999x99999x99999", "synthetic:"]),
                         label="synthetic")
    if kind == "bad-npz":
        return str(draw_npz(data, assets, inputs))
    if kind == "bad-folder":
        return str(draw_folder(data, assets, inputs))
    return data.draw(st.sampled_from(["no-such-data", "no-such.npz", "", " ", "fashion-mnist-x", "/",
                                      str(inputs / "missing")]), label="dataset name")
