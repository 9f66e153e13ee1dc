"""McuTarget: the Target of `kind: mcu` profiles (Cortex-M microcontrollers).

`estimate` is the planner's figures (no code generation; NAS calls it thousands of times):
arena, lower bound, naive plan, stack, weights, code estimate and MACs, with the profile's SRAM
and flash as budgets; `Costs.plan` carries the MemoryPlan so that `build` (and the compile
command) use the very plan whose numbers were reported.
"""

from __future__ import annotations

from pathlib import Path

from edgevit.errors import UserInputError
from edgevit.targets.base import Costs, Target
from edgevit.targets.planner import MemoryPlan, plan_program


def _mcu_profile(profile):
    """A loaded Profile (names and YAML paths are loaded) that must be of kind "mcu"."""
    if isinstance(profile, (str, Path)):
        from edgevit.profiles.profile import load_profile

        profile = load_profile(profile)
    if profile.kind != "mcu":
        raise UserInputError(f"profile {profile.name!r} is a {profile.kind!r} device; the MCU target needs a "
                             "profile with `kind: mcu` (see `edgevit profiles`)")
    return profile


class McuTarget(Target):
    """Cortex-M microcontrollers: one static arena, weights in flash, TVM-generated C kernels."""

    kind = "mcu"

    def plan(self, program, profile, budget: int | None = None) -> MemoryPlan:
        """The static memory plan of `program` on `profile` (planner.plan_program)."""
        return plan_program(program, _mcu_profile(profile), budget=budget)

    def estimate(self, program, profile) -> Costs:
        """Costs of `program` on an MCU `profile` straight from its memory plan (no code generation):
        sram_budget is the profile's SRAM (arena + stack must fit), flash_budget its flash."""
        profile = _mcu_profile(profile)
        plan = plan_program(program, profile)
        return Costs(arena_bytes=plan.arena_bytes, lower_bound_bytes=plan.lower_bound_bytes,
                     naive_bytes=plan.naive_bytes, stack_bytes=plan.stack_bytes, weight_bytes=plan.weight_bytes,
                     code_bytes=plan.code_bytes, flash_bytes=plan.flash_bytes, macs=program.macs(),
                     sram_budget=profile.memory.sram_bytes, flash_budget=profile.memory.flash_bytes,
                     latency_ms=None, plan=plan)

    def build(self, program, profile, outdir: Path, plan: MemoryPlan | None = None, **options):
        """Write the artifact of `program` into `outdir` with `plan` (default: planned here) through
        `edgevit.targets.mcu.emit.emit_artifact(program, profile, plan, outdir, **options)`;
        returns what that returns (the manifest)."""
        from edgevit.targets.mcu.emit import emit_artifact

        profile = _mcu_profile(profile)
        plan = plan if plan is not None else plan_program(program, profile)
        return emit_artifact(program, profile, plan, Path(outdir), **options)
