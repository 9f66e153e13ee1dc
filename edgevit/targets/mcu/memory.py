"""The memory of an MCU firmware: what it needs beside the shared planner's arena.

SRAM holds the static arena (backend/planner.py, planned with `ARENA`) and the stack the
firmware's linker script reserves (`STACK_BYTES`); flash holds the weights (weights.c: each
constant padded to `WEIGHT_ALIGN` bytes) and the code (codesize.py's estimate). `memory_figures`
is the manifest's `memory` section and `Costs.figures`; `memory_pools` the sram and flash pools.
"""

from __future__ import annotations

from edgevit.backend.allocate import align
from edgevit.backend.costs import Pool
from edgevit.backend.planner import ArenaConfig, MemoryPlan, plan_program
from edgevit.targets.mcu.codesize import estimate_code_bytes

STACK_BYTES = 8192  # stack reserved beside the arena (templates/linker.ld gets this figure)
WEIGHT_ALIGN = 8  # weights.c pads every constant array to this many bytes
ARENA = ArenaConfig(alignment=8)  # model.c's arena: every buffer offset 8-byte aligned


def plan_memory(program, budget: int | None = None) -> MemoryPlan:
    """The arena plan of `program` on an MCU (shared planner with `ARENA`); `budget` (arena bytes)
    is recorded in the plan, never used."""
    return plan_program(program, ARENA, budget=budget)


def weight_bytes(program) -> int:
    """Flash bytes of the Program's constants, each padded to WEIGHT_ALIGN."""
    return sum(align(v.nbytes, WEIGHT_ALIGN) for v in program.consts.values())


def memory_figures(program, plan: MemoryPlan, profile=None) -> dict[str, int]:
    """The manifest's `memory` section for `program` run as `plan`: arena_bytes, lower_bound_bytes,
    naive_bytes (the plan's), flash_bytes = weight_bytes + code_bytes (code: codesize's estimate;
    `profile` is passed on to it) and stack_bytes."""
    weights, code = weight_bytes(program), estimate_code_bytes(program, plan.steps, profile)
    return {"arena_bytes": plan.arena_bytes, "lower_bound_bytes": plan.lower_bound_bytes,
            "naive_bytes": plan.naive_bytes, "flash_bytes": weights + code, "weight_bytes": weights,
            "code_bytes": code, "stack_bytes": STACK_BYTES}


def memory_pools(figures: dict[str, int], profile) -> tuple[Pool, Pool]:
    """The pools "sram" (arena + stack) and "flash" (weights + code) of `memory_figures` against the
    profile's SRAM and flash."""
    arena, stack = figures["arena_bytes"], figures["stack_bytes"]
    return (Pool("sram", arena + stack, int(profile.memory.sram_bytes), f"arena {arena:,} B + stack {stack:,} B"),
            Pool("flash", figures["flash_bytes"], int(profile.memory.flash_bytes),
                 f"weights {figures['weight_bytes']:,} B + code {figures['code_bytes']:,} B"))
