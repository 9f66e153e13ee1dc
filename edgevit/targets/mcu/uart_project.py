"""The UART firmware's project files: the serial link, UART drivers, settings headers, board layout.

    uart_project_files(profile, arena_bytes, stack_bytes)   # {"firmware/serial_link.c": ..., ...}

added to the artifact's firmware/ beside the semihosting project (project.py), for the
Makefile's `make uart` (QEMU: emulator.uart, QEMU's memory map) and `make board` (the real chip:
board.uart, linker_board.ld at board.load_address). The settings headers are C `#define` lines
rendered from the profile (uart_config_header), so no driver is edited per board: the register
base, the divisor for the baud rate (CMSDK BAUDDIV, STM32 BRR, nRF BAUDRATE), pins, the
interrupt, the clock-enable bits of the STM32 family's RCC, and the tick clock (SysTick or DWT
CYCCNT) with its ticks per millisecond (the protocol's byte timeout) and the core clock the
HELLO reply reports. A board with a `board.clock` also gets its clock set-up (clock_project.py:
clock.h, clock_<driver>.c, clock_config_board.h) and EDGEVIT_BOARD_CLOCK in uart_config_board.h;
the QEMU build never does.
"""

from __future__ import annotations

import re

from edgevit.errors import UserInputError
from edgevit.targets.mcu.clock_project import board_uart_defines, clock_project_files
from edgevit.targets.mcu.project import board_linker_script, render_template, uart_driver_sources
from edgevit.targets.mcu.runners.qemu import INSTRUCTIONS_PER_TICK

COMMON_TEMPLATES = ("serial_link.c", "serial_link.h", "uart.h")
TICK_KINDS = {"systick": 1, "dwt": 2}  # the HELLO reply's tick kind (docs/serial-protocol.md)

# STM32 reset and clock control (RM0385 / RM0433, "RCC registers"): base, the GPIO ports' clock-enable
# register (bit n = port A + n), and per USART/UART instance its clock-enable register and bit.
# GPIO ports: base + 0x400 per port (A = 0).
STM32_FAMILIES = {
    "stm32f7": {"rcc": 0x40023800, "gpio": 0x40020000, "gpio_enr": 0x30,  # RCC_AHB1ENR
                "uart_enr": {"USART1": (0x44, 4), "USART6": (0x44, 5),  # RCC_APB2ENR
                             "USART2": (0x40, 17), "USART3": (0x40, 18), "UART4": (0x40, 19),  # RCC_APB1ENR
                             "UART5": (0x40, 20), "UART7": (0x40, 30), "UART8": (0x40, 31)}},
    "stm32h7": {"rcc": 0x58024400, "gpio": 0x58020000, "gpio_enr": 0xE0,  # RCC_AHB4ENR
                "uart_enr": {"USART1": (0xF0, 4), "USART6": (0xF0, 5),  # RCC_APB2ENR
                             "USART2": (0xE8, 17), "USART3": (0xE8, 18), "UART4": (0xE8, 19),  # RCC_APB1LENR
                             "UART5": (0xE8, 20), "UART7": (0xE8, 30), "UART8": (0xE8, 31)}},
}


def uart_project_files(profile, arena_bytes: int, stack_bytes: int) -> dict[str, str]:
    """Relative path -> text of the UART firmware's files for `profile`: the serial link and uart.h,
    the driver and settings header of emulator.uart (if any) and of board.uart plus linker_board.ld
    and the board.clock set-up (if the profile has a board section)."""
    files = {f"firmware/{name}": render_template(name, {}) for name in COMMON_TEMPLATES}
    for for_board, uart in ((False, profile.emulator.uart), (True, profile.board and profile.board.uart)):
        if uart is None:
            continue
        for source in uart_driver_sources(uart).split():
            files[f"firmware/{source}"] = render_template(source, {})
        if uart.driver != "cmsdk-uart":
            files["firmware/uart_ring.h"] = render_template("uart_ring.h", {})
        files[f"firmware/uart_config_{'board' if for_board else 'qemu'}.h"] = uart_config_header(
            profile, for_board=for_board)
    if profile.board is not None:
        files["firmware/linker_board.ld"] = board_linker_script(profile, arena_bytes, stack_bytes)
        files.update(clock_project_files(profile))
    return files


def uart_of(profile, *, for_board: bool):
    """The Uart a build uses: profile.board.uart (for_board) or profile.emulator.uart; UserInputError
    naming the missing profile section."""
    if for_board:
        if profile.board is None:
            raise UserInputError(f"profile {profile.name!r} has no `board:` section, so there is no real board to "
                                 "build for; add board.uart, board.cycle_counter and board.load_address to the "
                                 "profile (see edgevit/profiles/stm32f746-disco.yaml)")
        return profile.board.uart
    if profile.emulator.uart is None:
        raise UserInputError(f"profile {profile.name!r} has no `emulator.uart`, so the UART firmware cannot run on "
                             f"its QEMU board {profile.emulator.machine!r}; add e.g. `uart: {{driver: cmsdk-uart, "
                             "base: 0x40004000, clock_hz: 25MHz}` under emulator:")
    return profile.emulator.uart


def tick_clock(profile, *, for_board: bool) -> tuple[str, int, int]:
    """(kind "systick" | "dwt", ticks per millisecond, core clock Hz for the HELLO reply).

    On QEMU, SysTick counts virtual time (-icount: one instruction per ns), so a millisecond is
    1e6 / INSTRUCTIONS_PER_TICK ticks and the reported clock is the profile's (what latencies are
    estimated at). On the board, the core clock is board.core_clock_hz (default clock_hz); SysTick
    and DWT both count it."""
    if for_board:
        board = profile.board
        clock = board.core_clock_hz or profile.clock_hz
        return board.cycle_counter, max(1, clock // 1000), clock
    per_tick = INSTRUCTIONS_PER_TICK.get(profile.emulator.machine)
    if per_tick is None:
        raise UserInputError(f"QEMU machine {profile.emulator.machine!r} of profile {profile.name!r} has no calibrated "
                             "instructions-per-tick figure (edgevit/targets/mcu/runners/qemu.py), needed for the "
                             "UART firmware's timeouts")
    return "systick", round(1e6 / per_tick), profile.clock_hz


def uart_config_header(profile, *, for_board: bool) -> str:
    """The text of uart_config_qemu.h / uart_config_board.h for `profile` (see the module docstring)."""
    uart = uart_of(profile, for_board=for_board)
    kind, per_ms, clock = tick_clock(profile, for_board=for_board)
    defines = [("EDGEVIT_UART_BASE", _hex(uart.base)), ("EDGEVIT_UART_CLOCK_HZ", f"{uart.clock_hz}u"),
               ("EDGEVIT_UART_BAUD", f"{uart.baud}u"), ("EDGEVIT_TICK_KIND", f"{TICK_KINDS[kind]}u"),
               ("EDGEVIT_TICKS_PER_MS", f"{per_ms}u"), ("EDGEVIT_CORE_CLOCK_HZ", f"{clock}u")]
    if kind == "dwt":
        defines.append(("EDGEVIT_TICKS_DWT", "1"))
    defines += _driver_defines(uart, profile.name)
    if for_board:
        defines += board_uart_defines(profile)
    width = max(len(name) for name, _ in defines)
    lines = [f"#define {name.ljust(width)} {value}" for name, value in defines]
    return render_template("uart_config.h", {
        "WHERE": "board" if for_board else "QEMU", "PROFILE": profile.name,
        "SECTION": "board.uart" if for_board else "emulator.uart", "DEFINES": "\n".join(lines)})


def _driver_defines(uart, profile_name: str) -> list[tuple[str, str]]:
    if uart.driver == "cmsdk-uart":
        return [("EDGEVIT_UART_BAUDDIV", f"{uart.clock_hz // uart.baud}u")]
    if uart.driver == "stm32-usart":
        family = STM32_FAMILIES[uart.family]
        if uart.instance not in family["uart_enr"]:
            raise UserInputError(f"profile {profile_name!r}: board.uart.instance {uart.instance!r} is not a "
                                 f"{uart.family} USART/UART; known: {', '.join(family['uart_enr'])}")
        enr, bit = family["uart_enr"][uart.instance]
        (tx_port, tx_pin), (rx_port, rx_pin) = _stm32_pin(uart.tx), _stm32_pin(uart.rx)
        return [("EDGEVIT_UART_IRQ", str(uart.irq)), ("EDGEVIT_UART_BRR", f"{round(uart.clock_hz / uart.baud)}u"),
                ("EDGEVIT_UART_AF", f"{uart.af}u"), ("EDGEVIT_UART_TX_PORT", f"{tx_port}u"),
                ("EDGEVIT_UART_TX_PIN", f"{tx_pin}u"), ("EDGEVIT_UART_RX_PORT", f"{rx_port}u"),
                ("EDGEVIT_UART_RX_PIN", f"{rx_pin}u"), ("EDGEVIT_STM32_RCC_BASE", _hex(family["rcc"])),
                ("EDGEVIT_STM32_GPIO_BASE", _hex(family["gpio"])),
                ("EDGEVIT_STM32_GPIO_ENR", _hex(family["gpio_enr"])),
                ("EDGEVIT_STM32_UART_ENR", _hex(enr)), ("EDGEVIT_STM32_UART_ENR_BIT", f"{bit}u")]
    if uart.driver == "nrf-uarte":
        (tx_port, tx_pin), (rx_port, rx_pin) = _nrf_pin(uart.tx), _nrf_pin(uart.rx)
        return [("EDGEVIT_UART_IRQ", str(uart.irq)),
                ("EDGEVIT_NRF_BAUDRATE", _hex(nrf_baudrate(uart.baud, uart.clock_hz))),
                ("EDGEVIT_UART_TX_PORT", f"{tx_port}u"), ("EDGEVIT_UART_TX_PIN", f"{tx_pin}u"),
                ("EDGEVIT_UART_RX_PORT", f"{rx_port}u"), ("EDGEVIT_UART_RX_PIN", f"{rx_pin}u")]
    raise UserInputError(f"profile {profile_name!r}: no firmware for UART driver {uart.driver!r}")


def nrf_baudrate(baud: int, clock_hz: int) -> int:
    """The nRF UART(E) BAUDRATE register value for `baud`: baud * 2^32 / clock, rounded to a multiple
    of 4096 (115200 -> 0x01D7E000, 9600 -> 0x00275000, as the product specification lists)."""
    return ((round(baud * (1 << 32) / clock_hz) + 0x800) >> 12) << 12


def _stm32_pin(name: str) -> tuple[int, int]:
    """"PA9" -> (0, 9): GPIO port index (A = 0) and pin."""
    m = re.fullmatch(r"P([A-K])(\d+)", name)
    return ord(m.group(1)) - ord("A"), int(m.group(2))


def _nrf_pin(name: str) -> tuple[int, int]:
    """"P0.06" -> (0, 6): GPIO port and pin."""
    port, pin = name[1:].split(".")
    return int(port), int(pin)


def _hex(value: int) -> str:
    return f"0x{int(value):08X}u"
