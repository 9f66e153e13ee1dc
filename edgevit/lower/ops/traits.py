"""PlanTraits: what a memory planner needs to know about an op (docs/mcu-backend.md, "Memory plan").

An op declares them in its `OpDef(traits=...)`; the static planner (backend/planner.py) reads
them to decide which tensors may share a buffer, which kernels may run on chunks of rows and how
much working memory a kernel needs beside its inputs and outputs. Every backend's kernel for the
op must honour them (a streamed kernel uses exactly the declared scratch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgevit.lower.program import Kernel, TensorInfo

ScratchFn = Callable[[Kernel, list[TensorInfo], list[TensorInfo], "int | None"], int]


def no_scratch(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo], rows: int | None) -> int:
    """Scratch function of ops that need none: 0 bytes."""
    return 0


@dataclass(frozen=True)
class PlanTraits:
    """How an op's kernel may be placed in memory (no code generation involved).

    inplace: input indices whose buffer output 0 may take over when that input dies here.
    alias: output 0 is input 0 reinterpreted (no code, same buffer).
    row_wise: output row i depends only on row i of every input (rows = first axis), so
        the kernel may run on chunks of rows.
    scratch: bytes of working memory the kernel needs for `rows` rows (None = all rows),
        `scratch(kernel, in_infos, out_infos, rows)`.
    """

    inplace: tuple[int, ...] = ()
    alias: bool = False
    row_wise: bool = False
    scratch: ScratchFn = no_scratch
