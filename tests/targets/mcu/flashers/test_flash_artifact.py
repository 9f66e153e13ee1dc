"""flash_artifact / `edgevit flash`: which method is used, what is built, what the tool gets, and how
it fails without a board (fake tools on a temporary PATH, and the real pyocd when installed)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from edgevit.backend.errors import ToolchainError
from edgevit.errors import UserInputError
from edgevit.profiles.board import FlashMethod
from edgevit.profiles.profile import load_profile
from edgevit.targets.mcu.flash import choose_method, flash_artifact, usable_method
from edgevit.targets.mcu.flashers import get_flasher
from edgevit.targets.mcu.flashers.base import NoProbeError, UnknownFlashTargetError
from tests.targets.mcu.flashers.fake_tools import MESSAGES, fake_tool, recorded_args
from tests.targets.mcu.small_artifact import write_small_artifact

needs_arm = pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"), reason="arm-none-eabi-gcc not installed")
EDGEVIT = shutil.which("edgevit") or str(Path(sys.executable).parent / "edgevit")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"  # make, arm-none-eabi-gcc


def with_flash(profile, *methods):
    """`profile` with board.flash replaced by `methods`."""
    return profile.model_copy(update={"board": profile.board.model_copy(update={"flash": list(methods)})})


@pytest.fixture(scope="module")
def disco():
    return load_profile("stm32f746-disco")


@pytest.fixture(scope="module")
def disco_artifact(tmp_path_factory):
    return write_small_artifact(tmp_path_factory.mktemp("flash") / "disco", "stm32f746-disco")


# --- choosing the method ----------------------------------------------------------------------------------


def test_first_installed_tool_of_the_profile_is_used(tmp_path, monkeypatch, disco):
    monkeypatch.setenv("PATH", str(fake_tool(tmp_path, "st-flash")))
    profile = with_flash(disco, FlashMethod(tool="nrfjprog"), FlashMethod(tool="st-flash"))
    index, method, flasher, binary = choose_method(profile)
    assert (index, method.tool, flasher.name, binary) == (1, "st-flash", "st-flash", str(tmp_path / "st-flash"))


def test_no_installed_tool_lists_how_to_install_each(tmp_path, monkeypatch, disco):
    monkeypatch.setenv("PATH", str(tmp_path))
    profile = with_flash(disco, FlashMethod(tool="nrfjprog"), FlashMethod(tool="st-flash"))
    with pytest.raises(ToolchainError, match=r"none of the flash tools of profile 'stm32f746-disco' is installed "
                                             r"\(nrfjprog, st-flash, from board.flash\); install one: nrfjprog: .*"
                                             r"st-flash: `sudo apt-get install stlink-tools`"):
        choose_method(profile)


def test_pyocd_without_the_targets_pack_gives_way_to_the_next_installed_tool(tmp_path, monkeypatch, disco):
    fake_tool(tmp_path, "pyocd")  # lists nrf52840 and stm32h743xx, not the F746's pack part
    monkeypatch.setenv("PATH", str(fake_tool(tmp_path, "st-flash")))
    index, method, flasher, _ = usable_method(disco)
    assert (index, method.tool) == (2, "st-flash")
    with pytest.raises(UnknownFlashTargetError, match="pyocd pack install stm32f746nghx"):
        usable_method(disco, "pyocd")  # asked for: no second choice


def test_tool_option_picks_the_profiles_entry_for_it(tmp_path, monkeypatch, disco):
    monkeypatch.setenv("PATH", str(fake_tool(tmp_path, "openocd")))
    index, method, flasher, _ = choose_method(disco, "openocd")
    assert (index, method.config, flasher.name) == (1, "board/stm32f7discovery.cfg", "openocd")


def test_tool_option_for_a_tool_that_finds_the_chip_itself_needs_no_profile_entry(tmp_path, monkeypatch, disco):
    monkeypatch.setenv("PATH", str(fake_tool(tmp_path, "nrfjprog")))
    index, method, flasher, _ = choose_method(with_flash(disco, FlashMethod(tool="st-flash")), "nrfjprog")
    assert (index, method, flasher.name) == (None, FlashMethod(tool="nrfjprog"), "nrfjprog")


def test_tool_option_for_a_tool_that_needs_a_target_says_what_to_add(disco):
    with pytest.raises(UserInputError, match=r"--tool pyocd: profile 'stm32f746-disco' has no pyocd entry in "
                                             r"board.flash.*add `- \{tool: pyocd, target: "):
        choose_method(with_flash(disco, FlashMethod(tool="st-flash")), "pyocd")


def test_unknown_tool_option_and_profile_tool_are_user_errors(disco):
    with pytest.raises(UserInputError, match=r"--tool: edgevit cannot flash with 'jlink'"):
        choose_method(disco, "jlink")
    with pytest.raises(UserInputError, match=r"profile 'stm32f746-disco': board.flash\[0\].tool: edgevit cannot "
                                             r"flash with 'stm32cubeprog'"):
        choose_method(with_flash(disco, FlashMethod(tool="stm32cubeprog")))


def test_missing_tool_option_is_a_toolchain_error(tmp_path, monkeypatch, disco):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match=r"needs `st-flash`, not found on PATH; install it with "
                                             r"`sudo apt-get install stlink-tools`"):
        choose_method(disco, "st-flash")


def test_profile_without_board_or_flash_methods_says_what_to_add(disco):
    with pytest.raises(UserInputError, match=r"profile 'corstone-300' has no `board:` section"):
        choose_method(load_profile("corstone-300"))
    with pytest.raises(UserInputError, match=r"lists no flash tool \(board.flash is empty\); add e.g. "
                                             r"`- \{tool: st-flash\}`"):
        choose_method(with_flash(disco))


def test_targets_that_do_not_flash_say_so():
    from edgevit.backend.target import get_target

    with pytest.raises(UserInputError, match=r"the cpu target cannot flash"):
        get_target("cpu").flash(None)
    with pytest.raises(UserInputError, match=r"takes the options tool, probe, stage and timeout \(got \['port'\]\)"):
        get_target("mcu").flash(None, port="/dev/ttyACM0")


# --- building and flashing ---------------------------------------------------------------------------------


@needs_arm
def test_st_flash_gets_the_board_image_linked_at_the_load_address(tmp_path, monkeypatch, disco_artifact):
    image = tmp_path / "written.bin"
    monkeypatch.setenv("PATH", f"{fake_tool(tmp_path / 'bin', 'st-flash', image_copy=image)}:{SYSTEM_PATH}")
    stages = []
    result = flash_artifact(disco_artifact, tool="st-flash", stage=stages.append)
    assert {k: result[k] for k in ("tool", "image", "profile", "probe")} == {
        "tool": "st-flash", "image": "firmware_board.bin", "profile": "stm32f746-disco", "probe": None}
    assert result["bytes"] == image.stat().st_size and result["seconds"] >= 0
    args = recorded_args(tmp_path / "bin", "st-flash")
    assert args[:2] == ["--reset", "write"] and args[2].endswith("/firmware_board.bin") and args[3:] == ["0x08000000"]
    stack, reset = struct.unpack("<II", image.read_bytes()[:8])  # the vector table at the start of flash
    assert 0x20000000 <= stack <= 0x20050000  # the initial stack pointer lies in the chip's SRAM
    assert reset & 1 and 0x08000000 <= reset < 0x08000000 + image.stat().st_size  # Thumb reset handler in flash
    assert any("flashing firmware_board.bin with st-flash" in s for s in stages)


@needs_arm
def test_pyocd_gets_the_hex_at_the_load_address_and_its_failure_is_reported(tmp_path, monkeypatch, disco_artifact):
    image = tmp_path / "written.hex"
    bindir = fake_tool(tmp_path / "bin", "pyocd", image_copy=image,
                       pyocd_targets="  stm32f746nghx  STMicroelectronics  STM32F746NGHx  pack\n")
    monkeypatch.setenv("PATH", f"{bindir}:{SYSTEM_PATH}")
    result = flash_artifact(disco_artifact, probe="0669FF")
    assert (result["tool"], result["image"], result["probe"]) == ("pyocd", "firmware_board.hex", "0669FF")
    args = recorded_args(bindir, "pyocd")
    assert args[:6] == ["load", "--no-wait", "--target", "stm32f746nghx", "--uid", "0669FF"]
    records = image.read_text().split()
    assert records[0] == ":020000040800F2"  # Intel HEX: upper address 0x0800, the flash at 0x08000000
    stdout, stderr, code = MESSAGES["pyocd"]["no_probe"]
    fake_tool(tmp_path / "bin", "pyocd", stdout=stdout, stderr=stderr, code=code,
              pyocd_targets="  stm32f746nghx  STMicroelectronics  STM32F746NGHx  pack\n")
    with pytest.raises(NoProbeError, match="pyocd found no debug probe to flash profile 'stm32f746-disco'"):
        flash_artifact(disco_artifact)


def test_an_unknown_pyocd_target_fails_before_anything_is_built(tmp_path, monkeypatch, disco_artifact):
    monkeypatch.setenv("PATH", str(fake_tool(tmp_path, "pyocd")))  # no compiler on PATH: a build would fail
    with pytest.raises(UnknownFlashTargetError, match=r"pyocd does not know the target 'stm32f746nghx' .*"
                                                      r"board.flash\[0\].target.*`pyocd pack install stm32f746nghx`"):
        flash_artifact(disco_artifact)


REAL_PYOCD = get_flasher("pyocd").find()
needs_pyocd = pytest.mark.skipif(REAL_PYOCD is None, reason="pyocd is not installed (pip install 'edgevit[boards]')")


@needs_pyocd
@needs_arm
def test_edgevit_flash_with_the_real_pyocd_and_no_probe(tmp_path):
    """The nRF52840's pyocd target is built in: the firmware is built, then pyocd finds no probe."""
    if "No available debug probes" not in subprocess.run([REAL_PYOCD, "list"], capture_output=True, text=True,
                                                         timeout=120).stdout:
        pytest.skip("a debug probe is connected to this machine")
    artifact = write_small_artifact(tmp_path / "nrf", "nrf52840")
    env = {**os.environ, "PATH": f"{Path(REAL_PYOCD).parent}:{SYSTEM_PATH}"}
    r = subprocess.run([EDGEVIT, "flash", str(artifact), "--tool", "pyocd", "--json"], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 1, r.stderr
    assert "pyocd found no debug probe to flash profile 'nrf52840' (pyocd said: " in r.stderr
    assert "connect the board's debug USB port" in r.stderr and r.stdout == ""


@needs_pyocd
def test_edgevit_flash_with_the_real_pyocd_names_the_pack_to_install(disco_artifact):
    known = get_flasher("pyocd").known_targets(REAL_PYOCD)
    if known is None or "stm32f746nghx" in known:
        pytest.skip("pyocd knows stm32f746nghx here (its pack is installed)")
    r = subprocess.run([EDGEVIT, "flash", str(disco_artifact), "--tool", "pyocd"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 2
    assert "`pyocd pack install stm32f746nghx`" in r.stderr


@needs_arm
def test_edgevit_flash_json_with_a_fake_st_flash(tmp_path, disco_artifact):
    bindir = fake_tool(tmp_path / "bin", "st-flash", stdout="Flash written and verified! jolly good!\n")
    env = {**os.environ, "PATH": f"{bindir}:{SYSTEM_PATH}"}
    r = subprocess.run([EDGEVIT, "flash", str(disco_artifact), "--tool", "st-flash", "--probe", "066DFF", "--json"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert (result["tool"], result["image"], result["probe"]) == ("st-flash", "firmware_board.bin", "066DFF")
    assert recorded_args(bindir, "st-flash")[:2] == ["--serial", "066DFF"]
