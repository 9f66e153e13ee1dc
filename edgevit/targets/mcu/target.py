"""McuTarget: the Target of `kind: mcu` profiles (Cortex-M microcontrollers).

`estimate` is the planner's figures (no code generation; NAS calls it thousands of times): the
arena, lower bound, naive plan, the firmware's stack, weights and a code estimate, as the pools
"sram" (arena + stack) and "flash" (weights + code) against the profile's memories. `Costs.plan`
carries the MemoryPlan so that `build` uses the very plan whose numbers were reported.
"""

from __future__ import annotations

from typing import Any

from edgevit.backend.costs import Costs, Pool
from edgevit.backend.target import Target
from edgevit.errors import UserInputError

SCHEDULES = ("fast", "reference")
BUILD_OPTIONS = ("schedule", "passes", "pass_reports", "progress")


def _mcu_profile(profile):
    """A loaded Profile (names and YAML paths are loaded) that must be of kind "mcu"."""
    from pathlib import Path

    if isinstance(profile, (str, Path)):
        from edgevit.profiles.profile import load_profile

        profile = load_profile(profile)
    if profile.kind != "mcu":
        raise UserInputError(f"profile {profile.name!r} is a {profile.kind!r} device; the MCU target needs a "
                             "profile with `kind: mcu` (see `edgevit profiles`)")
    return profile


def costs_of_plan(plan, program, profile, latency_ms: float | None = None) -> Costs:
    """The Costs of a MemoryPlan on an MCU profile: pools sram (arena + stack) and flash (weights + code)."""
    return Costs(pools=(Pool("sram", plan.arena_bytes + plan.stack_bytes, int(profile.memory.sram_bytes),
                             f"arena {plan.arena_bytes:,} B + stack {plan.stack_bytes:,} B"),
                        Pool("flash", plan.flash_bytes, int(profile.memory.flash_bytes),
                             f"weights {plan.weight_bytes:,} B + code {plan.code_bytes:,} B")),
                 macs=program.macs(), activation_bytes=plan.arena_bytes, latency_ms=latency_ms,
                 figures=plan.memory_dict(), plan=plan)


class McuTarget(Target):
    """Cortex-M microcontrollers: one static arena, weights in flash, TVM-generated C kernels."""

    kind = "mcu"
    description = "Cortex-M microcontrollers: runtime-free C firmware"
    default_runner = "qemu"

    def plan(self, program, profile, budget: int | None = None):
        """The static memory plan of `program` on `profile` (planner.plan_program)."""
        from edgevit.backend.planner import plan_program

        return plan_program(program, _mcu_profile(profile), budget=budget)

    def estimate(self, program, profile) -> Costs:
        """Costs of `program` on an MCU `profile` straight from its memory plan (no code generation)."""
        profile = _mcu_profile(profile)
        return costs_of_plan(self.plan(program, profile), program, profile)

    def check_options(self, options: dict[str, Any]) -> None:
        """Known options only; `schedule` one of SCHEDULES."""
        unknown = sorted(set(options) - set(BUILD_OPTIONS))
        if unknown:
            raise UserInputError(f"the mcu target has no build option(s) {unknown}; it takes {list(BUILD_OPTIONS)}")
        if options.get("schedule", "fast") not in SCHEDULES:
            raise UserInputError(f"--schedule {options['schedule']!r}: choose one of {', '.join(SCHEDULES)}")

    def build(self, program, profile, costs: Costs, vectors, **options) -> dict[str, str | bytes]:
        """Every file of the firmware artifact (emit.artifact_files) with the plan in `costs`
        (planned here when `costs` carries none). Options: schedule, passes, pass_reports, progress."""
        from edgevit.targets.mcu.emit import artifact_files

        self.check_options(options)
        profile = _mcu_profile(profile)
        plan = costs.plan if costs is not None and costs.plan is not None else self.plan(program, profile)
        return artifact_files(program, profile, plan, vectors=vectors, **options)

    def over_budget_hint(self, costs: Costs, program) -> str:
        """The largest arena buffers at the plan's peak step."""
        from edgevit.backend.planner import largest_buffers

        return f"Largest arena buffers {largest_buffers(costs.plan, program)}." if costs.plan is not None else ""

    def runners(self) -> dict[str, type]:
        """qemu (the emulated board), host (this machine's gcc) and serial (a real board)."""
        from edgevit.targets.mcu.runners.host import HostRunner
        from edgevit.targets.mcu.runners.qemu import QemuRunner
        from edgevit.targets.mcu.runners.serial import SerialRunner

        return {r.name: r for r in (QemuRunner, HostRunner, SerialRunner)}
