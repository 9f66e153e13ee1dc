"""The board firmware's clock set-up files, from the profile's board.clock (edgevit/profiles/board_clock.py).

    clock_project_files(profile)   # {"firmware/clock.h": ..., "firmware/clock_stm32f7-pll.c": ..., ...}

added by uart_project.py to the board build (`make board`; never to the QEMU builds): clock.h, the
driver template clock_<driver>.c (plus cm7_cache.c on the Cortex-M7 chips; project.clock_driver_sources,
which the Makefile's BOARD_CLOCK lists) and clock_config_board.h,
the driver's settings as C `#define` lines: the dividers of board.clock encoded as their reference
manual's register fields (RM0385 / RM0433 "RCC registers"), the flash wait states, the core clock the
tree gives and the reset clock the firmware falls back to, and the timeouts of its ready-flag waits.
board_uart_defines() adds to uart_config_board.h what the UART side needs: EDGEVIT_BOARD_CLOCK (main.c
calls board_clock_init(), serial_link.c reports the running clock) and the STM32 USART's baud divisor
at the reset clock, for a firmware that fell back.
"""

from __future__ import annotations

import math

from edgevit.profiles.board_clock import clock_tree, h7_input_range, h7_write_delay
from edgevit.profiles.units import format_hz
from edgevit.targets.mcu.project import clock_driver_sources, render_template

HPRE_CODES = {1: 0x0, 2: 0x8, 4: 0x9, 8: 0xA, 16: 0xB, 64: 0xC, 128: 0xD, 256: 0xE, 512: 0xF}  # HPRE, D1CPRE
PPRE_CODES = {1: 0x0, 2: 0x4, 4: 0x5, 8: 0x6, 16: 0x7}  # PPRE1/2 (F7), D1PPRE, D2PPRE1/2, D3PPRE (H7)
H7_VOS_CODES = {1: 3, 2: 2, 3: 1}  # PWR_D3CR VOS of the STM32H743 (its HAL: SCALE1 = VOS_1 | VOS_0 = 3)
TIMEOUT_S = 0.1  # every ready-flag wait lasts at least this long before the firmware falls back


def clock_project_files(profile) -> dict[str, str]:
    """Relative path -> text of the clock set-up files of `profile`'s board build ({} without board.clock)."""
    board = profile.board
    if board is None or board.clock is None:
        return {}
    names = ["clock.h", *clock_driver_sources(board).split()]
    files = {f"firmware/{name}": render_template(name, {}) for name in names}
    files["firmware/clock_config_board.h"] = clock_config_header(profile)
    return files


def clock_config_header(profile) -> str:
    """The text of clock_config_board.h for `profile` (which has a board.clock)."""
    clock = profile.board.clock
    tree = clock_tree(clock)
    defines = [("EDGEVIT_CLOCK_CORE_HZ", f"{tree.core_hz}u", "the core clock of the tree"),
               ("EDGEVIT_CLOCK_RESET_CORE_HZ", f"{tree.reset_core_hz}u", "the core clock after reset (fall-back)"),
               ("EDGEVIT_CLOCK_TIMEOUT_POLLS", f"{math.ceil(tree.reset_core_hz * TIMEOUT_S)}u",
                f"{TIMEOUT_S * 1e3:g} ms of reads at >= 1 cycle each, at the reset clock"),
               ("EDGEVIT_CLOCK_SWITCH_POLLS", f"{math.ceil(max(tree.core_hz, tree.reset_core_hz) * TIMEOUT_S)}u",
                f"{TIMEOUT_S * 1e3:g} ms even at the new core clock")]
    buses = tree.buses
    if clock.driver == "stm32f7-pll":
        defines += _stm32_source(clock) + [
            ("EDGEVIT_CLOCK_PLLM", f"{clock.pllm}u", f"PLL input {_mhz(tree.vco_in_hz)}"),
            ("EDGEVIT_CLOCK_PLLN", f"{clock.plln}u", f"VCO {_mhz(tree.vco_hz)}"),
            ("EDGEVIT_CLOCK_PLLP_CODE", f"{clock.pllp // 2 - 1}u", f"/{clock.pllp}: SYSCLK {_mhz(buses['sysclk'])}"),
            ("EDGEVIT_CLOCK_PLLQ", f"{clock.pllq}u", f"48 MHz domain {_mhz(tree.vco_hz / clock.pllq)}"),
            _prescaler("HPRE", HPRE_CODES, clock.ahb_div, "AHB", buses["ahb"]),
            _prescaler("PPRE1", PPRE_CODES, clock.apb1_div, "APB1", buses["apb1"]),
            _prescaler("PPRE2", PPRE_CODES, clock.apb2_div, "APB2", buses["apb2"]),
            ("EDGEVIT_CLOCK_FLASH_LATENCY", f"{clock.flash_wait_states}u", "flash wait states"),
            ("EDGEVIT_CLOCK_OVERDRIVE", "1u" if clock.overdrive else "0u", "regulator over-drive")]
    elif clock.driver == "stm32h7-pll":
        rge, wide = h7_input_range(tree.vco_in_hz)
        defines += _stm32_source(clock) + [
            ("EDGEVIT_CLOCK_VOS_CODE", f"{H7_VOS_CODES[clock.vos]}u", f"VOS{clock.vos}"),
            ("EDGEVIT_CLOCK_DIVM1", f"{clock.pllm}u", f"PLL1 input {_mhz(tree.vco_in_hz)}"),
            ("EDGEVIT_CLOCK_PLL1RGE", f"{rge}u", "input range 1-2, 2-4, 4-8, 8-16 MHz"),
            ("EDGEVIT_CLOCK_PLL1VCOSEL", "0u" if wide else "1u", f"{'wide' if wide else 'medium'} VCO"),
            ("EDGEVIT_CLOCK_DIVN1", f"{clock.plln - 1}u", f"x{clock.plln}: VCO {_mhz(tree.vco_hz)}"),
            ("EDGEVIT_CLOCK_DIVP1", f"{clock.pllp - 1}u", f"/{clock.pllp}: SYSCLK {_mhz(buses['sysclk'])}"),
            _prescaler("D1CPRE", HPRE_CODES, clock.core_div, "core", tree.core_hz),
            _prescaler("HPRE", HPRE_CODES, clock.ahb_div, "AXI/AHB", buses["ahb"]),
            _prescaler("D2PPRE1", PPRE_CODES, clock.apb1_div, "APB1", buses["apb1"]),
            _prescaler("D2PPRE2", PPRE_CODES, clock.apb2_div, "APB2", buses["apb2"]),
            _prescaler("D1PPRE", PPRE_CODES, clock.apb3_div, "APB3", buses["apb3"]),
            _prescaler("D3PPRE", PPRE_CODES, clock.apb4_div, "APB4", buses["apb4"]),
            ("EDGEVIT_CLOCK_FLASH_LATENCY", f"{clock.flash_wait_states}u", "flash wait states"),
            ("EDGEVIT_CLOCK_WRHIGHFREQ", f"{h7_write_delay(buses['ahb'])}u", "flash programming delay")]
    width = max(len(name) for name, _, _ in defines)
    vwidth = max(len(value) for _, value, _ in defines)
    lines = [f"#define {name.ljust(width)} {value.ljust(vwidth)} /* {why} */" for name, value, why in defines]
    return render_template("clock_config.h", {"PROFILE": profile.name, "DRIVER": clock.driver,
                                              "TREE": tree.describe(), "DEFINES": "\n".join(lines)})


def board_uart_defines(profile) -> list[tuple[str, str]]:
    """The #defines uart_config_board.h gets from board.clock ([] without it): EDGEVIT_BOARD_CLOCK, and
    for an STM32 USART its BRR at the reset kernel clock (the divisor after a fall-back)."""
    board = profile.board
    if board is None or board.clock is None:
        return []
    defines = [("EDGEVIT_BOARD_CLOCK", "1")]
    if board.uart.driver == "stm32-usart":
        reset_hz = clock_tree(board.clock).reset_uart_hz
        defines.append(("EDGEVIT_UART_BRR_RESET", f"{round(reset_hz / board.uart.baud)}u"))
    return defines


def _prescaler(field: str, codes: dict[int, int], divider: int, bus: str, hz) -> tuple[str, str, str]:
    """(EDGEVIT_CLOCK_<field>_CODE, its register encoding of `divider`, a comment naming the bus clock)."""
    return f"EDGEVIT_CLOCK_{field}_CODE", _hex(codes[divider]), f"/{divider}: {bus} {_mhz(hz)}"


def _stm32_source(clock) -> list[tuple[str, str, str]]:
    hse = clock.source == "hse"
    what = f"HSE {format_hz(clock.hse_hz)} {'(external clock)' if clock.hse_bypass else 'crystal'}" if hse else "HSI"
    return [("EDGEVIT_CLOCK_PLL_FROM_HSE", "1u" if hse else "0u", f"PLL source: {what}"),
            ("EDGEVIT_CLOCK_HSE_BYPASS", "1u" if hse and clock.hse_bypass else "0u", "HSEBYP")]


def _mhz(hz) -> str:
    return f"{float(hz) / 1e6:g} MHz"


def _hex(value: int) -> str:
    return f"0x{value:X}u"
