"""The DDR the overlay sees for one image, and the output read back from it (regions of the memory map)."""

from __future__ import annotations

import numpy as np

from edgevit.targets.fpga.compiler.common import FpgaCompileError


def _region(compiled, name: str) -> tuple[int, int]:
    r = compiled.memory_map["regions"][name]
    return int(r["offset"]), int(r["bytes"])


def ddr_image(compiled, image: np.ndarray) -> np.ndarray:
    """uint8 [ddr_bytes]: the stream, the weight image and `image` (the program input, e.g. int8 [C, H, W],
    as little-endian bytes) at their regions; the output region (and the padding) zeroed."""
    info = compiled.memory_map["input"]
    x = np.asarray(image)
    if list(x.shape) != list(info["shape"]) or str(x.dtype) != info["dtype"]:
        raise FpgaCompileError(f"input {info['name']!r}: expected {info['dtype']} {info['shape']}, "
                               f"got {x.dtype} {list(x.shape)}")
    ddr = np.zeros(int(compiled.memory_map["ddr_bytes"]), dtype=np.uint8)
    for name, data in (("instructions", compiled.stream), ("weights", compiled.weights),
                       ("input", np.ascontiguousarray(x.astype(x.dtype.newbyteorder("<"))).tobytes())):
        offset, size = _region(compiled, name)
        assert len(data) == size, (name, len(data), size)
        ddr[offset:offset + size] = np.frombuffer(data, dtype=np.uint8)
    return ddr


def read_output(compiled, ddr: np.ndarray) -> np.ndarray:
    """The program output (e.g. int8 [K]) from the output region of `ddr` after a run."""
    info = compiled.memory_map["output"]
    offset, size = _region(compiled, "output")
    dt = np.dtype(info["dtype"]).newbyteorder("<")
    return np.frombuffer(ddr[offset:offset + size].tobytes(), dtype=dt).astype(info["dtype"]).reshape(info["shape"])
