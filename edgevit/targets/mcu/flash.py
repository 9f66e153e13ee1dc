"""`edgevit flash DIR`: build an artifact's UART firmware for the real board and write it there.

    result = flash_artifact(load_artifact("out/tiny"), "stm32f746-disco")   # {tool, image, seconds, ...}

The profile's `board.flash` lists the ways to flash the board in order of preference
(`- {tool: pyocd, target: stm32h743xx}`, `- {tool: openocd, config: ...}`, `- {tool: st-flash}`);
the first whose tool is installed is used (and knows the board's target: pyocd without the
target's CMSIS pack gives way to the next installed tool), or the one `tool=` asks for. Steps:
pick the method and check it, build the firmware with
`build_uart_firmware(..., for_board=True)` in a temporary directory (ELF + .hex + .bin at
board.load_address), run the tool on the image it takes (flashers/). Nothing is built when the
tool is missing or does not know the profile's target. Failures are the flashers' errors
(flashers/base.py): missing tool, no probe, USB permission, unknown target, wrong board.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from edgevit.backend.errors import ToolchainError
from edgevit.errors import UserInputError
from edgevit.targets.mcu.flashers import flasher_names, get_flasher
from edgevit.targets.mcu.flashers.base import FLASH_TIMEOUT_S, Flasher, UnknownFlashTargetError

Stage = Callable[[str], None]


def flash_artifact(artifact, profile=None, *, tool: str | None = None, probe: str | None = None,
                   stage: Stage | None = None, timeout: float | None = None) -> dict:
    """Build `artifact`'s UART firmware for `profile`'s board (default: the artifact's profile) and
    flash it with the first installed tool of `profile.board.flash` (or `tool`), through the probe
    with ID `probe` (default: the only one connected).

    `artifact`: an Artifact or its directory. Returns {tool, image (file name), bytes (image size),
    seconds (flashing only), profile, probe, method (the profile entry used)}. Raises UserInputError
    (no board section, no such tool), ToolchainError (tool missing, USB permission), the flashers'
    NoProbeError / WrongBoardError / UnknownFlashTargetError / FlashFailedError, and the build's errors."""
    from edgevit.backend.artifact import Artifact, load_artifact
    from edgevit.profiles.profile import load_profile

    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    prof = load_profile(profile) if profile is not None else art.profile()
    say = stage or (lambda message: None)
    if timeout is not None and timeout <= 0:
        raise UserInputError(f"--timeout must be a positive number of seconds (got {timeout})")
    say("checking the flash tool")
    index, method, flasher, binary = usable_method(prof, tool)
    where = _where(index)
    workdir = Path(tempfile.mkdtemp(prefix="edgevit-flash-"))
    try:
        from edgevit.targets.mcu.uart_firmware import build_uart_firmware

        say(f"building the {prof.name} board firmware")
        elf = build_uart_firmware(art, prof, workdir / "build", for_board=True, stage=stage)
        image = flasher.image_for(Path(elf))
        say(f"flashing {image.name} with {flasher.name}" + (f" (probe {probe})" if probe else ""))
        start = time.monotonic()
        flasher.flash(binary, image, method, prof, probe=probe, where=where,
                      timeout=timeout if timeout is not None else FLASH_TIMEOUT_S)
        seconds = time.monotonic() - start
        return {"tool": flasher.name, "image": image.name, "bytes": image.stat().st_size, "seconds": round(seconds, 3),
                "profile": prof.name, "probe": probe, "method": method.model_dump(exclude_defaults=True)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def usable_method(profile, tool: str | None = None) -> tuple[int | None, object, Flasher, str]:
    """choose_method, then the tool's own checks (Flasher.check_method: pyocd must know the target).

    Without `tool`, an installed method whose check fails (pyocd without the target's CMSIS pack)
    gives way to the next installed one; when every installed method fails, the first one's
    UnknownFlashTargetError is raised. With `tool` there is no second choice."""
    if tool is not None:
        candidates = [choose_method(profile, tool)]
    else:
        candidates = installed_methods(profile)
    first_error = None
    for index, method, flasher, binary in candidates:
        try:
            flasher.check_method(binary, method, profile, _where(index))
            return index, method, flasher, binary
        except UnknownFlashTargetError as e:
            first_error = first_error or e
    raise first_error


def _where(index: int | None) -> str:
    return f"board.flash[{index}]" if index is not None else "--tool"


def choose_method(profile, tool: str | None = None) -> tuple[int | None, object, Flasher, str]:
    """(index in board.flash or None, FlashMethod, Flasher, tool path) for flashing `profile`'s board.

    tool=None: the first method of board.flash whose tool is installed; ToolchainError listing how
    to install each when none is. tool="NAME": the profile's method for that tool (a tool that
    needs no per-board setting, like st-flash, also works when the profile does not list it);
    ToolchainError when it is not installed. UserInputError when the profile has no board or no
    flash methods, or names a tool edgevit does not know."""
    if tool is not None:
        return _asked_method(profile, _flash_methods(profile), tool)
    return installed_methods(profile)[0]


def installed_methods(profile) -> list[tuple[int, object, Flasher, str]]:
    """[(index, FlashMethod, Flasher, tool path)] of the methods of board.flash whose tool is installed,
    in the profile's order; errors as choose_method's when there is none."""
    methods = _flash_methods(profile)
    if not methods:
        raise UserInputError(f"profile {profile.name!r} lists no flash tool (board.flash is empty); add e.g. "
                             f"`- {{tool: st-flash}}` under board.flash, or pass --tool ({', '.join(flasher_names())})")
    found = [(i, m, get_flasher(m.tool)) for i, m in enumerate(methods)]
    found = [(i, m, f, f.find()) for i, m, f in found]
    installed = [(i, m, f, path) for i, m, f, path in found if path]
    if installed:
        return installed
    ways = "; ".join(f"{m.tool}: {get_flasher(m.tool).install}" for m in methods)
    raise ToolchainError(f"none of the flash tools of profile {profile.name!r} is installed "
                         f"({', '.join(m.tool for m in methods)}, from board.flash); install one: {ways}")


def _flash_methods(profile) -> list:
    """The profile's board.flash, each tool checked to be one edgevit knows; UserInputError without a board."""
    board = getattr(profile, "board", None)
    if board is None:
        raise UserInputError(f"profile {profile.name!r} has no `board:` section, so edgevit does not know the board "
                             "to flash; add board.uart, board.load_address and board.flash to the profile (see "
                             "edgevit/profiles/stm32f746-disco.yaml) and compile again (an artifact keeps the "
                             "profile it was compiled with)")
    methods = list(board.flash)
    for i, m in enumerate(methods):
        get_flasher(m.tool, what=f"profile {profile.name!r}: board.flash[{i}].tool")
    return methods


def _asked_method(profile, methods: list, tool: str) -> tuple[int | None, object, Flasher, str]:
    """The method for `--tool tool` (see choose_method)."""
    flasher = get_flasher(tool)
    listed = [(i, m) for i, m in enumerate(methods) if m.tool == tool]
    if listed:
        index, method = listed[0]
    elif flasher.board_setting is None:
        from edgevit.profiles.board import FlashMethod

        index, method = None, FlashMethod(tool=tool)  # st-flash, nrfjprog: the tool finds the chip itself
    else:
        raise UserInputError(f"--tool {tool}: profile {profile.name!r} has no {tool} entry in board.flash, and {tool} "
                             f"needs one for the board; add `- {{tool: {tool}, {flasher.board_setting}}}` to "
                             "board.flash" + (f" (it lists {', '.join(m.tool for m in methods)})" if methods else ""))
    return index, method, flasher, flasher.require(profile)
