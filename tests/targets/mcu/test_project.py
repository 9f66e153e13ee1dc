"""firmware/ and host/ project files generated from the profile (linker script, Makefiles, templates)."""

from __future__ import annotations

import re

import pytest

from edgevit.profiles.profile import list_profiles, load_profile
from edgevit.targets.mcu import project

MCU_PROFILES = [n for n in list_profiles() if load_profile(n).kind == "mcu"]


@pytest.mark.parametrize("name", MCU_PROFILES)
def test_linker_script_uses_emulator_origins_and_device_sizes(name) -> None:
    p = load_profile(name)
    mm = p.emulator.memory_map
    text = project.linker_script(p, arena_bytes=1234, stack_bytes=4096)
    assert f"FLASH (rx)  : ORIGIN = 0x{mm.code_origin:08X}, LENGTH = {p.memory.flash_bytes}" in text
    assert f"RAM   (rwx) : ORIGIN = 0x{mm.data_origin:08X}, LENGTH = {p.memory.sram_bytes}" in text
    assert "EDGEVIT_STACK_BYTES = 4096;" in text and "1234-byte tensor arena" in text
    assert "*(.bss.edgevit_arena)" in text and "ENTRY(Reset_Handler)" in text
    assert "@@" not in text


@pytest.mark.parametrize("name", MCU_PROFILES)
def test_firmware_makefile_uses_the_profile_toolchain(name) -> None:
    p = load_profile(name)
    text = project.firmware_makefile(p, count=7)
    assert f"CC            = {p.toolchain.cc}\n" in text
    assert f"DEVICE_CFLAGS = {' '.join(p.toolchain.cflags)}\n" in text
    assert "EDGEVIT_COUNT ?= 7\n" in text and "-DEDGEVIT_COUNT=$(EDGEVIT_COUNT)" in text
    assert "--specs=rdimon.specs" in text and "-lrdimon" in text and "-O2" in text
    assert re.search(r"^firmware\.elf:", text, re.M) and "$(EXTRA_CFLAGS)" in text
    assert f"-M {p.emulator.machine}" in text


def test_host_makefile_defaults_to_gcc_and_takes_extra_flags() -> None:
    text = project.host_makefile(count=3)
    assert "ifeq ($(origin CC),default)\nCC = gcc\nendif" in text
    assert "EDGEVIT_COUNT ?= 3\n" in text and "$(EXTRA_CFLAGS)" in text and "-DEDGEVIT_HOST" in text
    assert re.search(r"^model_host:", text, re.M) and "../firmware/main.c" in text


def test_project_files_layout(profile) -> None:
    files = project.project_files(profile, 100, 8192, 5)
    assert sorted(files) == ["firmware/Makefile", "firmware/ev_text.h", "firmware/linker.ld", "firmware/main.c",
                             "firmware/startup.c", "host/Makefile"]
    main = files["firmware/main.c"]
    assert "SYST_CSR = 7u" in main and "SYST_RVR = 0xFFFFFFu" in main and '"EV-END "' in main
    startup = files["firmware/startup.c"]
    assert "SysTick_Handler" in startup and "Reset_Handler" in startup and "_sbss" in startup
    assert not any("@@" in t for t in files.values())


def test_render_template_names_a_missing_value() -> None:
    with pytest.raises(KeyError, match="linker.ld: no value for @@"):
        project.render_template("linker.ld", {})
