"""The QEMU runner: the artifact's firmware built with the profile's cross toolchain and run
on the QEMU board that stands in for the device (profile `emulator`).

    make -C <tmp>/firmware EDGEVIT_COUNT=N           # -> firmware.elf (arm-none-eabi-gcc, newlib rdimon)
    qemu-system-arm -M <machine> -display none -monitor none -semihosting -icount shift=0 \\
        -kernel firmware.elf                          # prints the EV lines over semihosting

Counting work: under `-icount shift=0` every guest instruction advances virtual time by
exactly 1 ns, and SysTick (processor clock source) counts at the board's system clock, so
one SysTick tick is a fixed number of executed instructions (INSTRUCTIONS_PER_TICK). The EV
ticks therefore give an exact, deterministic instruction count; QEMU models no pipeline,
caches or wait states, so cycles (and latency) are only estimated from it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from edgevit.errors import UserInputError
from edgevit.backend.artifact import Artifact
from edgevit.backend.errors import RunFailedError, ToolchainError
from edgevit.backend.process import Tool, run_make
from edgevit.backend.runner import PROFILE_STEPS_CFLAGS
from edgevit.targets.mcu.runners.mcu_runner import APT_PACKAGES, McuRunner, mcu_tool

# Instructions executed per SysTick tick under `-icount shift=0` (1 ns per instruction), i.e.
# 1e9 / the board's SysTick clock in Hz. Measured on QEMU 7.2 (Debian 12) with a calibration
# firmware (tests/targets/mcu/runners/calibration.py, re-run by the slow test
# tests/targets/mcu/runners/test_qemu_calibration.py):
# SysTick CSR=5 (processor clock, no interrupt), then a `subs; bne` loop of 100,000 and 300,000
# iterations; the difference of 400,000 instructions took 10,000 ticks on every mps2 board
# (25 MHz) and 12,800 ticks on mps3-an547 (32 MHz); a 4-instruction loop gave the same ratios.
INSTRUCTIONS_PER_TICK = {
    "mps2-an385": 40.0,  # Cortex-M3
    "mps2-an386": 40.0,  # Cortex-M4
    "mps2-an500": 40.0,  # Cortex-M7
    "mps3-an547": 31.25,  # Cortex-M55
}

# Default time limit: QEMU with -icount runs a real firmware ~14.5x slower than its virtual
# clock (measured), i.e. ~14.5 ns of wall time per guest instruction; untuned int8 C
# takes up to ~25 instructions per MAC; x3 safety for a loaded machine.
ICOUNT_WALL_NS_PER_INSTRUCTION = 14.5
INSTRUCTIONS_PER_MAC_GUESS = 25
SAFETY = 3.0
BASE_TIMEOUT_S = 60.0
MIN_PER_VECTOR_S = 2.0
UNKNOWN_MACS_PER_VECTOR_S = 30.0
FIRMWARE = "firmware.elf"
LATENCY_NOTE = ("estimate: instructions counted by QEMU (-icount) at the profile's clock, assuming 1 instruction "
                "per cycle; QEMU models no pipeline, caches or flash wait states")


class QemuRunner(McuRunner):
    """Cross-build the firmware and run it on the profile's emulated board."""

    name = "qemu"
    description = "the profile's emulated board (qemu-system-arm, -icount instruction counts)"
    counts_instructions = True
    latency_note = LATENCY_NOTE

    def tools(self, profile) -> list[Tool]:
        """make, the profile's cross compiler and its QEMU binary."""
        _require_qemu_profile(profile)
        return [mcu_tool("make", "to build the firmware"),
                mcu_tool(profile.toolchain.cc, f"the cross compiler of profile {profile.name}"),
                mcu_tool(emulator_binary(profile), f"the emulator of profile {profile.name}")]

    def required_files(self) -> tuple[str, ...]:
        """The firmware project's Makefile."""
        return ("firmware/Makefile",)

    def check(self, artifact: Artifact, profile) -> None:
        """Tools on PATH, newlib's semihosting library present, firmware/Makefile listed."""
        super().check(artifact, profile)
        _require_newlib(profile.toolchain.cc)

    def default_timeout(self, artifact: Artifact, profile, count: int) -> float:
        """60 s plus, per vector, the estimated wall time of its instructions under -icount (x3)."""
        macs = artifact.macs_per_inference()
        if macs is None:
            per_vector = UNKNOWN_MACS_PER_VECTOR_S
        else:
            seconds = macs * INSTRUCTIONS_PER_MAC_GUESS * ICOUNT_WALL_NS_PER_INSTRUCTION * 1e-9 * SAFETY
            per_vector = max(MIN_PER_VECTOR_S, seconds)
        return BASE_TIMEOUT_S + count * per_vector

    def instructions_per_tick(self, profile) -> float | None:
        """From INSTRUCTIONS_PER_TICK by QEMU machine (None for an uncalibrated machine)."""
        return INSTRUCTIONS_PER_TICK.get(profile.emulator.machine)

    def uncounted_reason(self, profile, ticks: list[int]) -> str | None:
        """An uncalibrated QEMU machine, or a firmware that reported no ticks (None: ticks count)."""
        if self.instructions_per_tick(profile) is None:
            return (f"QEMU machine {profile.emulator.machine!r} has no calibrated instructions-per-tick figure "
                    "(edgevit/targets/mcu/runners/qemu.py)")
        if not any(ticks):
            return "the firmware reported 0 SysTick ticks"
        return None

    @classmethod
    def supports_step_profile(cls) -> bool:
        """The firmware can time every plan step in SysTick ticks (EV-STEPS lines)."""
        return True

    def step_tick_seconds(self, profile) -> float | None:
        """Instructions per SysTick tick at the profile's clock (1 instruction per cycle)."""
        per_tick = self.instructions_per_tick(profile)
        return None if per_tick is None else per_tick / float(profile.clock_hz)

    def step_note(self, profile) -> str:
        """Per-step instructions counted by QEMU, as ms at the profile's clock."""
        return ("instructions of each plan step counted by QEMU (-icount, SysTick ticks around the step), in ms at the "
                "profile's clock assuming 1 instruction per cycle")

    def build(self, workdir: Path, profile, count: int) -> tuple[list[str], Path]:
        """`make -C workdir/firmware` for `count` vectors (with profile_steps: EXTRA_CFLAGS=-DEDGEVIT_PROFILE_STEPS);
        returns the QEMU command and its cwd."""
        firmware = workdir / "firmware"
        variables = {"EDGEVIT_COUNT": str(count)}
        if self.profile_steps:
            variables["EXTRA_CFLAGS"] = PROFILE_STEPS_CFLAGS
        run_make(firmware, variables, what="firmware build (firmware/Makefile)")
        if not (firmware / FIRMWARE).is_file():
            raise RunFailedError(f"firmware/Makefile finished without producing firmware/{FIRMWARE}; the "
                                 "artifact's firmware project is broken: recompile it with `edgevit compile`")
        return qemu_command(profile, firmware / FIRMWARE), firmware

    def source(self, profile) -> str:
        """e.g. "qemu-system-arm -M mps2-an500"."""
        return f"{emulator_binary(profile)} -M {profile.emulator.machine}"


def emulator_binary(profile) -> str:
    """The QEMU system emulator binary of a profile (default qemu-system-arm)."""
    return profile.emulator.binary or "qemu-system-arm"


def qemu_command(profile, elf: Path) -> list[str]:
    """The QEMU command line running `elf` with semihosting and deterministic instruction counting."""
    cmd = [emulator_binary(profile), "-M", profile.emulator.machine]
    if profile.emulator.cpu:
        cmd += ["-cpu", profile.emulator.cpu]
    return cmd + ["-display", "none", "-monitor", "none", "-semihosting", "-icount", "shift=0",
                  "-kernel", str(elf)]


def _require_qemu_profile(profile) -> None:
    if profile.kind != "mcu" or profile.emulator.kind != "qemu-system":
        raise UserInputError(f"profile {profile.name!r} is a {profile.kind} device emulated by "
                             f"{profile.emulator.kind!r}; the qemu runner runs mcu profiles on qemu-system "
                             "boards (use --runner host to run the C on this machine)")


def _require_newlib(cc: str) -> None:
    """ToolchainError when the cross compiler has no newlib semihosting specs (rdimon.specs)."""
    try:
        found = subprocess.run([cc, "-print-file-name=rdimon.specs"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return  # the compiler itself will report the problem at build time
    if found in ("", "rdimon.specs"):
        raise ToolchainError(f"`{cc}` has no newlib semihosting library (rdimon.specs), which the firmware links "
                             f"against; install with `sudo apt-get install {APT_PACKAGES['arm-none-eabi-gcc']}`")
