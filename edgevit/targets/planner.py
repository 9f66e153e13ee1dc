"""Static memory planner: liveness, in-place reuse, chunked row-wise chains, offsets in one arena.

See docs/mcu-backend.md ("Memory plan") for the contract. (Implementation in progress.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALIGN = 8
STACK_BYTES = 8192  # stack reserved beside the arena (the firmware's linker script uses the same figure)


@dataclass(frozen=True)
class Buffer:
    """A region of the arena: [offset, offset + size), live from step `first` to step `last` (inclusive).

    kind: "tensor" (a whole tensor), "chunk" (a chain intermediate, chunk_rows rows) or "scratch".
    """

    name: str
    offset: int
    size: int
    first: int
    last: int
    kind: str = "tensor"


@dataclass(frozen=True)
class Step:
    """What the driver executes: program kernels `kernels` (indices, in order); with `chunk_rows`
    they form a chain of row-wise kernels run on `chunk_rows` rows at a time over `rows` rows."""

    kernels: tuple[int, ...]
    chunk_rows: int | None = None
    rows: int | None = None


@dataclass
class MemoryPlan:
    """The planner's result; every memory figure of the backend comes from here."""

    steps: list[Step]
    buffers: dict[str, Buffer]
    tensor_buffer: dict[str, str]  # tensor name -> buffer name (aliases and in-place share)
    scratch_buffer: dict[str, str]  # kernel name -> its scratch buffer name (kernels with scratch)
    arena_bytes: int
    lower_bound_bytes: int
    naive_bytes: int
    weight_bytes: int
    code_bytes: int
    stack_bytes: int = STACK_BYTES
    timeline: list[int] = field(default_factory=list)  # live bytes per step
    naive_timeline: list[int] = field(default_factory=list)  # live bytes per kernel, naive plan

    @property
    def flash_bytes(self) -> int:
        """Weights (padded) plus the code estimate."""
        return self.weight_bytes + self.code_bytes

    def offset_of(self, tensor: str) -> int:
        """Arena offset of a tensor's buffer."""
        return self.buffers[self.tensor_buffer[tensor]].offset

    def memory_dict(self) -> dict[str, Any]:
        """The manifest's `memory` section."""
        return {"arena_bytes": self.arena_bytes, "lower_bound_bytes": self.lower_bound_bytes,
                "naive_bytes": self.naive_bytes, "flash_bytes": self.flash_bytes,
                "weight_bytes": self.weight_bytes, "code_bytes": self.code_bytes,
                "stack_bytes": self.stack_bytes}


def plan_program(program, profile=None, budget: int | None = None) -> MemoryPlan:
    """Plan `program`'s arena (see the module docstring). Not implemented yet."""
    raise NotImplementedError("the planner is being written")
