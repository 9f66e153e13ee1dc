"""nrfjprog (Nordic's nRF Command Line Tools, with SEGGER J-Link): nRF chips through J-Link.

    nrfjprog [-f NRF52] [--snr ID] --program firmware.hex --chiperase --verify --reset

The method's `target`, when given, is nrfjprog's `--family` (NRF51, NRF52, NRF53, NRF91);
without it nrfjprog detects the family. Its documented exit codes sort the failures:
41 no debugger connected, 40 no debugger with that serial number, 18 the family does not match
the device, 42 the device cannot be reached through the debugger.
"""

from __future__ import annotations

from pathlib import Path

from edgevit.targets.mcu.flashers.base import Flasher


class NrfjprogFlasher(Flasher):
    """nrfjprog --program: the .hex with a chip erase, verified, then reset."""

    name = "nrfjprog"
    binary = "nrfjprog"
    install = ("Nordic's nRF Command Line Tools and SEGGER's J-Link software (not in Debian or PyPI; download them "
               "from Nordic), or flash with pyocd instead (`pip install pyocd`, `edgevit flash DIR --tool pyocd`)")
    image_suffix = ".hex"
    list_probes = "nrfjprog --ids"
    permission_fix = "install SEGGER's J-Link udev rules (99-jlink.rules, shipped with the J-Link software)"
    patterns = {
        "permission": (r"LIBUSB_ERROR_ACCESS", r"Permission denied", r"insufficient permissions"),
        "unknown_target": (r"invalid family argument",),
        "wrong_target": (r"does not match the device connected", r"Not possible to connect to the NRF device",
                         r"Unable to connect to the device"),
        "no_probe": (r"There is no debugger connected to the PC", r"No debuggers were discovered",
                     r"serial number provided is not among those connected"),
    }
    exit_codes = {41: "no_probe", 40: "no_probe", 18: "wrong_target", 42: "wrong_target"}

    def command(self, binary: str, image: Path, method, *, probe: str | None, load_address: int) -> list[str]:
        """`nrfjprog [-f FAMILY] [--snr ID] [args] --program image.hex --chiperase --verify --reset`."""
        return ([binary] + (["-f", method.target] if method.target else []) + (["--snr", probe] if probe else [])
                + list(method.args) + ["--program", str(image), "--chiperase", "--verify", "--reset"])

    def unknown_target_fix(self, named: str | None) -> str:
        """A family nrfjprog knows."""
        return "set it to an nrfjprog family (NRF51, NRF52, NRF53 or NRF91) or leave it out to let nrfjprog detect it"
