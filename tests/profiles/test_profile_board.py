"""The `board` and `emulator.uart` profile sections: shipped figures and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevit.errors import ProfileError
from edgevit.profiles import load_profile
from edgevit.profiles.profile import Profile

BASE = """\
name: myboard
kind: mcu
core: cortex-m4
clock_hz: 64MHz
memory:
  sram_bytes: 256KiB
  flash_bytes: 1MiB
  regions:
    - {name: RAM, kind: sram, origin: 0x20000000, size_bytes: 256KiB}
    - {name: FLASH, kind: flash, origin: 0x08000000, size_bytes: 1MiB}
emulator:
  kind: qemu-system
  machine: mps2-an386
  memory_map: {code_origin: 0x0, data_origin: 0x20000000}
  uart: {driver: cmsdk-uart, base: 0x40004000, clock_hz: 25MHz}
toolchain:
  cc: arm-none-eabi-gcc
  cflags: [-mcpu=cortex-m4, -mthumb]
board:
  uart: {driver: stm32-usart, family: stm32f7, instance: USART1, base: 0x40011000, clock_hz: 16MHz,
         baud: 115200, tx: PA9, rx: PB7, af: 7, irq: 37}
  cycle_counter: dwt
  load_address: 0x08000000
  flash:
    - {tool: pyocd, target: stm32f746xx}
    - {tool: st-flash}
"""


def load(tmp_path: Path, old: str = "", new: str = "") -> Profile:
    assert old in BASE
    path = tmp_path / "board.yaml"
    path.write_text(BASE.replace(old, new, 1) if old else BASE)
    return load_profile(path)


def error(tmp_path: Path, old: str, new: str) -> str:
    with pytest.raises(ProfileError) as info:
        load(tmp_path, old, new)
    return str(info.value)


def test_a_full_board_section_loads(tmp_path: Path) -> None:
    p = load(tmp_path)
    assert p.board.uart.driver == "stm32-usart" and p.board.uart.base == 0x40011000
    uart = p.board.uart
    assert (uart.clock_hz, uart.baud, uart.tx, uart.irq) == (16_000_000, 115200, "PA9", 37)
    assert p.board.cycle_counter == "dwt" and p.board.load_address == 0x08000000
    assert [(f.tool, f.target, f.args) for f in p.board.flash] == [("pyocd", "stm32f746xx", []),
                                                                   ("st-flash", None, [])]
    assert p.emulator.uart.base == 0x40004000 and p.emulator.uart.baud == 115200  # the default baud


def test_board_is_optional(tmp_path: Path) -> None:
    assert load(tmp_path, BASE[BASE.index("board:"):], "").board is None


@pytest.mark.parametrize("name, driver, base", [
    ("stm32f746-disco", "stm32-usart", 0x40011000), ("stm32h743", "stm32-usart", 0x40004800),
    ("nrf52840", "nrf-uarte", 0x40002000)])
def test_shipped_boards(name: str, driver: str, base: int) -> None:
    p = load_profile(name)
    assert (p.board.uart.driver, p.board.uart.base, p.board.cycle_counter) == (driver, base, "dwt")
    assert p.board.flash and p.board.flash[0].tool == "pyocd"
    assert p.emulator.uart.driver == "cmsdk-uart" and p.emulator.uart.base == 0x40004000


def test_every_shipped_mcu_profile_has_an_emulator_uart() -> None:
    m55 = load_profile("corstone-300")
    assert m55.board is None and m55.emulator.uart.base == 0x59303000
    assert load_profile("stm32f746-disco").board.uart.tx == "PA9"
    assert load_profile("stm32h743").board.uart.rx == "PD9"
    assert load_profile("nrf52840").board.uart.tx == "P0.06"


EMU_UART = "uart: {driver: cmsdk-uart, base: 0x40004000, clock_hz: 25MHz}"


@pytest.mark.parametrize("old, new, expected", [
    ("driver: stm32-usart", "driver: stm32-usrt",
     "board.uart.driver: no UART driver 'stm32-usrt' (did you mean 'stm32-usart'?)"),
    ("tx: PA9", "tx: P0.06", "board.uart.tx: 'P0.06' is not a stm32-usart pin (write it like 'PA9')"),
    ("af: 7, ", "", "board.uart.af: required for the stm32-usart driver"),
    ("baud: 115200", "baud: 2000000", "board.uart.baud: 2000000 is too fast for a 16 MHz UART clock"),
    ("baud: 115200", "baud: 0", "board.uart.baud: must be > 0"),
    ("cycle_counter: dwt", "cycle_counter: cyccnt", "board.cycle_counter: must be 'dwt' or 'systick'"),
    ("load_address: 0x08000000", "load_address: 0x10000000",
     "board.load_address: 0x10000000 is not in a flash region (FLASH @ 0x08000000)"),
    ("load_address: 0x08000000", "load_address: 0x08000100", "board.load_address: 0x08000100 must be a multiple of"),
    ("{tool: pyocd, target: stm32f746xx}", "{tool: pyocd}", "board.flash.0.target: required for pyocd"),
    ("{tool: st-flash}", "{tool: openocd}", "board.flash.1.config: required for openocd"),
    ("  cycle_counter: dwt\n", "  cycle_counter: dwt\n  core_clock: 3\n",
     "board.core_clock: unknown field (did you mean 'core_clock_hz'?)"),
    (EMU_UART, EMU_UART.replace("}", ", tx: PA9}"),
     "emulator.uart.tx: 'PA9' is not a cmsdk-uart pin (this UART has no pin routing)"),
    (EMU_UART, EMU_UART.replace(", clock_hz: 25MHz", ""), "emulator.uart.clock_hz: required field is missing"),
])
def test_board_errors_name_the_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    msg = error(tmp_path, old, new)
    assert expected in msg and "board.yaml:" in msg


def test_dwt_needs_a_core_that_has_one(tmp_path: Path) -> None:
    text = (("core: cortex-m4", "core: cortex-m0plus"), ("-mcpu=cortex-m4", "-mcpu=cortex-m0plus"))
    path = tmp_path / "m0.yaml"
    body = BASE
    for old, new in text:
        body = body.replace(old, new)
    path.write_text(body)
    with pytest.raises(ProfileError, match="board.cycle_counter: a cortex-m0plus has no DWT cycle counter; use systick"):
        load_profile(path)


def test_board_only_for_mcu_profiles(tmp_path: Path) -> None:
    host = (Path(load_profile.__code__.co_filename).parent / "host.yaml").read_text()
    path = tmp_path / "h.yaml"
    path.write_text(host + "board:\n  uart: {driver: cmsdk-uart, base: 0x0, clock_hz: 25MHz}\n"
                    "  cycle_counter: dwt\n  load_address: 0\n")
    with pytest.raises(ProfileError, match="board: only applies to mcu profiles"):
        load_profile(path)


def test_profiles_show_lists_the_board() -> None:
    from edgevit.profiles.cli import _rows

    rows = dict((label, value) for label, value in _rows(load_profile("nrf52840")) if not label.startswith("["))
    assert rows["cycle counter"] == "dwt" and rows["load address"] == "0x00000000"
    assert rows["uart"] == "nrf-uarte UARTE0 @ 0x40002000, 16 MHz, 115200 baud, TX P0.06 RX P0.08, IRQ 2"
    assert rows["flash"].startswith("pyocd nrf52840, nrfjprog")
