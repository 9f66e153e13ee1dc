"""The Target interface (DESIGN.md "Contracts"): estimate, build, runner; and the lookup by profile kind.

`estimate(program, profile)` is what NAS calls thousands of times: memory figures straight from
the static memory planner (no code generation). `build` writes the artifact directory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevit.errors import UserInputError


@dataclass(frozen=True)
class Costs:
    """A Program's costs on a profile, in bytes / MACs / ms (latency: None until a cost model exists).

    arena_bytes: the planned activation arena; lower_bound_bytes: the largest simultaneously
    live set; naive_bytes: the TFLite-Micro-style plan's arena; stack_bytes: the stack reserved
    beside the arena; flash_bytes = weight_bytes + code_bytes. fits_sram / fits_flash: against
    the profile's SRAM (arena + stack) and flash.
    """

    arena_bytes: int
    lower_bound_bytes: int
    naive_bytes: int
    stack_bytes: int
    weight_bytes: int
    code_bytes: int
    flash_bytes: int
    macs: int
    sram_budget: int
    flash_budget: int
    latency_ms: float | None = None
    plan: Any = field(default=None, repr=False, compare=False)

    @property
    def sram_bytes(self) -> int:
        """Arena plus reserved stack: what must fit the device's SRAM."""
        return self.arena_bytes + self.stack_bytes

    @property
    def fits_sram(self) -> bool:
        """True when arena + stack fit the profile's SRAM."""
        return self.sram_bytes <= self.sram_budget

    @property
    def fits_flash(self) -> bool:
        """True when weights + code fit the profile's flash."""
        return self.flash_bytes <= self.flash_budget

    @property
    def fits(self) -> bool:
        """True when both budgets hold."""
        return self.fits_sram and self.fits_flash

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able figures (no plan)."""
        return {"arena_bytes": self.arena_bytes, "lower_bound_bytes": self.lower_bound_bytes,
                "naive_bytes": self.naive_bytes, "stack_bytes": self.stack_bytes,
                "weight_bytes": self.weight_bytes, "code_bytes": self.code_bytes,
                "flash_bytes": self.flash_bytes, "macs": self.macs, "sram_budget": self.sram_budget,
                "flash_budget": self.flash_budget, "latency_ms": self.latency_ms, "fits": self.fits}


class Target(ABC):
    """A backend: fast cost estimates, artifact builds and the runners that execute artifacts."""

    kind: str = ""

    @abstractmethod
    def estimate(self, program, profile) -> Costs:
        """Costs of `program` on `profile` without generating code."""

    @abstractmethod
    def build(self, program, profile, outdir: Path, **options) -> dict[str, Any]:
        """Write the artifact for `program` into `outdir` (a fresh directory); return its manifest."""


def get_target(profile) -> Target:
    """The Target for a profile's kind ("mcu" for now)."""
    if profile.kind == "mcu":
        from edgevit.targets.mcu.target import McuTarget

        return McuTarget()
    raise UserInputError(f"profile {profile.name!r} is a {profile.kind!r} device; only 'mcu' profiles can be "
                         "compiled so far (cpu and fpga targets come later)")
