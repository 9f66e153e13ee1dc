"""The `board.clock` profile section: the clocks the shipped boards' trees give, and every bad parameter refused with
a message naming the field (PLL input and VCO ranges, chip limits, flash wait states, fields of another driver)
and, for core_clock_hz / uart.clock_hz, both numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevit.errors import ProfileError
from edgevit.profiles import load_profile
from edgevit.profiles.board_clock import clock_tree, h7_input_range, h7_write_delay
from edgevit.profiles.profile import profile_dir

F7_CLOCK = ("clock: {driver: stm32f7-pll, source: hse, hse_hz: 25MHz, pllm: 25, plln: 432, pllp: 2, pllq: 9,\n"
            "          ahb_div: 1, apb1_div: 4, apb2_div: 2, flash_wait_states: 7, overdrive: true}")
H7_CLOCK = ("clock: {driver: stm32h7-pll, source: hse, hse_hz: 8MHz, hse_bypass: true, pllm: 4, plln: 400, pllp: 2,\n"
            "          vos: 1, core_div: 1, ahb_div: 2, apb1_div: 2, apb2_div: 2, apb3_div: 2, apb4_div: 2,\n"
            "          flash_wait_states: 4}")


def shipped_text(name: str) -> str:
    return (profile_dir() / f"{name}.yaml").read_text()


def error(tmp_path: Path, name: str, *changes: tuple[str, str]) -> str:
    """The ProfileError message of shipped profile `name` with each (old, new) replaced once."""
    text = shipped_text(name)
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    return str(info.value)


@pytest.mark.parametrize("name, core, buses, uart", [
    ("stm32f746-disco", 216_000_000, {"sysclk": 216_000_000, "ahb": 216_000_000, "apb1": 54_000_000,
                                      "apb2": 108_000_000}, 108_000_000),
    ("stm32h743", 400_000_000, {"sysclk": 400_000_000, "ahb": 200_000_000, "apb1": 100_000_000,
                                "apb2": 100_000_000, "apb3": 100_000_000, "apb4": 100_000_000}, 100_000_000),
    ("nrf52840", 64_000_000, {"hfclk": 64_000_000, "pclk16m": 16_000_000}, 16_000_000)])
def test_shipped_boards_run_their_rated_clock(name: str, core: int, buses: dict, uart: int) -> None:
    p = load_profile(name)
    tree = clock_tree(p.board.clock)
    assert (tree.core_hz, tree.buses, tree.uart_hz(p.board.uart.instance)) == (core, buses, uart)
    assert p.board.core_clock_hz == core == p.clock_hz  # estimates and measured cycles at the same clock
    assert p.board.uart.clock_hz == uart


def test_shipped_plls_and_their_reset_clocks() -> None:
    f7 = clock_tree(load_profile("stm32f746-disco").board.clock)
    assert (f7.vco_in_hz, f7.vco_hz, f7.reset_core_hz) == (1_000_000, 432_000_000, 16_000_000)
    h7 = clock_tree(load_profile("stm32h743").board.clock)
    assert (h7.vco_in_hz, h7.vco_hz, h7.reset_core_hz, h7.reset_uart_hz) == (2_000_000, 800_000_000, 64_000_000,
                                                                            64_000_000)
    assert h7_input_range(h7.vco_in_hz) == (1, True)  # PLL1RGE 2-4 MHz, wide VCO
    assert [h7_input_range(hz * 1_000_000) for hz in (1, 3, 5, 16)] == [(0, False), (1, True), (2, True), (3, True)]
    assert [h7_write_delay(hz * 1_000_000) for hz in (64, 100, 200)] == [0, 1, 2]
    assert clock_tree(load_profile("nrf52840").board.clock).reset_uart_hz == 16_000_000


def test_clock_is_optional() -> None:
    m55 = load_profile("corstone-300")
    assert m55.board is None  # and a board without clock keeps the reset clocks (test_profile_board.py's BASE)


@pytest.mark.parametrize("name, changes, expected", [
    ("stm32f746-disco", [("pllm: 25, plln: 432", "pllm: 12, plln: 216")],
     "board.clock.plln: the VCO 2.08333 MHz x 216 = 450 MHz is outside 100..432 MHz"),
    ("stm32f746-disco", [("pllm: 25", "pllm: 10")],
     "board.clock.pllm: the PLL input 25 MHz / 10 = 2.5 MHz is outside 0.95..2.1 MHz"),
    ("stm32f746-disco", [("pllp: 2", "pllp: 3")], "board.clock.pllp: 3 is not 2, 4, 6 or 8"),
    ("stm32f746-disco", [("flash_wait_states: 7", "flash_wait_states: 5")],
     "board.clock.flash_wait_states: 5 is too few for a 216 MHz AHB clock: RM0385 'Read access latency' needs at "
     "least 7"),
    ("stm32f746-disco", [("overdrive: true", "overdrive: false")],
     "board.clock.pllp: SYSCLK would be 216 MHz, above the 180 MHz limit without over-drive"),
    ("stm32f746-disco", [("apb1_div: 4", "apb1_div: 2")],
     "board.clock.apb1_div: APB1 (PCLK1) would be 108 MHz, above the 54 MHz limit with over-drive"),
    ("stm32f746-disco", [("ahb_div: 1", "ahb_div: 32")], "board.clock.ahb_div: 32 is not a divider of this prescaler"),
    ("stm32f746-disco", [("hse_hz: 25MHz", "hse_hz: 30MHz")],
     "board.clock.hse_hz: 30 MHz is outside 4..26 MHz for a crystal"),
    ("stm32f746-disco", [("pllq: 9,", "")], "board.clock.pllq: required for the stm32f7-pll clock driver"),
    ("stm32f746-disco", [("overdrive: true", "overdrive: true, vos: 1")],
     "board.clock.vos: does not apply to the stm32f7-pll clock driver (only to stm32h7-pll)"),
    ("stm32f746-disco", [("driver: stm32f7-pll", "driver: stm32f7pll")],
     "board.clock.driver: no clock driver 'stm32f7pll' (did you mean 'stm32f7-pll'?)"),
    ("stm32f746-disco", [("plln: 432", "plln_x: 432")], "board.clock.plln_x: unknown field (did you mean 'plln'?)"),
    ("stm32f746-disco", [("source: hse, hse_hz: 25MHz", "source: hse")],
     "board.clock.hse_hz: required with source: hse"),
    ("stm32f746-disco", [("core_clock_hz: 216MHz", "core_clock_hz: 16MHz")],
     "board.core_clock_hz: 16 MHz (16000000 Hz) is not the core clock board.clock gives: 216 MHz (216000000 Hz;"),
    ("stm32f746-disco", [("  core_clock_hz: 216MHz", "  # no core clock")],
     "board.core_clock_hz: required with board.clock: write core_clock_hz: 216MHz"),
    ("stm32f746-disco", [("clock_hz: 108MHz", "clock_hz: 16MHz")],
     "board.uart.clock_hz: 16 MHz (16000000 Hz) is not the USART1 kernel clock board.clock gives: 108 MHz "
     "(108000000 Hz, its apb2 clock)"),
    ("stm32f746-disco", [("baud: 115200, tx: PA9", "baud: 2000000, tx: PA9")],
     "board.uart.baud: 2000000 is too fast for the 16 MHz reset clock the firmware falls back to"),
    ("stm32f746-disco", [(F7_CLOCK, H7_CLOCK)],
     "board.clock.driver: stm32h7-pll sets up the clocks of chips with a stm32h7 stm32-usart UART, but board.uart "
     "is stm32-usart (stm32f7)"),
    ("stm32h743", [("plln: 400", "plln: 450")], "board.clock.plln: the VCO 2 MHz x 450 = 900 MHz is outside "
                                                "192..836 MHz (the wide VCO of a 2 MHz input)"),
    ("stm32h743", [("pllm: 4", "pllm: 8"), ("plln: 400", "plln: 430")],
     "board.clock.plln: the VCO 1 MHz x 430 = 430 MHz is outside 150..420 MHz (the medium VCO of a 1 MHz input)"),
    ("stm32h743", [("pllp: 2", "pllp: 3")], "board.clock.pllp: 3 is not an even number 2..128"),
    ("stm32h743", [("vos: 1", "vos: 0")], "board.clock.vos: the stm32h7-pll driver runs the chip at VOS1 only"),
    ("stm32h743", [("ahb_div: 2", "ahb_div: 1")],
     "board.clock.ahb_div: the AXI/AHB clock would be 400 MHz, above the 200 MHz limit at VOS1"),
    ("stm32h743", [("plln: 400", "plln: 418")], "board.clock.pllp: the core clock would be 418 MHz, above the "
                                                "400 MHz limit at VOS1"),
    ("stm32h743", [("flash_wait_states: 4", "flash_wait_states: 1")],
     "board.clock.flash_wait_states: 1 is too few for a 200 MHz AXI clock at VOS1"),
    ("stm32h743", [("apb3_div: 2, ", "")], "board.clock.apb3_div: required for the stm32h7-pll clock driver"),
    ("stm32h743", [("clock_hz: 100MHz", "clock_hz: 64MHz")],
     "board.uart.clock_hz: 64 MHz (64000000 Hz) is not the USART3 kernel clock board.clock gives: 100 MHz"),
    ("nrf52840", [("clock: {driver: nrf-hfxo}", "clock: {driver: nrf-hfxo, pllm: 2}")],
     "board.clock.pllm: does not apply to the nrf-hfxo clock driver (only to stm32f7-pll, stm32h7-pll)"),
    ("nrf52840", [("clock_hz: 16MHz", "clock_hz: 32MHz")],
     "board.uart.clock_hz: 32 MHz (32000000 Hz) is not the UARTE0 kernel clock board.clock gives: 16 MHz"),
])
def test_bad_clock_parameters_are_refused_naming_the_field(tmp_path: Path, name: str, changes: list,
                                                           expected: str) -> None:
    msg = error(tmp_path, name, *changes)
    assert expected in msg and f"{name}.yaml:" in msg


def test_profiles_show_lists_the_clock_set_up() -> None:
    from edgevit.profiles.cli import _rows

    rows = dict(_rows(load_profile("stm32f746-disco")))
    assert rows["clock set-up"] == "stm32f7-pll: core 216 MHz (VCO 432 MHz), ahb 216 MHz, apb1 54 MHz, apb2 108 MHz"
    assert rows["core clock"] == "216 MHz"
