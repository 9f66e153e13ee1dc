"""How flashing fails without a board: the real pyocd with no probe, a missing tool, and fake tools
(scripts on a temporary PATH printing the real tools' messages) for the failures that need hardware."""

from __future__ import annotations

import pytest

from edgevit.backend.errors import RunFailedError, ToolchainError
from edgevit.errors import UserInputError
from edgevit.profiles.board import FlashMethod
from edgevit.profiles.profile import load_profile
from edgevit.targets.mcu.flashers import get_flasher
from edgevit.targets.mcu.flashers.base import (FlashFailedError, NoProbeError, ProbePermissionError,
                                               UnknownFlashTargetError, WrongBoardError)
from tests.targets.mcu.flashers.fake_tools import MESSAGES, fake_tool, recorded_args

METHODS = {"pyocd": FlashMethod(tool="pyocd", target="stm32h743xx"),
           "openocd": FlashMethod(tool="openocd", config="board/stm32f7discovery.cfg"),
           "st-flash": FlashMethod(tool="st-flash"),
           "nrfjprog": FlashMethod(tool="nrfjprog", target="NRF52")}
EXPECTED = {"no_probe": NoProbeError, "no_probe_uid": NoProbeError, "no_probe_jlink": NoProbeError,
            "no_probe_snr": NoProbeError, "permission": ProbePermissionError,
            "unknown_target": UnknownFlashTargetError, "wrong_target": WrongBoardError, "other": FlashFailedError}
WHAT_TO_DO = {NoProbeError: "connect the board's debug USB port", ProbePermissionError: "udev",
              UnknownFlashTargetError: "board.flash[0].", WrongBoardError: "connect the board this artifact",
              FlashFailedError: "Last lines of its output"}
CASES = [(tool, kind) for tool, kinds in MESSAGES.items() for kind in kinds]


@pytest.fixture(scope="module")
def board_profile():
    """An MCU profile with a board section (NUCLEO-H743ZI: load address 0x08000000)."""
    return load_profile("stm32h743")


def _image(tmp_path, suffix: str):
    image = tmp_path / f"firmware{suffix}"
    image.write_text(":00000001FF\n" if suffix == ".hex" else "firmware")
    return image


@pytest.mark.parametrize("tool, kind", CASES)
def test_each_known_failure_becomes_its_own_error(tmp_path, monkeypatch, board_profile, tool, kind):
    stdout, stderr, code = MESSAGES[tool][kind]
    bindir = fake_tool(tmp_path / "bin", tool, stdout=stdout, stderr=stderr, code=code)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    flasher = get_flasher(tool)
    image = _image(tmp_path, flasher.image_suffix)
    with pytest.raises(EXPECTED[kind]) as caught:
        flasher.flash(flasher.find(), image, METHODS[tool], board_profile, probe="0669FF" if "uid" in kind else None,
                      where="board.flash[0]")
    message = str(caught.value)
    assert type(caught.value) is EXPECTED[kind]
    assert "'stm32h743'" in message and tool in message
    assert WHAT_TO_DO[EXPECTED[kind]] in message
    if EXPECTED[kind] is not FlashFailedError:
        assert f"({tool} said: " in message  # the tool's own line that shows the failure


def test_error_kinds_have_the_exit_codes_of_their_families():
    assert issubclass(NoProbeError, RunFailedError) and NoProbeError.exit_code == 1
    assert issubclass(ProbePermissionError, ToolchainError) and ProbePermissionError.exit_code == 2
    assert issubclass(WrongBoardError, UserInputError) and issubclass(UnknownFlashTargetError, UserInputError)


def test_probe_id_is_named_when_no_probe_has_it(tmp_path, monkeypatch, board_profile):
    stdout, stderr, code = MESSAGES["pyocd"]["no_probe_uid"]
    bindir = fake_tool(tmp_path / "bin", "pyocd", stdout=stdout, stderr=stderr, code=code)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    flasher = get_flasher("pyocd")
    with pytest.raises(NoProbeError, match=r"no debug probe with ID '0669FF'.*--probe must be one of"):
        flasher.flash(flasher.find(), _image(tmp_path, ".hex"), METHODS["pyocd"], board_profile, probe="0669FF")
    assert recorded_args(tmp_path / "bin", "pyocd")[-3:-1] == ["--uid", "0669FF"]


def test_a_successful_fake_run_passes_the_profiles_load_address(tmp_path, monkeypatch, board_profile):
    bindir = fake_tool(tmp_path / "bin", "st-flash", stdout="Flash written and verified! jolly good!\n")
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    flasher = get_flasher("st-flash")
    out = flasher.flash(flasher.find(), _image(tmp_path, ".bin"), METHODS["st-flash"], board_profile)
    assert "jolly good" in out.stdout
    assert recorded_args(bindir, "st-flash")[-2:] == [str(tmp_path / "firmware.bin"), "0x08000000"]


@pytest.mark.parametrize("tool", ["openocd", "st-flash", "nrfjprog"])
def test_missing_tool_is_a_toolchain_error_with_the_install_hint(tmp_path, monkeypatch, board_profile, tool):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    flasher = get_flasher(tool)
    if flasher.find() is not None:
        pytest.skip(f"{tool} is installed beside this Python")
    with pytest.raises(ToolchainError, match=rf"profile 'stm32h743' with {tool} needs `{tool}`, not found on PATH; "
                                             r"install it with ") as caught:
        flasher.require(board_profile)
    assert str(caught.value).endswith(flasher.install)


def test_pyocd_preflight_refuses_a_target_pyocd_does_not_list(tmp_path, monkeypatch, board_profile):
    monkeypatch.setenv("PATH", f"{fake_tool(tmp_path / 'bin', 'pyocd')}:/usr/bin:/bin")
    flasher = get_flasher("pyocd")
    flasher.check_method(flasher.find(), METHODS["pyocd"], board_profile, "board.flash[0]")  # listed: fine
    pack_part = FlashMethod(tool="pyocd", target="stm32f746nghx")
    with pytest.raises(UnknownFlashTargetError, match=r"pyocd does not know the target 'stm32f746nghx' that profile "
                                                      r"'stm32h743' names in board.flash\[0\].target: .*"
                                                      r"`pyocd pack install stm32f746nghx`"):
        flasher.check_method(flasher.find(), pack_part, board_profile, "board.flash[0]")


REAL_PYOCD = get_flasher("pyocd").find()


@pytest.mark.skipif(REAL_PYOCD is None, reason="pyocd is not installed (pip install pyocd, the `boards` extra)")
def test_real_pyocd_knows_the_builtin_targets_of_the_shipped_profiles():
    known = get_flasher("pyocd").known_targets(REAL_PYOCD)
    assert {"nrf52840", "stm32h743xx"} <= known and "name" not in known and not any(k.startswith("-") for k in known)


@pytest.mark.skipif(REAL_PYOCD is None, reason="pyocd is not installed (pip install pyocd, the `boards` extra)")
def test_real_pyocd_without_a_probe_is_the_no_probe_error(tmp_path, board_profile):
    if "No available debug probes" not in _real_probes():
        pytest.skip("a debug probe is connected to this machine")
    flasher = get_flasher("pyocd")
    with pytest.raises(NoProbeError, match=r"pyocd found no debug probe to flash profile 'stm32h743' \(pyocd said: "
                                           r".*No (connected debug probes|target device available)"):
        flasher.flash(REAL_PYOCD, _image(tmp_path, ".hex"), METHODS["pyocd"], board_profile, timeout=120)


def _real_probes() -> str:
    import subprocess

    return subprocess.run([REAL_PYOCD, "list"], capture_output=True, text=True, timeout=120).stdout
