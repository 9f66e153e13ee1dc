"""What every op emitter works with: the Program, the overlay, the stream, the weight image and ACT layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgevit.lower.program import Kernel, Program, TensorInfo
from edgevit.targets.fpga.compiler.common import ITEMSIZE, FpgaCompileError
from edgevit.targets.fpga.compiler.layout import ActLayout
from edgevit.targets.fpga.compiler.stream import StreamBuilder
from edgevit.targets.fpga.compiler.weights import WeightImage
from edgevit.targets.fpga.config import OverlayConfig


@dataclass
class EmitContext:
    """Shared state of one compilation (see the module docstring)."""

    program: Program
    cfg: OverlayConfig
    sb: StreamBuilder
    weights: WeightImage
    layout: ActLayout
    pin_budget: int = 0                                         # PARAM words that shared blocks may pin
    pinned: dict[bytes, int] = field(default_factory=dict)      # content of a pinned block -> its base

    def info(self, tensor: str) -> TensorInfo:
        """The TensorInfo of a Program tensor."""
        return self.program.tensors[tensor]

    def act(self, tensor: str) -> int:
        """ACT byte address of a tensor; FpgaCompileError when it does not live in ACT."""
        if tensor not in self.layout.addr:
            raise FpgaCompileError(f"tensor {tensor!r} has no ACT buffer (only patch_embed reads the DDR input)")
        return self.layout.addr[tensor]

    def scratch(self, kernel: Kernel, key: str) -> int:
        """ACT byte address of kernel scratch `key` (requested by the op's scratch function)."""
        return self.layout.scratch[(kernel.name, key)]

    def row_bytes(self, tensor: str) -> int:
        """Bytes of one row (last axis) of a tensor."""
        info = self.info(tensor)
        return info.shape[-1] * ITEMSIZE[info.dtype]

    def param(self, nwords: int, build: Callable[[int], np.ndarray]) -> int:
        """Reserve `nwords` PARAM words, fill them with build(base) (int32 [nwords]; `base` lets a block
        point at its own tables), add them to the weight image and LOAD them. Returns base."""
        base = self.sb.reserve_param(nwords)
        block = np.asarray(build(base), dtype=np.int64)
        if block.shape != (nwords,):
            raise FpgaCompileError(f"PARAM block has {block.size} words, expected {nwords}")
        dram = self.weights.add(block.astype("<i4"))
        self.sb.load_param(base, dram, nwords)
        return base

    def shared_param(self, block: np.ndarray) -> int:
        """PARAM base of a constant block that several kernels read (the softmax score table): LOADed once
        and pinned at the top of PARAM when it fits `pin_budget` words of pinned blocks (later requests of
        the same content reuse it), else loaded into the ring like `param`."""
        block = np.asarray(block, dtype=np.int64)
        key = block.astype("<i4").tobytes()
        if key in self.pinned:
            return self.pinned[key]
        base = self.sb.pin_param(block.size, self.pin_budget)
        if base is None:
            return self.param(block.size, lambda _: block)
        self.sb.load_param(base, self.weights.add(block.astype("<i4")), block.size)
        self.pinned[key] = base
        return base

    def const_rows(self, data: np.ndarray, sram: int, row_bytes: int, sram_stride: int) -> None:
        """LOAD a constant array (its little-endian bytes, rows of `row_bytes`) from the weight image to ACT."""
        raw = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"))).tobytes()
        rows = len(raw) // row_bytes
        dram = self.weights.add(raw)
        self.sb.load_act(dram, sram, rows, row_bytes, row_bytes, sram_stride)
