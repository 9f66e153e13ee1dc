"""The command line each flasher builds (golden), the registry, and which image each one takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevit.errors import UserInputError
from edgevit.profiles.board import FlashMethod
from edgevit.targets.mcu.flashers import FLASHERS, flasher_names, get_flasher

IMAGE = Path("/tmp/build/firmware.hex")


def test_registry_lists_the_four_tools_in_preference_order():
    assert flasher_names() == ["pyocd", "openocd", "st-flash", "nrfjprog"]
    assert all(FLASHERS[name]().name == name for name in FLASHERS)


def test_unknown_tool_is_a_user_error_with_a_suggestion():
    with pytest.raises(UserInputError, match=r"--tool: edgevit cannot flash with 'py-ocd' \(did you mean 'pyocd'\?\)"):
        get_flasher("py-ocd")


@pytest.mark.parametrize("method, probe, expected", [
    (FlashMethod(tool="pyocd", target="stm32h743xx"), None,
     ["pyocd", "load", "--no-wait", "--target", "stm32h743xx", "/tmp/build/firmware.hex"]),
    (FlashMethod(tool="pyocd", target="nrf52840", args=["-f", "4m"]), "0669FF",
     ["pyocd", "load", "--no-wait", "--target", "nrf52840", "--uid", "0669FF", "-f", "4m", "/tmp/build/firmware.hex"]),
])
def test_pyocd_command(method, probe, expected):
    assert get_flasher("pyocd").command("pyocd", IMAGE, method, probe=probe, load_address=0x08000000) == expected


def test_openocd_command_programs_the_elf_with_verify_reset_exit():
    method = FlashMethod(tool="openocd", config="board/stm32f7discovery.cfg")
    elf = Path("/tmp/my build/firmware.elf")
    assert get_flasher("openocd").command("openocd", elf, method, probe=None, load_address=0x08000000) == [
        "openocd", "-f", "board/stm32f7discovery.cfg", "-c", "program {/tmp/my build/firmware.elf} verify reset exit"]
    with_probe = FlashMethod(tool="openocd", config="board/nordic_nrf52_dk.cfg", args=["-c", "adapter speed 1000"])
    assert get_flasher("openocd").command("/usr/bin/openocd", elf, with_probe, probe="000683", load_address=0) == [
        "/usr/bin/openocd", "-f", "board/nordic_nrf52_dk.cfg", "-c", "adapter speed 1000", "-c",
        "adapter serial 000683", "-c", "program {/tmp/my build/firmware.elf} verify reset exit"]


def test_st_flash_command_writes_the_bin_at_the_load_address():
    method = FlashMethod(tool="st-flash")
    image = Path("/tmp/build/firmware.bin")
    assert get_flasher("st-flash").command("st-flash", image, method, probe=None, load_address=0x08000000) == [
        "st-flash", "--reset", "write", "/tmp/build/firmware.bin", "0x08000000"]
    assert get_flasher("st-flash").command("st-flash", image, method, probe="066DFF", load_address=0x08100000) == [
        "st-flash", "--serial", "066DFF", "--reset", "write", "/tmp/build/firmware.bin", "0x08100000"]


def test_nrfjprog_command_erases_verifies_and_resets():
    assert get_flasher("nrfjprog").command("nrfjprog", IMAGE, FlashMethod(tool="nrfjprog"), probe=None,
                                           load_address=0) == [
        "nrfjprog", "--program", "/tmp/build/firmware.hex", "--chiperase", "--verify", "--reset"]
    assert get_flasher("nrfjprog").command("nrfjprog", IMAGE, FlashMethod(tool="nrfjprog", target="NRF52"),
                                           probe="683123456", load_address=0) == [
        "nrfjprog", "-f", "NRF52", "--snr", "683123456", "--program", "/tmp/build/firmware.hex", "--chiperase",
        "--verify", "--reset"]


@pytest.mark.parametrize("tool, suffix", [("pyocd", ".hex"), ("openocd", ".elf"), ("st-flash", ".bin"),
                                          ("nrfjprog", ".hex")])
def test_each_tool_takes_its_image_from_beside_the_elf(tmp_path, tool, suffix):
    elf = tmp_path / "firmware.elf"
    for s in (".elf", ".hex", ".bin"):
        (tmp_path / f"firmware{s}").write_bytes(b"x")
    assert get_flasher(tool).image_for(elf) == tmp_path / f"firmware{suffix}"


def test_image_named_after_the_whole_elf_name_is_found_too(tmp_path):
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"x")
    (tmp_path / "firmware.elf.bin").write_bytes(b"x")
    assert get_flasher("st-flash").image_for(elf) == tmp_path / "firmware.elf.bin"


def test_missing_image_names_what_was_looked_for(tmp_path):
    from edgevit.backend.errors import RunFailedError

    (tmp_path / "firmware.elf").write_bytes(b"x")
    with pytest.raises(RunFailedError, match=r"no \.bin image beside firmware\.elf .*firmware\.bin, "
                                             r"firmware\.elf\.bin"):
        get_flasher("st-flash").image_for(tmp_path / "firmware.elf")
