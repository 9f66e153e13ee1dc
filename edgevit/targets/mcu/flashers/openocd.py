"""OpenOCD (Debian: `openocd`): flashes the ELF through the board config the profile names.

    openocd -f board/stm32f7discovery.cfg [-c "adapter serial ID"] -c "program {firmware.elf} verify reset exit"

`program` initialises the adapter and the target, erases and writes every loadable section of
the ELF at its own address, reads it back (`verify`), resets the chip and quits.
"""

from __future__ import annotations

from pathlib import Path

from edgevit.targets.mcu.flashers.base import Flasher


class OpenocdFlasher(Flasher):
    """openocd program: writes the ELF through the profile's board/interface config."""

    name = "openocd"
    binary = "openocd"
    install = "`sudo apt-get install openocd`"
    image_suffix = ".elf"
    list_probes = "lsusb"
    permission_fix = ("install OpenOCD's udev rules (Debian's openocd package ships 60-openocd.rules in "
                      "/usr/lib/udev/rules.d/; add your user to the `plugdev` group and log in again)")
    target_field = "config"
    board_setting = "config: <board/....cfg>"
    patterns = {
        "permission": (r"LIBUSB_ERROR_ACCESS", r"access error", r"Permission denied"),
        "unknown_target": (r"Can't find \S+\.cfg", r"couldn't open \S+\.cfg"),
        "wrong_target": (r"UNEXPECTED idcode", r"Cannot identify target as", r"Unknown device",
                         r"init mode failed \(unable to connect to the target\)", r"Error connecting DP"),
        "no_probe": (r"Error: open failed", r"No J-Link device found", r"unable to find a matching CMSIS-DAP device",
                     r"ST-LINK open failed", r"Please check connection and permissions", r"no device found",
                     r"unable to open ftdi device"),
    }

    def command(self, binary: str, image: Path, method, *, probe: str | None, load_address: int) -> list[str]:
        """`openocd -f CONFIG [args] [-c "adapter serial ID"] -c "program {image} verify reset exit"`."""
        serial = ["-c", f"adapter serial {probe}"] if probe else []
        return ([binary, "-f", method.config] + list(method.args) + serial
                + ["-c", f"program {{{image}}} verify reset exit"])

    def unknown_target_fix(self, named: str | None) -> str:
        """Name a config OpenOCD ships or a path to one."""
        return ("set it to a config OpenOCD ships (its scripts folder, e.g. /usr/share/openocd/scripts/board/) or "
                "to the path of your own .cfg")
