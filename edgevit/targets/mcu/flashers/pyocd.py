"""pyOCD (on PyPI: `pip install pyocd`): CMSIS-DAP, ST-LINK and J-Link probes, any Cortex-M.

    pyocd load --no-wait --target stm32h743xx [--uid ID] firmware.hex

`--no-wait` makes pyocd fail at once when no probe is connected (by default it waits for one
forever). Before anything is built, `pyocd list --targets` tells whether pyocd knows the
profile's target: built-in targets (nrf52840, stm32h743xx, ...) always, CMSIS-Pack targets
(e.g. stm32f746nghx) once their pack is installed with `pyocd pack install`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from edgevit.targets.mcu.flashers.base import Flasher, UnknownFlashTargetError

LIST_TIMEOUT_S = 60.0


class PyocdFlasher(Flasher):
    """pyocd load: writes the .hex through any probe pyocd supports."""

    name = "pyocd"
    binary = "pyocd"
    install = "`pip install pyocd` (or `pip install 'edgevit[boards]'`)"
    image_suffix = ".hex"
    board_setting = "target: <a name from `pyocd list --targets`>"
    list_probes = "pyocd list"
    permission_fix = ("install pyocd's udev rules (the .rules files of the udev/ folder in pyocd's source) into "
                      "/etc/udev/rules.d/ and run `sudo udevadm control --reload-rules && sudo udevadm trigger`")
    patterns = {
        "permission": (r"udev rule", r"LIBUSB_ERROR_ACCESS", r"Access denied", r"\[Errno 13\]"),
        "unknown_target": (r"Target type \S+ not recognized",),
        "wrong_target": (r"flash init failure", r"Memory transfer fault", r"invalid flash address",
                         r"Transfer fault"),
        "no_probe": (r"No connected debug probe", r"No available debug probe", r"No target device available"),
    }

    def command(self, binary: str, image: Path, method, *, probe: str | None, load_address: int) -> list[str]:
        """`pyocd load --no-wait --target T [--uid ID] [args] image.hex` (pyocd resets after loading)."""
        return ([binary, "load", "--no-wait", "--target", method.target] + (["--uid", probe] if probe else [])
                + list(method.args) + [str(image)])

    def check_method(self, binary: str, method, profile, where: str) -> None:
        """UnknownFlashTargetError when `pyocd list --targets` does not list the profile's target
        (skipped when the listing itself fails: the flash run will say more)."""
        known = self.known_targets(binary)
        if known is not None and method.target.lower() not in known:
            raise UnknownFlashTargetError(
                f"pyocd does not know the target {method.target!r} that profile {profile.name!r} names in "
                f"{where}.target: {self.unknown_target_fix(method.target)}")

    def known_targets(self, binary: str) -> set[str] | None:
        """Target names `pyocd list --targets` prints (lower case), None when it cannot list them."""
        try:
            out = subprocess.run([binary, "list", "--targets"], capture_output=True, text=True,
                                 timeout=LIST_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode != 0:
            return None
        names = set()
        for line in out.stdout.splitlines():
            words = line.split()
            if words and not set(words[0]) <= set("-") and words[0] != "Name":
                names.add(words[0].lower())
        return names or None

    def unknown_target_fix(self, named: str | None) -> str:
        """Install the target's CMSIS pack, or pick a name pyocd lists."""
        return (f"if it is a CMSIS-Pack part, install its pack once with `pyocd pack install {named}` (downloads the "
                "pack index and the pack); otherwise set it to a name from `pyocd list --targets`")
