"""McuTarget: the Target of `kind: mcu` profiles (Cortex-M microcontrollers).

`estimate` is the arena plan's figures and the firmware's around it (memory.py; no code
generation, NAS calls it thousands of times): the arena, lower bound, naive plan, the firmware's
stack, weights and a code estimate, as the pools "sram" (arena + stack) and "flash" (weights +
code) against the profile's memories. `Costs.plan` carries the MemoryPlan so that `build` uses
the very plan whose numbers were reported.
"""

from __future__ import annotations

from typing import Any

from edgevit.backend.costs import Costs
from edgevit.backend.target import Target
from edgevit.errors import UserInputError
from edgevit.targets.mcu.memory import memory_figures, memory_pools, plan_memory

SCHEDULES = ("fast", "reference")
BUILD_OPTIONS = ("schedule", "passes", "pass_reports", "progress")


def costs_of_plan(plan, program, profile) -> Costs:
    """The Costs of a MemoryPlan on an MCU profile: pools sram (arena + stack) and flash (weights +
    code), the manifest's memory figures (memory.memory_figures), the latency of the core's model
    (latency.estimate_latency_ms: None for an uncalibrated core or a float Program), the plan."""
    from edgevit.targets.mcu.latency import estimate_latency_ms

    figures = memory_figures(program, plan, profile)
    return Costs(pools=memory_pools(figures, profile), macs=program.macs(), activation_bytes=plan.arena_bytes,
                 latency_ms=estimate_latency_ms(program, plan.steps, profile), figures=figures, plan=plan)


class McuTarget(Target):
    """Cortex-M microcontrollers: one static arena, weights in flash, TVM-generated C kernels."""

    kind = "mcu"
    description = "Cortex-M microcontrollers: runtime-free C firmware"
    default_runner = "qemu"

    def plan(self, program, profile, budget: int | None = None):
        """The static memory plan of `program` on `profile` (memory.plan_memory)."""
        self.own_profile(profile)
        return plan_memory(program, budget=budget)

    def estimate(self, program, profile) -> Costs:
        """Costs of `program` on an MCU `profile` straight from its memory plan (no code generation)."""
        profile = self.own_profile(profile)
        return costs_of_plan(self.plan(program, profile), program, profile)

    def supports(self, program, profile) -> list[str]:
        """Reasons the firmware cannot run `program`: not exactly one input and one output, or a kernel
        whose op/dtype has no kernel (generic or MCU override); [] when it can."""
        from edgevit.backend.kernels import UnsupportedKernelError, get_kernel
        from edgevit.lower.ops import kernel_dtype
        from edgevit.targets.mcu.kernels import KERNEL_PACKAGE

        reasons = []
        if len(program.inputs) != 1 or len(program.outputs) != 1:
            reasons.append(f"the firmware API takes one input and gives one output (the program has inputs "
                           f"{list(program.inputs)}, outputs {list(program.outputs)})")
        checked: set[tuple[str, str]] = set()
        for k in program.kernels:
            key = (k.op, kernel_dtype(k, [program.tensors[t] for t in k.inputs]))
            if key in checked:
                continue
            checked.add(key)
            try:
                get_kernel(*key, overrides=KERNEL_PACKAGE)
            except UnsupportedKernelError as e:
                reasons.append(f"kernel {k.name!r}: {e}")
        return reasons

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
        profile = self.own_profile(profile)
        plan = costs.plan if costs is not None and costs.plan is not None else self.plan(program, profile)
        return artifact_files(program, profile, plan, vectors=vectors, **options)

    def over_budget_hint(self, costs: Costs, program) -> str:
        """Per pool over budget, what fills it and the passes that shrink it: SRAM (the largest arena
        buffers at the plan's peak step; activations), flash (the weights' bytes; weights only)."""
        from edgevit.backend.budget_hints import reduce_hint
        from edgevit.backend.planner import largest_buffers

        over = {p.name for p in costs.over_budget}
        hints = []
        if "sram" in over:
            buffers = f"Largest arena buffers {largest_buffers(costs.plan, program)}. " if costs.plan is not None else ""
            hints.append(f"{buffers}SRAM: {reduce_hint('activations', program)}.")
        if "flash" in over:
            flash = costs.pool("flash")
            weights = costs.figures.get("weight_bytes")
            share = f"The weights take {weights:,} B of the {flash.budget:,} B flash. " if weights is not None else ""
            hints.append(f"{share}Flash: {reduce_hint('weights', program)}.")
        return " ".join(hints)

    def flash(self, artifact, **options) -> dict:
        """Build the artifact's UART firmware for its profile's board and flash it (flash.flash_artifact);
        options: tool, probe, stage, timeout. Returns {tool, image, bytes, seconds, profile, probe, method}."""
        from edgevit.targets.mcu.flash import flash_artifact

        unknown = sorted(set(options) - {"tool", "probe", "stage", "timeout"})
        if unknown:
            raise UserInputError(f"flashing an mcu artifact takes the options tool, probe, stage and timeout "
                                 f"(got {unknown})")
        return flash_artifact(artifact, artifact.profile(), **options)

    def serve_emulated(self, artifact, port: int = 0, **options) -> None:
        """Run the artifact's UART firmware on its profile's QEMU board, the UART on socket://127.0.0.1:`port`,
        until interrupted (uart_firmware.serve_emulated); options: ready(url), stage(message)."""
        from edgevit.targets.mcu.uart_firmware import serve_emulated

        unknown = sorted(set(options) - {"ready", "stage"})
        if unknown:
            raise UserInputError(f"serving an mcu artifact takes the options ready and stage (got {unknown})")
        serve_emulated(artifact, port, **options)

    def runners(self) -> dict[str, type]:
        """qemu (the emulated board), host (this machine's gcc) and serial (a real board)."""
        from edgevit.targets.mcu.runners.host import HostRunner
        from edgevit.targets.mcu.runners.qemu import QemuRunner
        from edgevit.targets.mcu.runners.serial import SerialRunner

        return {r.name: r for r in (QemuRunner, HostRunner, SerialRunner)}
