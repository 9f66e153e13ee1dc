"""The host runner: the artifact's C sources built with this machine's gcc and run natively.

    make -C <tmp>/host CC=gcc [EXTRA_CFLAGS="-fsanitize=address,undefined ..."] EDGEVIT_COUNT=N
    <tmp>/host/model_host            # prints the EV lines (ticks 0)

It checks the generated C (bit-exact outputs; with sanitize=True also out-of-bounds accesses,
undefined behaviour and leaks) without a cross toolchain or an emulator. It measures nothing:
ticks are 0 and there is no instruction count.
"""

from __future__ import annotations

from pathlib import Path

from edgevit.backend.errors import RunFailedError
from edgevit.backend.process import Tool, run_make
from edgevit.backend.runner import SANITIZE_CFLAGS
from edgevit.targets.mcu.runners.mcu_runner import McuRunner, mcu_tool

EXECUTABLE = "model_host"


class HostRunner(McuRunner):
    """Build with host gcc (optionally with ASan/UBSan) and run natively."""

    name = "host"
    description = "this machine's gcc, natively; --sanitize adds ASan/UBSan"
    build_dirs = ("src", "firmware", "host")  # host/Makefile compiles firmware/main.c

    @classmethod
    def supports_sanitize(cls) -> bool:
        """The host runner can build with sanitizers."""
        return True

    def tools(self, profile) -> list[Tool]:
        """make and gcc."""
        return [mcu_tool("make", "to build the host program"), mcu_tool("gcc", "the host C compiler")]

    def required_files(self) -> tuple[str, ...]:
        """The host project's Makefile."""
        return ("host/Makefile",)

    def build(self, workdir: Path, profile, count: int) -> tuple[list[str], Path]:
        """`make -C workdir/host` for `count` vectors; returns ([model_host], workdir/host)."""
        variables = {"CC": "gcc", "EDGEVIT_COUNT": str(count)}
        if self.sanitize:
            variables["EXTRA_CFLAGS"] = SANITIZE_CFLAGS
        host = workdir / "host"
        run_make(host, variables, what="host build (host/Makefile)")
        exe = host / EXECUTABLE
        if not exe.is_file():
            raise RunFailedError(f"host/Makefile finished without producing host/{EXECUTABLE}; the artifact's "
                                 "host project is broken: recompile it with `edgevit compile`")
        return [str(exe)], host

    def source(self, profile) -> str:
        """e.g. "host model_host (ASan/UBSan)"."""
        return f"host {EXECUTABLE}" + (" (ASan/UBSan)" if self.sanitize else "")
