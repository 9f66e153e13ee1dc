"""Costs: what a Program needs on a device, as named resource pools with used / budget.

Every target reports its resources the same way, so budget checks, error messages, NAS
feasibility and reports work for any backend without knowing it:

    Costs(pools=(Pool("sram", 24392, 327680, "arena 16,200 B + stack 8,192 B"),
          Pool("flash", 182000, 1048576, "weights 170,424 B + code 11,576 B")), macs=7_880_000, activation_bytes=16200, latency_ms=None,
          figures={"arena_bytes": 16200, ...})

- `pools`: the resources a device has a budget for (MCU: SRAM and flash; CPU: RAM; FPGA: LUT,
  DSP, BRAM). The first pool is the *memory objective*: the one NAS minimises and reports.
- `activation_bytes`: the planned peak of activation memory (the static arena), the figure
  pass reports show as "peak memory".
- `figures`: the target's own named numbers (JSON-able ints or floats) for manifests/reports.
- `plan`: the target's plan object (e.g. the MemoryPlan), carried to `build` so the artifact
  uses the very plan whose numbers were reported. Never compared or serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pool:
    """One budgeted resource: `used` of `budget` (None: the device sets no limit), in `unit`
    ("B" for bytes, "" for counts such as LUTs); `detail` says what `used` adds up, e.g. "arena 16,200 B + stack 8,192 B"."""

    name: str
    used: int
    budget: int | None
    detail: str = ""
    unit: str = "B"

    @property
    def fits(self) -> bool:
        """True when `used` is within `budget` (always, without a budget)."""
        return self.budget is None or self.used <= self.budget

    def describe(self) -> str:
        """e.g. "sram: arena 16,200 B + stack 8,192 B = 24,392 B > 16,384 B"."""
        what = f"{self.detail} = " if self.detail else ""
        rel = "<=" if self.fits else ">"
        unit = f" {self.unit}" if self.unit else ""
        budget = "no limit" if self.budget is None else f"{self.budget:,}{unit}"
        return f"{self.name}: {what}{self.used:,}{unit} {rel} {budget}"

    def to_dict(self) -> dict[str, Any]:
        """{name, used, budget, unit, detail, fits}."""
        return {"name": self.name, "used": self.used, "budget": self.budget, "unit": self.unit,
                "detail": self.detail, "fits": self.fits}


@dataclass(frozen=True)
class Costs:
    """A Program's costs on a profile (module docstring): resource pools, MACs per inference,
    peak activation bytes, a latency estimate in ms (None without a cost model), named figures."""

    pools: tuple[Pool, ...]
    macs: int
    activation_bytes: int
    latency_ms: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    plan: Any = field(default=None, repr=False, compare=False)

    def pool(self, name: str) -> Pool:
        """The pool called `name`; KeyError listing the pools otherwise."""
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(f"no resource pool {name!r} (have {[p.name for p in self.pools]})")

    @property
    def memory(self) -> Pool:
        """The memory objective: the first pool."""
        return self.pools[0]

    @property
    def over_budget(self) -> list[Pool]:
        """The pools whose use exceeds their budget."""
        return [p for p in self.pools if not p.fits]

    @property
    def fits(self) -> bool:
        """True when every pool is within its budget."""
        return not self.over_budget

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: pools, macs, activation_bytes, latency_ms, fits and the figures (no plan)."""
        return {**self.figures, "pools": [p.to_dict() for p in self.pools], "macs": self.macs,
                "activation_bytes": self.activation_bytes, "latency_ms": self.latency_ms, "fits": self.fits}
