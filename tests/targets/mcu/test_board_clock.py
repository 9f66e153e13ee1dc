"""The board clock drivers (templates clock_<driver>.c, cm7_cache.c) compiled on the host against a simulated chip
(clock_fake_chip.c): the registers they end with, computed by hand from the reference manuals' bit layouts;
every rule of the chip kept on the way (flash wait states before the clock rises, PLL settings only while it
is off, the supply before the voltage scale, caches invalidated before they are enabled); a flag that never
comes makes them fall back to the reset clock and report it. Plus the generated headers' numbers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgevit.profiles.board_clock import clock_tree
from edgevit.profiles.profile import load_profile
from edgevit.targets.mcu.clock_project import clock_config_header, clock_project_files
from edgevit.targets.mcu.project import clock_driver_sources, firmware_makefile, project_files
from edgevit.targets.mcu.uart_project import uart_config_header, uart_project_files

FAKE_CHIP = Path(__file__).with_name("clock_fake_chip.c")
needs_gcc = pytest.mark.skipif(not shutil.which("gcc"), reason="host gcc not installed")
CHIPS = {"stm32f746-disco": "FAKE_F7", "stm32h743": "FAKE_H7", "nrf52840": "FAKE_NRF"}

# The registers after a successful set-up, from RM0385 / RM0433 / the nRF52840 PS field layouts:
F7_OK = {
    "RCC_CR": 0x03030083,  # reset 0x83 (HSION, HSIRDY, HSITRIM 16) + HSEON 16, HSERDY 17, PLLON 24, PLLRDY 25
    # reset 0x24003010 keeps its reserved bit 29; PLLQ 9 << 24, PLLSRC (HSE) bit 22, PLLP /2 = 0, PLLN 432 << 6, PLLM 25
    "RCC_PLLCFGR": 0x20000000 | 9 << 24 | 1 << 22 | 432 << 6 | 25,
    "RCC_CFGR": 5 << 10 | 4 << 13 | 2 << 2 | 2,  # PPRE1 /4 (101), PPRE2 /2 (100), SWS = SW = PLL, HPRE /1
    "RCC_APB1ENR": 1 << 28,  # PWREN
    "PWR_CR1": 0x0000C000 | 1 << 16 | 1 << 17,  # VOS scale 1, ODEN, ODSWEN
    "PWR_CSR1": 1 << 16 | 1 << 17,  # ODRDY, ODSWRDY
    "FLASH_ACR": 7,
    "SCB_CCR": 0x00040200 | 1 << 16 | 1 << 17,  # DC, IC on top of the reset value
}
H7_OK = {
    "RCC_CR": 0x25 | 1 << 16 | 1 << 17 | 1 << 18 | 1 << 24 | 1 << 25,  # HSEON, HSERDY, HSEBYP, PLL1ON, PLL1RDY
    "RCC_CFGR": 3 << 3 | 3,  # SWS = SW = PLL1
    "RCC_D1CFGR": 0x0 << 8 | 0x4 << 4 | 0x8,  # D1CPRE /1, D1PPRE /2 (100), HPRE /2 (1000)
    "RCC_D2CFGR": 0x4 << 8 | 0x4 << 4,  # D2PPRE2 /2, D2PPRE1 /2
    "RCC_D3CFGR": 0x4 << 4,  # D3PPRE /2
    "RCC_PLLCKSELR": 0x02020000 | 4 << 4 | 2,  # DIVM2/3 keep their reset 32; DIVM1 4, PLLSRC HSE
    "RCC_PLLCFGR": 0x01F80000 | 1 << 16 | 1 << 2,  # PLL2/3 outputs as at reset; DIVP1EN only; RGE 2-4 MHz, wide
    "RCC_PLL1DIVR": 0x01010000 | 1 << 9 | 399,  # DIVR1/DIVQ1 as at reset, DIVP1 = 2 - 1, DIVN1 = 400 - 1
    "PWR_CR3": 0x2,  # LDOEN; SCUEN cleared (supply locked), BYPASS off
    "PWR_D3CR": 3 << 14 | 1 << 13,  # VOS1 (11), VOSRDY
    "FLASH_ACR": 2 << 4 | 4,  # WRHIGHFREQ 2, LATENCY 4
    "SCB_CCR": 0x00040200 | 1 << 16 | 1 << 17,
}
NRF_OK = {"CLOCK_EVENTS_HFCLKSTARTED": 0, "CLOCK_HFCLKSTAT": 0x00010001}  # event cleared; SRC Xtal, running


def build_chip(tmp_path: Path, name: str, header: str | None = None) -> Path:
    """The fake chip with profile `name`'s clock driver compiled in (optionally another clock_config_board.h)."""
    profile = load_profile(name)
    firmware = tmp_path / "firmware"
    firmware.mkdir(parents=True)
    for rel, text in clock_project_files(profile).items():
        (tmp_path / rel).write_text(text)
    if header is not None:
        (firmware / "clock_config_board.h").write_text(header)
    driver, *cache = clock_driver_sources(profile.board).split()
    defines = [f'-DCLOCK_DRIVER="{driver}"'] + ([f'-DCACHE_DRIVER="{cache[0]}"'] if cache else [])
    exe = tmp_path / "chip"
    cmd = ["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", f"-D{CHIPS[name]}", *defines, "-I", str(firmware),
           str(FAKE_CHIP), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def run_chip(exe: Path, scenario: str = "ok") -> dict[str, int | list[str]]:
    """NAME -> value of the chip's report, plus "violations": the VIOLATION lines."""
    out = subprocess.run([str(exe), scenario], capture_output=True, text=True, timeout=120, check=True).stdout
    result: dict = {"violations": [line for line in out.splitlines() if line.startswith("VIOLATION ")]}
    for word in out.split():
        if "=" in word:
            key, value = word.split("=")
            result[key] = int(value, 0)
    return result


def registers(result: dict, expected: dict) -> dict:
    return {name: hex(result[name]) for name in expected}


@needs_gcc
def test_stm32f7_reaches_216_mhz_keeping_every_rule(tmp_path: Path) -> None:
    r = run_chip(build_chip(tmp_path, "stm32f746-disco"))
    assert r["violations"] == []
    assert registers(r, F7_OK) == {name: hex(value) for name, value in F7_OK.items()}
    assert (r["BEFORE_CORE_HZ"], r["CORE_HZ"], r["CONFIGURED"]) == (16_000_000, 216_000_000, 1)
    assert (r["DCISW_WRITES"], r["ICIALLU_WRITES"]) == (32 * 4, 1)  # every set of every way, once


@needs_gcc
def test_stm32h7_reaches_400_mhz_keeping_every_rule(tmp_path: Path) -> None:
    r = run_chip(build_chip(tmp_path, "stm32h743"))
    assert r["violations"] == []
    assert registers(r, H7_OK) == {name: hex(value) for name, value in H7_OK.items()}
    assert (r["BEFORE_CORE_HZ"], r["CORE_HZ"], r["CONFIGURED"]) == (64_000_000, 400_000_000, 1)
    assert (r["DCISW_WRITES"], r["ICIALLU_WRITES"]) == (128 * 4, 1)


@needs_gcc
def test_nrf_starts_the_crystal(tmp_path: Path) -> None:
    exe = build_chip(tmp_path, "nrf52840")
    r = run_chip(exe)
    assert r["violations"] == [] and registers(r, NRF_OK) == {k: hex(v) for k, v in NRF_OK.items()}
    assert (r["CORE_HZ"], r["CONFIGURED"]) == (64_000_000, 1)
    dead = run_chip(exe, "xtal")  # no crystal: carries on from the RC oscillator, 64 MHz either way
    assert dead["violations"] == [] and (dead["CORE_HZ"], dead["CONFIGURED"]) == (64_000_000, 0)
    assert dead["CLOCK_HFCLKSTAT"] == 0x00010000  # still the RC (SRC 0), running


@needs_gcc
@pytest.mark.parametrize("name, scenario", [
    ("stm32f746-disco", "hse"), ("stm32f746-disco", "overdrive"), ("stm32f746-disco", "pll"),
    ("stm32f746-disco", "switch"), ("stm32h743", "vos"), ("stm32h743", "hse"), ("stm32h743", "pll"),
    ("stm32h743", "switch")])
def test_a_flag_that_never_comes_falls_back_to_the_reset_clock(tmp_path: Path, name: str, scenario: str) -> None:
    r = run_chip(build_chip(tmp_path, name), scenario)
    reset_hz, hsi_cr = {"stm32f746-disco": (16_000_000, 0x83), "stm32h743": (64_000_000, 0x25)}[name]
    assert r["violations"] == []
    assert (r["CORE_HZ"], r["CONFIGURED"]) == (reset_hz, 0)  # what HELLO reports: the clock that runs
    assert r["RCC_CR"] == hsi_cr  # HSE, HSEBYP and the PLL off again: the reset oscillator state
    assert r["RCC_CFGR"] == 0  # SYSCLK on HSI (SW = SWS = 0), AHB/APB prescalers /1
    if name == "stm32h743":
        assert r["RCC_D1CFGR"] == r["RCC_D2CFGR"] == r["RCC_D3CFGR"] == 0
    else:
        assert r["PWR_CR1"] == 0x0000C000  # over-drive off again
    assert r["SCB_CCR"] & 3 << 16 == 3 << 16  # the caches stay on


@needs_gcc
def test_the_fake_chip_catches_too_few_wait_states(tmp_path: Path) -> None:
    """The harness can fail: with 5 wait states forced into the header, 216 MHz breaks the flash rule."""
    header = clock_config_header(load_profile("stm32f746-disco"))
    assert "EDGEVIT_CLOCK_FLASH_LATENCY 7u" in header
    r = run_chip(build_chip(tmp_path, "stm32f746-disco", header.replace("EDGEVIT_CLOCK_FLASH_LATENCY 7u",
                                                                        "EDGEVIT_CLOCK_FLASH_LATENCY 5u")))
    assert any("too few flash wait states" in line for line in r["violations"])


def header_defines(name: str) -> dict[str, str]:
    text = clock_config_header(load_profile(name))
    return {w[1]: w[2] for w in (line.split() for line in text.splitlines()) if w[:1] == ["#define"] and len(w) > 2}


def test_headers_encode_the_dividers_as_the_register_fields() -> None:
    f7 = header_defines("stm32f746-disco")
    assert (f7["EDGEVIT_CLOCK_PLLM"], f7["EDGEVIT_CLOCK_PLLN"], f7["EDGEVIT_CLOCK_PLLP_CODE"]) == ("25u", "432u", "0u")
    assert (f7["EDGEVIT_CLOCK_PPRE1_CODE"], f7["EDGEVIT_CLOCK_PPRE2_CODE"]) == ("0x5u", "0x4u")  # /4, /2
    assert (f7["EDGEVIT_CLOCK_CORE_HZ"], f7["EDGEVIT_CLOCK_RESET_CORE_HZ"]) == ("216000000u", "16000000u")
    assert f7["EDGEVIT_CLOCK_TIMEOUT_POLLS"] == "1600000u"  # 100 ms at 16 MHz, at least one cycle per read
    h7 = header_defines("stm32h743")
    assert (h7["EDGEVIT_CLOCK_DIVN1"], h7["EDGEVIT_CLOCK_DIVP1"], h7["EDGEVIT_CLOCK_VOS_CODE"]) == ("399u", "1u", "3u")
    assert (h7["EDGEVIT_CLOCK_PLL1RGE"], h7["EDGEVIT_CLOCK_PLL1VCOSEL"], h7["EDGEVIT_CLOCK_WRHIGHFREQ"]) == \
        ("1u", "0u", "2u")
    assert (h7["EDGEVIT_CLOCK_HPRE_CODE"], h7["EDGEVIT_CLOCK_D1CPRE_CODE"]) == ("0x8u", "0x0u")
    assert h7["EDGEVIT_CLOCK_SWITCH_POLLS"] == "40000000u"  # 100 ms at the new 400 MHz


def test_only_board_builds_get_the_clock_files() -> None:
    f7 = load_profile("stm32f746-disco")
    assert sorted(clock_project_files(f7)) == ["firmware/clock.h", "firmware/clock_config_board.h",
                                              "firmware/clock_stm32f7-pll.c", "firmware/cm7_cache.c"]
    assert clock_driver_sources(load_profile("nrf52840").board) == "clock_nrf-hfxo.c"
    m55 = load_profile("corstone-300")  # no board section
    assert clock_project_files(m55) == {} and "BOARD_CLOCK  = \n" in firmware_makefile(m55, 1)
    assert "BOARD_CLOCK  = clock_stm32f7-pll.c cm7_cache.c\n" in firmware_makefile(f7, 1)


def without_clock(name: str):
    """Shipped profile `name` as a board without board.clock: the firmware keeps the reset clocks."""
    p = load_profile(name)
    tree = clock_tree(p.board.clock)
    uart = p.board.uart.model_copy(update={"clock_hz": tree.reset_uart_hz})
    board = p.board.model_copy(update={"clock": None, "core_clock_hz": tree.reset_core_hz, "uart": uart})
    return p.model_copy(update={"board": board})


@pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"), reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("name", ["stm32f746-disco", "nrf52840"])
def test_a_board_without_clock_section_keeps_the_reset_clocks(tmp_path: Path, name: str) -> None:
    from tests.targets.mcu.uart.test_uart_drivers_build import MODEL_C, MODEL_H, VECTORS_C, VECTORS_H

    profile = without_clock(name)
    header = uart_config_header(profile, for_board=True)
    assert "EDGEVIT_BOARD_CLOCK" not in header and "EDGEVIT_UART_BRR_RESET" not in header
    assert f"EDGEVIT_CORE_CLOCK_HZ {clock_tree(load_profile(name).board.clock).reset_core_hz}u" in " ".join(
        header.split())
    files = {**project_files(profile, 1024, 4096, 2), **uart_project_files(profile, 1024, 4096)}
    assert not any("clock" in rel for rel in files)
    files.update({"src/edgevit_model.h": MODEL_H, "src/model.c": MODEL_C, "src/weights.c": "typedef int unused_t;\n",
                  "src/vectors.h": VECTORS_H, "src/vectors.c": VECTORS_C})
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    r = subprocess.run(["make", "-s", "board", "EXTRA_CFLAGS=-Werror"], cwd=tmp_path / "firmware", capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    nm = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "firmware" / "firmware_board.elf")], capture_output=True,
                        text=True, check=True).stdout
    assert "board_clock_init" not in nm and "uart_init" in nm
