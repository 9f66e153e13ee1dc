"""CpuTarget: the Target of `kind: cpu` profiles (x86-64 hosts, Cortex-A boards), a static C library.

`estimate` is the shared memory plan (backend/planner.py, 64-byte aligned buffers) and the
constants: one pool "ram" (arena + constants) against the profile's RAM, and `latency_ms` from the
cost model calibrated on the host (latency.py; an uncalibrated extrapolation for other profiles).
`build` compiles the kernels with TVM's LLVM code generation and writes the library artifact
(library.py); Arm profiles are cross-compiled, so any profile compiles on any host, while running
needs a runner that can execute its ISA (runners/host.py).
"""

from __future__ import annotations

from typing import Any

from edgevit.backend.allocate import align
from edgevit.backend.costs import Costs, Pool
from edgevit.backend.planner import ArenaConfig, plan_program
from edgevit.backend.target import Target
from edgevit.errors import UserInputError

ARENA = ArenaConfig(alignment=64)  # model.c's arena: buffers on cache-line (and widest vector) boundaries
WEIGHT_ALIGN = 8  # c_array aligns every constant to 8 bytes
BUILD_OPTIONS = ("passes", "pass_reports", "progress", "threads")
MAX_THREADS = 16  # the library's thread pool: edgevit_set_threads clamps to 1..MAX_THREADS


def weight_bytes(program) -> int:
    """Bytes of the Program's constants, each padded to WEIGHT_ALIGN."""
    return sum(align(v.nbytes, WEIGHT_ALIGN) for v in program.consts.values())


class CpuTarget(Target):
    """Linux CPUs (x86-64, Cortex-A): a runtime-free static library with TVM/LLVM kernels."""

    kind = "cpu"
    description = "Linux CPUs (x86-64, Cortex-A): a static C library with LLVM-compiled kernels"
    default_runner = "host"

    def estimate(self, program, profile) -> Costs:
        """Costs of `program` on a cpu `profile`: the pool "ram" (planned arena + constants, no
        code generation), activation_bytes = the arena, latency_ms of one single-threaded run from
        the cost model (latency.predict; None without a calibration), its basis ("calibrated" or
        "extrapolated") and note in the figures."""
        from edgevit.targets.cpu.latency import predict

        profile = self.own_profile(profile)
        plan = plan_program(program, ARENA)
        weights = weight_bytes(program)
        ram = Pool("ram", plan.arena_bytes + weights, int(profile.memory.ram_bytes),
                   f"arena {plan.arena_bytes:,} B + constants {weights:,} B")
        latency = predict(program, profile, plan.steps)
        figures = {"arena_bytes": plan.arena_bytes, "lower_bound_bytes": plan.lower_bound_bytes,
                   "naive_bytes": plan.naive_bytes, "weight_bytes": weights,
                   "latency_basis": latency.basis, "latency_note": latency.note}
        return Costs(pools=(ram,), macs=program.macs(), activation_bytes=plan.arena_bytes, latency_ms=latency.ms,
                     figures=figures, plan=plan)

    def supports(self, program, profile) -> list[str]:
        """Reasons the library cannot run `program`: not exactly one input and one output, or an
        op/dtype without a generic kernel; [] when it can."""
        from edgevit.backend.kernels import UnsupportedKernelError, get_kernel
        from edgevit.lower.ops import kernel_dtype

        reasons = []
        if len(program.inputs) != 1 or len(program.outputs) != 1:
            reasons.append(f"the library API takes one input and gives one output (the program has inputs "
                           f"{list(program.inputs)}, outputs {list(program.outputs)})")
        for key in sorted({(k.op, kernel_dtype(k, [program.tensors[t] for t in k.inputs])) for k in program.kernels}):
            try:
                get_kernel(*key)
            except UnsupportedKernelError as e:
                reasons.append(str(e))
        return reasons

    def check_profile(self, profile) -> None:
        """UserInputError when no code can be generated for `profile` (its LLVM target: a core that is not
        x86-64 / aarch64, ISA names unknown to LLVM, a native profile this host cannot run)."""
        from edgevit.targets.cpu.isa import llvm_target

        llvm_target(self.own_profile(profile))

    def check_options(self, options: dict[str, Any]) -> None:
        """Known options only (BUILD_OPTIONS); `threads` (the library's default thread count) an
        integer 1..MAX_THREADS."""
        unknown = sorted(set(options) - set(BUILD_OPTIONS))
        if unknown:
            raise UserInputError(f"the cpu target has no build option(s) {unknown}; it takes {list(BUILD_OPTIONS)}")
        threads = options.get("threads", 1)
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
            raise UserInputError(f"--threads {threads!r}: the library's default thread count must be an integer "
                                 f"1..{MAX_THREADS}")

    def build(self, program, profile, costs: Costs, vectors, **options) -> dict[str, str | bytes]:
        """Every file of the library artifact (library.library_files) with the plan in `costs`
        (planned here when `costs` carries none). Options: passes, pass_reports, progress, threads."""
        from edgevit.targets.cpu.library import library_files

        self.check_options(options)
        profile = self.own_profile(profile)
        plan = costs.plan if costs is not None and costs.plan is not None else plan_program(program, ARENA)
        return library_files(program, profile, plan, weight_bytes(program), vectors, **options)

    def over_budget_hint(self, costs: Costs, program) -> str:
        """The largest arena buffers at the plan's peak step and the passes that shrink RAM (arena and
        constants both live there)."""
        from edgevit.backend.budget_hints import reduce_hint
        from edgevit.backend.planner import largest_buffers

        buffers = f"Largest arena buffers {largest_buffers(costs.plan, program)}. " if costs.plan is not None else ""
        return f"{buffers}RAM holds the arena and the constants: {reduce_hint('both', program)}."

    def default_runner_for(self, profile) -> str:
        """host for x86-64 profiles, qemu (user mode: outputs only) for the Arm ones, whatever machine
        compiles: the artifact must not depend on it."""
        from edgevit.targets.cpu.isa import ARM64, profile_arch

        return "qemu" if profile_arch(self.own_profile(profile)) == ARM64 else self.default_runner

    def runners(self) -> dict[str, type]:
        """host (build with the profile's toolchain and run natively), qemu (user-mode emulation
        of the Arm profiles) and ssh (a real board: built here, run there)."""
        from edgevit.targets.cpu.runners.host import CpuHostRunner
        from edgevit.targets.cpu.runners.qemu import CpuQemuRunner
        from edgevit.targets.cpu.runners.ssh import CpuSshRunner

        return {r.name: r for r in (CpuHostRunner, CpuQemuRunner, CpuSshRunner)}
