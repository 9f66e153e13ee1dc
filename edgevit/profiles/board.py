"""The `board` section of an MCU profile: the physical board's UART, cycle counter, flash layout, flashers.

Also `Uart` for `emulator.uart` (the emulated board's UART). The UART firmware
(edgevit/targets/mcu/uart_firmware.py) renders these numbers into its driver; the serial
runner and `edgevit flash` read the rest.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class Board(ProfileSection):
    """The physical board: its UART for the serial runner, its cycle counter, flash layout and flashers."""

    uart: Uart
    cycle_counter: Literal["dwt", "systick"]
    core_clock_hz: Optional[Hz] = None  # the core clock the firmware runs at (None: the profile's clock_hz)
    load_address: Address  # where the flash image (and the vector table) starts on the real chip
    flash: list[FlashMethod] = []  # in order of preference: the first whose tool is installed is used

    @model_validator(mode="after")
    def _vector_table_aligned(self) -> "Board":
        if self.load_address % 0x200:
            raise ValueError(f"load_address: 0x{self.load_address:08X} must be a multiple of 0x200 (the vector "
                             "table starts there and VTOR needs it aligned)")
        return self
