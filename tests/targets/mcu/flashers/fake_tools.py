"""Fake flash tools for tests without a board: shell scripts on a temporary PATH that print what the
real tools print when they fail (their own messages, copied from pyocd 0.46, openocd 0.12,
stlink-tools 1.7 runs and nrfjprog's documented messages and exit codes) and exit as they do.

    bindir = fake_tool(tmp_path, "st-flash", stderr=ST_FLASH["no_probe"], code=255)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")

Each script also writes its arguments, one per line, to `<bindir>/<name>.args` and, when
`image_copy` is set, copies the argument that is an existing file (the image) to that path.
"""

from __future__ import annotations

import shlex
from pathlib import Path

PYOCD_TARGETS = """\
  Name                      Vendor                   Part Number                  Families   Source
------------------------------------------------------------------------------------------------------
  nrf52840                  Nordic Semiconductor     NRF52840                                builtin
  stm32h743xx               STMicroelectronics       STM32H743xx                             builtin
"""

# (stdout, stderr, exit code) of each tool's failures.
PYOCD = {
    "no_probe": ("No connected debug probes\n", "0000357 E No target device available [load_cmd]\n", 1),
    "no_probe_uid": ("No connected debug probe matches unique ID '0669FF'\n",
                     "0000531 E No target device available [load_cmd]\n", 1),
    "permission": ("No connected debug probes\n",
                   "0000212 W [Errno 13] Access denied (insufficient permissions) while trying to get the STLink USB "
                   "device configuration (VID=0483 PID=374b). This can probably be remedied with a udev rule. See "
                   "<https://github.com/pyocd/pyOCD/tree/master/udev> for help. [usb]\n"
                   "0000357 E No target device available [load_cmd]\n", 1),
    "unknown_target": ("", "0000950 C Target type stm32h743xx not recognized. Use 'pyocd list --targets' to see "
                           "currently available target types. See <https://pyocd.io/docs/target_support.html> for "
                           "how to install additional target support. [__main__]\n", 1),
    "wrong_target": ("", "0001320 I Loading /tmp/edgevit-flash-x/build/firmware.hex [load_cmd]\n"
                         "0002511 C flash init failure (result code 0x1) [__main__]\n", 1),
    "other": ("", "0001320 C Unexpected disconnect of the probe [__main__]\n", 1),
}
OPENOCD_BANNER = ("Open On-Chip Debugger 0.12.0\nLicensed under GNU GPL v2\nFor bug reports, read\n"
                  "\thttp://openocd.org/doc/doxygen/bugs.html\n")
OPENOCD = {
    "no_probe": ("", OPENOCD_BANNER + "Info : clock speed 2000 kHz\nError: open failed\nin procedure 'program'\n"
                                      "** OpenOCD init failed **\nshutdown command invoked\n", 1),
    "no_probe_jlink": ("", OPENOCD_BANNER + "Error: No J-Link device found\n** OpenOCD init failed **\n"
                                            "shutdown command invoked\n", 1),
    "permission": ("", OPENOCD_BANNER + "Error: libusb_open() failed with LIBUSB_ERROR_ACCESS\nError: open failed\n"
                                        "in procedure 'program'\n** OpenOCD init failed **\n", 1),
    "unknown_target": ("", OPENOCD_BANNER + "embedded:startup.tcl:28: Error: Can't find board/stm32f7discovery.cfg\n"
                                            "in procedure 'script'\nat file \"embedded:startup.tcl\", line 28\n", 1),
    "wrong_target": ("", OPENOCD_BANNER + "Info : STLINK V2J37M26 (API v2) VID:PID 0483:374B\n"
                                          "Info : Target voltage: 3.238262\n"
                                          "Warn : UNEXPECTED idcode: 0x2ba01477\n"
                                          "Error: expected 1 of 1: 0x5ba02477\n** OpenOCD init failed **\n", 1),
    "other": ("", OPENOCD_BANNER + "Error: checksum mismatch - attempting binary compare\n** Verify Failed **\n", 1),
}
ST_FLASH = {
    "no_probe": ("st-flash 1.7.0\n", "2026-12-07T19:20:40 WARN usb.c: Couldn't find any ST-Link devices\n", 255),
    "permission": ("st-flash 1.7.0\n", "2026-12-07T19:20:40 WARN usb.c: Could not open USB device 0x0483:0x374b, "
                                       "access error.\n2026-12-07T19:20:40 WARN usb.c: Couldn't find any ST-Link "
                                       "devices\n", 255),
    "wrong_target": ("st-flash 1.7.0\n", "2026-12-07T19:20:40 INFO common.c: unknown chip id! 0x451\n", 255),
    "other": ("st-flash 1.7.0\n", "2026-12-07T19:20:41 ERROR common.c: Verification of flash failed at offset: 0\n",
              255),
}
NRFJPROG = {
    "no_probe": ("", "ERROR: There is no debugger connected to the PC.\n", 41),
    "no_probe_snr": ("", "ERROR: The serial number provided is not among those connected.\n", 40),
    "unknown_target": ("", "ERROR: invalid family argument, a problem with your device, or nrfjprog may\n"
                           "ERROR: not yet support your device.\n", 11),
    "wrong_target": ("", "ERROR: The --family option given with the command (or the default from\n"
                         "ERROR: nrfjprog.ini) does not match the device connected.\n", 18),
    "permission": ("", "ERROR: JLinkARM DLL reported an error: LIBUSB_ERROR_ACCESS, insufficient permissions.\n", 33),
    "other": ("", "ERROR: The write verify operation failed.\n", 55),
}
MESSAGES = {"pyocd": PYOCD, "openocd": OPENOCD, "st-flash": ST_FLASH, "nrfjprog": NRFJPROG}


def fake_tool(bindir: Path, name: str, *, stdout: str = "", stderr: str = "", code: int = 0,
              image_copy: Path | None = None, pyocd_targets: str = PYOCD_TARGETS) -> Path:
    """Write an executable `bindir/name` that records its arguments, prints `stdout` / `stderr` and
    exits with `code` (a pyocd fake answers `list --targets` with `pyocd_targets`); returns bindir."""
    bindir.mkdir(parents=True, exist_ok=True)
    script = ["#!/bin/sh", f'printf "%s\\n" "$@" > {shlex.quote(str(bindir / (name + ".args")))}']
    if name == "pyocd":
        script.append(f'if [ "$1" = list ]; then printf %s {shlex.quote(pyocd_targets)}; exit 0; fi')
    if image_copy is not None:
        script.append(f'for a in "$@"; do if [ -f "$a" ]; then cp "$a" {shlex.quote(str(image_copy))}; fi; done')
    script += [f"printf %s {shlex.quote(stdout)}", f"printf %s {shlex.quote(stderr)} >&2", f"exit {code}"]
    path = bindir / name
    path.write_text("\n".join(script) + "\n")
    path.chmod(0o755)
    return bindir


def recorded_args(bindir: Path, name: str) -> list[str]:
    """The arguments the fake `name` was last called with."""
    return (bindir / f"{name}.args").read_text().splitlines()
