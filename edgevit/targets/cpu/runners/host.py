"""The host runner of cpu artifacts: `make` with the profile's toolchain, then `./check COUNT` natively.

    make -C <tmp> [EXTRA_CFLAGS="-fsanitize=address,undefined ..."]
    <tmp>/check COUNT        # prints the EV lines (ticks 0)

Profiles whose code this machine cannot run (another architecture, a missing ISA extension:
targets/cpu/isa.check_native) are refused before anything is built. It checks outputs only:
ticks are 0 and nothing is timed yet.
"""

from __future__ import annotations

from pathlib import Path

from edgevit.backend.process import Tool
from edgevit.backend.runner import SANITIZE_CFLAGS
from edgevit.errors import UserInputError
from edgevit.targets.cpu.isa import check_native
from edgevit.targets.cpu.runners.cpu_runner import EXECUTABLE, CpuRunner



class CpuHostRunner(CpuRunner):
    """Build the library and its check program with the profile's compiler and run it natively."""

    name = "host"
    description = "this machine, natively (the profile's toolchain); --sanitize adds ASan/UBSan"

    @classmethod
    def supports_sanitize(cls) -> bool:
        """The host runner can build with sanitizers."""
        return True

    def tools(self, profile) -> list[Tool]:
        """make and the profile's C compiler."""
        return [Tool("make", "to build the library", "make"),
                Tool(profile.toolchain.cc, "the profile's C compiler", "gcc")]

    def check(self, artifact, profile) -> None:
        """UserInputError when this host cannot run the profile's code (naming what it lacks and the
        qemu runner for emulated profiles), then the tools and files."""
        try:
            check_native(profile)
        except UserInputError as e:
            if profile.emulator.kind != "qemu-user":
                raise
            raise UserInputError(f"{e}: try `edgevit run DIR --runner qemu`") from None
        super().check(artifact, profile)

    def build(self, workdir: Path, profile, count: int) -> tuple[list[str], Path]:
        """`make -C workdir`; returns ([workdir/check, count], workdir)."""
        variables = {"EXTRA_CFLAGS": SANITIZE_CFLAGS} if self.sanitize else {}
        exe = self.make_check(workdir, variables, "library build (Makefile)")
        return [str(exe), str(count)], workdir

    def source(self, profile) -> str:
        """e.g. "host check (ASan/UBSan)"."""
        return f"host {EXECUTABLE}" + (" (ASan/UBSan)" if self.sanitize else "")
