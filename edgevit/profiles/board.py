"""The `board` section of an MCU profile: the physical board's UART, cycle counter, clock, flash layout, flashers.

Also `Uart` for `emulator.uart` (the emulated board's UART). The UART firmware
(edgevit/targets/mcu/uart_firmware.py) renders these numbers into its driver; the serial
runner and `edgevit flash` read the rest. `board.clock` (board_clock.py) is the clock tree the
board firmware sets up; with it, board.core_clock_hz and board.uart.clock_hz must be what that
tree gives (without it the firmware keeps the chip's reset clocks).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgevit.profiles.board_clock import BoardClock, clock_tree
from edgevit.profiles.units import Address, Count, Hz, Text, format_hz


class ProfileSection(BaseModel):
    """Base of every profile section: unknown fields are errors (typos), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


UART_DRIVERS = ("cmsdk-uart", "stm32-usart", "nrf-uarte")  # firmware templates uart_<driver>.c
_STM32_PIN = re.compile(r"^P[A-K](1[0-5]|[0-9])$")  # PA9, PD8: GPIO port letter and pin 0..15
_NRF_PIN = re.compile(r"^P[01]\.([0-2][0-9]|3[01])$")  # P0.06, P1.02: GPIO port and pin 0..31
CORES_WITH_DWT = ("cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85")


class Uart(ProfileSection):
    """The UART the firmware speaks docs/serial-protocol.md on: which driver, where, its clock and pins.

    `driver` names the firmware template `uart_<driver>.c`; `base` is the peripheral's register base,
    `clock_hz` the peripheral (kernel) clock the baud divisor is computed from, `irq` its NVIC
    interrupt number (receive interrupt on real chips). STM32 only: `af` (the pins' alternate
    function) and `family` (the RCC/GPIO register layout).
    """

    driver: Text
    instance: Optional[Text] = None  # e.g. USART1, UARTE0: for people and the driver's clock enable
    base: Address
    clock_hz: Hz
    baud: Count = 115200
    tx: Optional[Text] = None  # pin names as the datasheet writes them: PA9 (STM32), P0.06 (nRF)
    rx: Optional[Text] = None
    irq: Optional[Annotated[int, Field(ge=0, le=495, strict=True)]] = None
    af: Optional[Annotated[int, Field(ge=0, le=15, strict=True)]] = None  # stm32-usart: GPIO AFn
    family: Optional[Literal["stm32f7", "stm32h7"]] = None  # stm32-usart: RCC and GPIO layout

    @model_validator(mode="after")
    def _fits_driver(self) -> "Uart":
        if self.driver not in UART_DRIVERS:
            close = difflib.get_close_matches(self.driver, UART_DRIVERS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known drivers: {', '.join(UART_DRIVERS)}"
            raise ValueError(f"driver: no UART driver '{self.driver}' ({hint})")
        if self.driver in ("cmsdk-uart", "stm32-usart") and self.clock_hz < 16 * self.baud:
            raise ValueError(f"baud: {self.baud} is too fast for a {format_hz(self.clock_hz)} UART clock "
                             f"(the divisor clock_hz / baud must be at least 16)")
        needed = {"stm32-usart": ("instance", "tx", "rx", "irq", "af", "family"),
                  "nrf-uarte": ("tx", "rx", "irq")}.get(self.driver, ())
        for field in needed:
            if getattr(self, field) is None:
                raise ValueError(f"{field}: required for the {self.driver} driver")
        pin = {"stm32-usart": (_STM32_PIN, "PA9"), "nrf-uarte": (_NRF_PIN, "P0.06")}.get(self.driver)
        for field in ("tx", "rx"):
            value = getattr(self, field)
            if value is not None and (pin is None or not pin[0].match(value)):
                raise ValueError(f"{field}: {value!r} is not a {self.driver} pin" +
                                 (f" (write it like '{pin[1]}')" if pin else " (this UART has no pin routing)"))
        for field in ("af", "family"):
            if getattr(self, field) is not None and self.driver != "stm32-usart":
                raise ValueError(f"{field}: only applies to the stm32-usart driver")
        return self


class FlashMethod(ProfileSection):
    """One way to flash the board: a tool (pyocd, openocd, st-flash, nrfjprog, ...) and its settings."""

    tool: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    target: Optional[Text] = None  # pyocd: its target name (e.g. stm32f746xx)
    config: Optional[Text] = None  # openocd: a -f config (e.g. board/stm32f7discovery.cfg)
    args: list[str] = []  # extra arguments for the tool

    @model_validator(mode="after")
    def _settings_for_tool(self) -> "FlashMethod":
        if self.tool == "pyocd" and not self.target:
            raise ValueError("target: required for pyocd (its target name, see `pyocd list --targets`)")
        if self.tool == "openocd" and not self.config:
            raise ValueError("config: required for openocd (a config file such as board/stm32f7discovery.cfg)")
        return self


# The UART drivers each clock driver's chip family has (board.clock.driver -> board.uart driver, family).
CLOCK_UARTS = {"stm32f7-pll": ("stm32-usart", "stm32f7"), "stm32h7-pll": ("stm32-usart", "stm32h7"),
               "nrf-hfxo": ("nrf-uarte", None)}


class Board(ProfileSection):
    """The physical board: its UART for the serial runner, its cycle counter, clock, flash layout and flashers."""

    uart: Uart
    cycle_counter: Literal["dwt", "systick"]
    core_clock_hz: Optional[Hz] = None  # the core clock the firmware runs at (None: the profile's clock_hz)
    clock: Optional[BoardClock] = None  # the clock tree the firmware sets up (None: the reset clocks)
    load_address: Address  # where the flash image (and the vector table) starts on the real chip
    flash: list[FlashMethod] = []  # in order of preference: the first whose tool is installed is used

    @model_validator(mode="after")
    def _vector_table_aligned(self) -> "Board":
        if self.load_address % 0x200:
            raise ValueError(f"load_address: 0x{self.load_address:08X} must be a multiple of 0x200 (the vector "
                             "table starts there and VTOR needs it aligned)")
        return self

    @model_validator(mode="after")
    def _clocks_are_the_trees(self) -> "Board":
        """With board.clock, core_clock_hz and uart.clock_hz must be what its clock tree gives."""
        if self.clock is None:
            return self
        driver, family = CLOCK_UARTS[self.clock.driver]
        if (self.uart.driver, self.uart.family) != (driver, family):
            chip = f"a {family} {driver}" if family else f"an {driver}"
            uart = self.uart.driver + (f" ({self.uart.family})" if self.uart.family else "")
            raise ValueError(f"clock.driver: {self.clock.driver} sets up the clocks of chips with {chip} UART, but "
                             f"board.uart is {uart}")
        tree = clock_tree(self.clock)
        if self.core_clock_hz is None:
            raise ValueError(f"core_clock_hz: required with board.clock: write core_clock_hz: "
                             f"{format_hz(tree.core_hz).replace(' ', '')} (board.clock gives {tree.describe()})")
        if self.core_clock_hz != tree.core_hz:
            raise ValueError(f"core_clock_hz: {format_hz(self.core_clock_hz)} ({self.core_clock_hz} Hz) is not the "
                             f"core clock board.clock gives: {format_hz(tree.core_hz)} ({tree.core_hz} Hz; "
                             f"{tree.describe()})")
        if self.uart.driver == "stm32-usart" and tree.reset_uart_hz < 16 * self.uart.baud:
            raise ValueError(f"uart.baud: {self.uart.baud} is too fast for the {format_hz(tree.reset_uart_hz)} reset "
                             "clock the firmware falls back to when board.clock's set-up fails (divisor below 16)")
        uart_hz, bus = tree.uart_hz(self.uart.instance), tree.uart_bus(self.uart.instance)
        if self.uart.clock_hz != uart_hz:
            name = self.uart.instance or self.uart.driver
            raise ValueError(f"uart.clock_hz: {format_hz(self.uart.clock_hz)} ({self.uart.clock_hz} Hz) is not the "
                             f"{name} kernel clock board.clock gives: {format_hz(uart_hz)} ({uart_hz} Hz, its "
                             f"{bus} clock)")
        return self
