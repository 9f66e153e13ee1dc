"""What the MCU runners (qemu, host, serial) share: the apt packages of their tools, the profile's
(emulated) board as the `machine` of a run, and SysTick ticks.

The test main (templates/main.c) reports each vector's time in SysTick ticks of the board;
the firmware projects build from the artifact's src/ and firmware/ (host/Makefile also compiles
firmware/main.c).
"""

from __future__ import annotations

from edgevit.backend.process import Tool
from edgevit.backend.runner import Runner

# Debian/Ubuntu packages providing each binary the MCU runners call (default: the binary's name).
APT_PACKAGES = {
    "make": "make",
    "gcc": "gcc",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "qemu-system-aarch64": "qemu-system-arm",
}
ALL_MCU_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


def mcu_tool(binary: str, purpose: str) -> Tool:
    """A Tool with the apt package(s) that provide `binary` (APT_PACKAGES)."""
    return Tool(binary, purpose, APT_PACKAGES.get(binary, binary))


class McuRunner(Runner):
    """A runner of MCU artifacts: firmware sources, SysTick ticks, the profile's board as machine."""

    build_dirs = ("src", "firmware")
    tick_name = "SysTick tick"
    install_hint = f"all MCU tools: {ALL_MCU_PACKAGES}"

    def machine(self, profile) -> str | None:
        """The QEMU machine standing in for the profile's board, e.g. "mps2-an500"."""
        return profile.emulator.machine
