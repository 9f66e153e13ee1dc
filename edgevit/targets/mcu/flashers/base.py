"""What every flasher shares: the command it runs, how it is installed, and how its failures read.

A flasher is one external programming tool (pyocd, openocd, st-flash, nrfjprog) seen through one
class: `binary` on PATH, how to install it (`install`), which image it writes (`image_suffix`:
.hex, .elf or .bin, all written beside the firmware ELF by build_uart_firmware), the command line
for an image (`command`), and the lines it prints when it fails, sorted into the four failures a
person can fix:

    permission      a probe is there but USB access is denied (udev rules)    ProbePermissionError
    unknown target  the profile names a target / config the tool does not know  UnknownFlashTargetError
    wrong target    the chip on the probe is not the profile's chip            WrongBoardError
    no probe        no debug probe connected (or none with the --probe ID)     NoProbeError

Anything else that exits non-zero is a FlashFailedError with the tail of the tool's output.
Every message names the profile, the tool and what to do. The patterns are the tools' own
messages (checked against the real tools where Debian / PyPI ship them: pyocd 0.46, openocd 0.12,
stlink-tools 1.7; nrfjprog by its documented exit codes and messages).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import ClassVar

from edgevit.backend.errors import RunFailedError, ToolchainError, output_tail
from edgevit.backend.process import ProcessOutput, run_process, show_command
from edgevit.errors import UserInputError

FLASH_TIMEOUT_S = 300.0
FAILURE_KINDS = ("permission", "unknown_target", "wrong_target", "no_probe")  # checked in this order


class FlashFailedError(RunFailedError):
    """The flashing tool ran and failed for a reason not sorted below. Exit code 1."""


class NoProbeError(FlashFailedError):
    """No debug probe is connected (or none with the requested ID). Exit code 1."""


class ProbePermissionError(ToolchainError):
    """A probe is connected but this user may not open it (udev rules). Exit code 2."""


class UnknownFlashTargetError(UserInputError):
    """The profile's flash method names a target or config the tool does not know. Exit code 2."""


class WrongBoardError(UserInputError):
    """The chip on the probe does not match the profile. Exit code 2."""


class Flasher:
    """One programming tool; subclasses set the class variables and `command`."""

    name: ClassVar[str] = ""
    binary: ClassVar[str] = ""
    install: ClassVar[str] = ""  # how to install the binary, e.g. "`pip install pyocd`"
    image_suffix: ClassVar[str] = ".hex"  # the image the tool writes: .hex, .elf or .bin
    list_probes: ClassVar[str] = ""  # the command that lists the probes the tool sees
    permission_fix: ClassVar[str] = ""  # how to grant USB access to the probe (udev rules)
    target_field: ClassVar[str] = "target"  # the FlashMethod field naming the chip/board for this tool
    board_setting: ClassVar[str | None] = None  # what a profile must set for this tool, e.g. "target: <name>"
    patterns: ClassVar[dict[str, tuple[str, ...]]] = {}  # failure kind -> regexes over the tool's output
    exit_codes: ClassVar[dict[int, str]] = {}  # exit code -> failure kind (tools with documented codes)

    def find(self) -> str | None:
        """The tool's path on PATH, else beside this Python (a virtualenv's bin/, where `pip install pyocd`
        puts it even when the venv is not activated); None when it is not installed."""
        return shutil.which(self.binary) or shutil.which(self.binary, path=str(Path(sys.executable).parent))

    def require(self, profile) -> str:
        """The tool's path; ToolchainError naming the profile and how to install it otherwise."""
        path = self.find()
        if path is None:
            raise ToolchainError(f"flashing profile {profile.name!r} with {self.name} needs `{self.binary}`, not found "
                                 f"on PATH; install it with {self.install}")
        return path

    def command(self, binary: str, image: Path, method, *, probe: str | None, load_address: int) -> list[str]:
        """The command line writing `image` to the board, verifying it and resetting the chip.
        `method` is the profile's FlashMethod (target, config, args); `probe` a probe ID or None."""
        raise NotImplementedError

    def check_method(self, binary: str, method, profile, where: str) -> None:
        """Checks before anything is built (e.g. that the tool knows the profile's target); `where`
        is the method's place in the profile, e.g. "board.flash[0]". Default: none."""

    def image_for(self, elf: Path) -> Path:
        """The file of the firmware build this tool writes: the ELF or the .hex / .bin beside it
        (`firmware.hex` or `firmware.elf.hex`). RunFailedError when the build did not write it."""
        if self.image_suffix == ".elf":
            candidates = [elf]
        else:
            candidates = [elf.with_suffix(self.image_suffix), Path(f"{elf}{self.image_suffix}")]
        for path in candidates:
            if path.is_file():
                return path
        raise RunFailedError(f"the board firmware build wrote no {self.image_suffix} image beside {elf.name} "
                             f"(looked for {', '.join(p.name for p in candidates)}); {self.name} flashes that format")

    def flash(self, binary: str, image: Path, method, profile, *, probe: str | None = None, where: str = "board.flash",
              timeout: float = FLASH_TIMEOUT_S) -> ProcessOutput:
        """Run the tool on `image`; the process output when it exits 0, else the error `diagnose`
        sorts it into (see the module docstring). RunTimeoutError when it does not finish in time."""
        load_address = int(profile.board.load_address)
        cmd = self.command(binary, image, method, probe=probe, load_address=load_address)
        out = run_process(cmd, cwd=image.parent, timeout=timeout, what=f"flashing with {self.name}", check=False)
        if out.returncode != 0:
            raise self.failure(out, cmd, method, profile, probe=probe, where=where)
        return out

    def diagnose(self, text: str, returncode: int) -> tuple[str, str] | None:
        """(failure kind, the line that shows it) for a failed run's output, None when unknown."""
        for kind in FAILURE_KINDS:
            for pattern in self.patterns.get(kind, ()):
                found = re.search(pattern, text, re.IGNORECASE | re.MULTILINE)
                if found:
                    return kind, _line_at(text, found.start())
        kind = self.exit_codes.get(returncode)
        return (kind, _last_error_line(text)) if kind else None

    def failure(self, out: ProcessOutput, cmd: list[str], method, profile, *, probe: str | None,
                where: str) -> Exception:
        """The error for a run that exited non-zero: one of the four kinds, or FlashFailedError."""
        text = "\n".join(part.rstrip("\n") for part in (out.stdout, out.stderr) if part.strip())
        found = self.diagnose(text, out.returncode)
        said = f" ({self.binary} said: {found[1].strip()})" if found and found[1].strip() else ""
        board = f"profile {profile.name!r}"
        if found is None:
            return FlashFailedError(f"flashing {board} with {self.name} failed: {show_command(cmd)} exited with code "
                                    f"{out.returncode}. Last lines of its output:\n{output_tail(text)}")
        kind = found[0]
        if kind == "permission":
            return ProbePermissionError(f"{self.name} sees a debug probe but may not open it (USB permission denied) "
                                        f"while flashing {board}{said}: {self.permission_fix}, then unplug and "
                                        "replug the board")
        if kind == "no_probe":
            which = f" with ID {probe!r}" if probe else ""
            return NoProbeError(f"{self.name} found no debug probe{which} to flash {board}{said}: connect the board's "
                                f"debug USB port (ST-LINK / J-Link / CMSIS-DAP) and check that `{self.list_probes}` "
                                "lists it" + ("; --probe must be one of the IDs it shows" if probe else ""))
        named = getattr(method, self.target_field, None)
        field = f"{where}.{self.target_field}"
        if kind == "unknown_target":
            what = (f"the {self.target_field} {named!r} that {board} names in {field}" if named else
                    f"the chip of {board} ({where} sets no {self.target_field})")
            return UnknownFlashTargetError(f"{self.name} does not know {what}{said}: {self.unknown_target_fix(named)}")
        expects = f"{field} {named!r}" if named else where
        return WrongBoardError(f"the chip on the probe does not match {board} ({self.name} flashing with "
                               f"{expects}){said}: connect the board this artifact was compiled for, "
                               "or compile for the connected board's profile (`edgevit profiles list`)")

    def unknown_target_fix(self, named: str | None) -> str:
        """What to do when the tool does not know the profile's target/config `named`."""
        return f"fix the profile's {self.target_field} for {self.name}"


def _line_at(text: str, index: int) -> str:
    """The whole line of `text` containing position `index`."""
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start:end if end >= 0 else len(text)][:300]


def _last_error_line(text: str) -> str:
    """The last line mentioning an error, else the last non-empty line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or [""])[-1][:300]
