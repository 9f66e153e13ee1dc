"""The flashers of MCU boards by tool name: the `tool` of a profile's `board.flash` methods.

    flasher = get_flasher("pyocd")          # a Flasher (base.py)
    flasher.find()                          # its path on PATH, or None
    flasher.command(binary, image, method, probe=None, load_address=0x08000000)

One module per tool (pyocd.py, openocd.py, st_flash.py, nrfjprog.py); add one by writing a
Flasher subclass and listing it in FLASHERS.
"""

from __future__ import annotations

import difflib

from edgevit.errors import UserInputError
from edgevit.targets.mcu.flashers.base import Flasher
from edgevit.targets.mcu.flashers.nrfjprog import NrfjprogFlasher
from edgevit.targets.mcu.flashers.openocd import OpenocdFlasher
from edgevit.targets.mcu.flashers.pyocd import PyocdFlasher
from edgevit.targets.mcu.flashers.st_flash import StFlashFlasher

FLASHERS: dict[str, type[Flasher]] = {f.name: f for f in (PyocdFlasher, OpenocdFlasher, StFlashFlasher,
                                                           NrfjprogFlasher)}


def flasher_names() -> list[str]:
    """The tools edgevit can flash with, in registry order."""
    return list(FLASHERS)


def get_flasher(name: str, what: str = "--tool") -> Flasher:
    """The Flasher of tool `name`; UserInputError naming `what` (the option or profile field) and
    the known tools otherwise."""
    if name not in FLASHERS:
        close = difflib.get_close_matches(name, FLASHERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserInputError(f"{what}: edgevit cannot flash with {name!r}{hint}; tools it knows: "
                             f"{', '.join(FLASHERS)}")
    return FLASHERS[name]()
