"""st-flash from stlink-tools (Debian: `stlink-tools`): STM32 chips behind an ST-LINK probe.

    st-flash [--serial ID] --reset write firmware.bin 0x08000000

A raw binary has no addresses, so it is written at the profile's `board.load_address`. st-flash
finds the chip by itself (no target name); a chip it does not know reads "unknown chip id".
"""

from __future__ import annotations

from pathlib import Path

from edgevit.targets.mcu.flashers.base import Flasher


class StFlashFlasher(Flasher):
    """st-flash write: the raw .bin at board.load_address through an ST-LINK."""

    name = "st-flash"
    binary = "st-flash"
    install = "`sudo apt-get install stlink-tools`"
    image_suffix = ".bin"
    list_probes = "st-info --probe"
    permission_fix = ("install stlink-tools' udev rules (Debian's stlink-tools ships 49-stlinkv*.rules in "
                      "/usr/lib/udev/rules.d/; run `sudo udevadm control --reload-rules && sudo udevadm trigger`)")
    patterns = {
        "permission": (r"access error", r"LIBUSB_ERROR_ACCESS", r"Permission denied"),
        "unknown_target": (),
        "wrong_target": (r"unknown chip id", r"Could not find chip id", r"unknown coreid"),
        "no_probe": (r"Couldn't find any ST-Link", r"Couldn't find .*ST-Link devices", r"No ST-LINK .*serial",
                     r"Found 0 stlink programmers"),
    }

    def command(self, binary: str, image: Path, method, *, probe: str | None, load_address: int) -> list[str]:
        """`st-flash [--serial ID] [args] --reset write image.bin 0xADDRESS`."""
        return ([binary] + (["--serial", probe] if probe else []) + list(method.args)
                + ["--reset", "write", str(image), f"0x{load_address:08x}"])
