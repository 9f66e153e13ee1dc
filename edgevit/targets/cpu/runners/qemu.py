"""The qemu runner of cpu artifacts: cross-built with the profile's toolchain, run under qemu user mode.

    make -C <tmp>                                   # e.g. aarch64-linux-gnu-gcc, linked -static
    qemu-aarch64 -cpu <profile emulator.cpu> <tmp>/check COUNT

For the Arm profiles (`emulator.kind: qemu-user`) on any host: it checks the outputs bit for bit.
Emulated time means nothing, so nothing is timed (ticks are 0) and the bench program is not run:
--bench-runs / --threads are refused. Profiles that run natively are refused (use the host runner).
"""

from __future__ import annotations

from pathlib import Path

from edgevit.backend.process import Tool
from edgevit.errors import UserInputError
from edgevit.targets.cpu.runners.cpu_runner import EXECUTABLE, CpuRunner

CROSS_PACKAGES = {"aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu"}


class CpuQemuRunner(CpuRunner):
    """Cross-build the check program and run it under qemu user mode (outputs only, no timing)."""

    name = "qemu"
    description = "qemu user mode (qemu-aarch64) for the Arm profiles; outputs only, emulated time means nothing"
    no_bench_reason = "emulated time means nothing: it checks outputs only"

    def tools(self, profile) -> list[Tool]:
        """make, the profile's cross compiler and its qemu user-mode binary."""
        cc = profile.toolchain.cc
        return [Tool("make", "to build the library", "make"),
                Tool(cc, "the profile's cross C compiler", CROSS_PACKAGES.get(cc, cc)),
                Tool(profile.emulator.binary or "qemu-aarch64", "qemu user mode", "qemu-user")]

    def check(self, artifact, profile) -> None:
        """UserInputError for a profile that qemu user mode does not stand in for, then tools and files."""
        if profile.emulator.kind != "qemu-user":
            raise UserInputError(f"profile {profile.name!r} runs natively (emulator.kind: {profile.emulator.kind}); "
                                 "use --runner host")
        super().check(artifact, profile)

    def build(self, workdir: Path, profile, count: int) -> tuple[list[str], Path]:
        """`make -C workdir`; returns ([qemu, -cpu, CPU, workdir/check, count], workdir)."""
        exe = self.make_check(workdir, {}, "library cross build (Makefile)")
        cpu = ["-cpu", profile.emulator.cpu] if profile.emulator.cpu else []
        return [profile.emulator.binary or "qemu-aarch64", *cpu, str(exe), str(count)], workdir

    def uncounted_reason(self, profile, ticks: list[int]) -> str | None:
        """Always: the run is emulated."""
        return ("emulated time means nothing: the qemu runner checks outputs only and does not run the bench "
                "program (measure latency with --runner host or ssh on the real CPU)")

    def machine(self, profile) -> str | None:
        """e.g. "qemu-user -cpu max"."""
        return profile.emulator_label()

    def source(self, profile) -> str:
        """e.g. "qemu-aarch64 check"."""
        return f"{profile.emulator.binary or 'qemu-aarch64'} {EXECUTABLE}"
