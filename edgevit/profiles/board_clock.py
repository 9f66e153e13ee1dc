"""The `board.clock` section of an MCU profile: the clock tree the board firmware sets up, and the clocks it gives.

    clock: {driver: stm32f7-pll, source: hse, hse_hz: 25MHz, pllm: 25, plln: 432, pllp: 2, pllq: 9,
            ahb_div: 1, apb1_div: 4, apb2_div: 2, flash_wait_states: 7, overdrive: true}

`BoardClock` checks the fields its driver takes and `clock_tree(clock)` computes what they give: the PLL's
input and VCO frequencies (checked against their ranges), SYSCLK, the core, AHB and APB clocks (checked
against the chip's limits) and the flash wait states they need. `Board` (board.py) then requires
board.core_clock_hz and board.uart.clock_hz to be what the tree gives, so a profile cannot claim another
clock than the one the firmware runs and counts cycles at. The firmware side (register encodings,
templates clock_<driver>.c) is edgevit/targets/mcu/clock_project.py.

Drivers and their sources:
- stm32f7-pll (STM32F74x/75x, RM0385 "Reset and clock control", DS10916 "General operating conditions"):
  HSI 16 MHz or HSE -> /pllm (VCO input 0.95-2.1 MHz) -> x plln (50..432, VCO 100-432 MHz) -> /pllp (2, 4,
  6, 8) -> SYSCLK; /pllq (2..15) for the 48 MHz domain. Voltage scale 1; SYSCLK/HCLK at most 180 MHz, or
  216 MHz with over-drive; PCLK1 45 MHz (54 with over-drive), PCLK2 90 MHz (108). Flash wait states at
  2.7-3.6 V: one per started 30 MHz of HCLK minus one (RM0385 "Read access latency": 7 WS at 216 MHz).
  Reset: HSI 16 MHz, every prescaler /1.
- stm32h7-pll (STM32H742/743/750/753, RM0433 "RCC", DS12110): HSI 64 MHz or HSE -> /pllm (DIVM1, PLL1 input
  1-16 MHz: medium VCO 150-420 MHz below 2 MHz, wide VCO 192-836 MHz from 2 MHz) -> x plln (DIVN1 4..512) ->
  /pllp (DIVP1, even 2..128) -> SYSCLK -> /core_div (D1CPRE) core -> /ahb_div (HPRE) AXI/AHB -> /apbN_div
  APB1..4. The driver runs the chip at voltage scale VOS1 only (vos: 1), the scale of the 400 MHz rating
  of every silicon revision: core at most 400 MHz, AXI/AHB 200 MHz, APB1..4 100 MHz (ST's
  stm32h7xx_ll_utils.c). VOS0 (480 MHz) needs revision V and the SYSCFG over-drive; VOS2/3 are slower
  and not described here. Flash wait states by AHB clock at VOS1 (RM0433 "FLASH recommended number of
  wait states and programming delay": 0 up to 70 MHz, 1 up to 140, 2 up to 210; WRHIGHFREQ 0 up to
  70 MHz, 1 up to 185, 2 above). Reset: HSI 64 MHz, every prescaler /1, VOS3.
- nrf-hfxo (nRF52840 PS "CLOCK"): the CPU runs at 64 MHz from either source; starting the 64 MHz crystal
  oscillator (HFXO) makes the 16 MHz peripheral clock the UARTE's BAUDRATE is derived from accurate.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgevit.profiles.units import Hz, Text, format_hz

MHZ = 1_000_000
CLOCK_DRIVERS = ("stm32f7-pll", "stm32h7-pll", "nrf-hfxo")  # firmware templates clock_<driver>.c
AHB_DIVIDERS = (1, 2, 4, 8, 16, 64, 128, 256, 512)  # HPRE (and the H7's D1CPRE): no /32
APB_DIVIDERS = (1, 2, 4, 8, 16)  # PPREx / DxPPREx
STM32_UART_ON_APB2 = ("USART1", "USART6")  # F7 and H7: the other USART/UARTs are on APB1 (RM0385, RM0433)
F7_HSI_HZ, H7_HSI_HZ = 16 * MHZ, 64 * MHZ
H7_VOS1_LIMITS = (400, 200, 100)  # core, AXI/AHB, APB MHz at VOS1
# RM0433 "FLASH recommended number of wait states and programming delay" at VOS1: the highest AXI clock, MHz,
# of 0, 1, 2 wait states, and (AXI clock limit MHz, WRHIGHFREQ) steps of the programming delay.
H7_VOS1_FLASH_WS = (70, 140, 210)
H7_VOS1_WRITE_DELAY = ((70, 0), (185, 1), (225, 2))

Divider = Annotated[int, Field(ge=1, strict=True)]

_FIELDS = {  # driver -> (required fields, optional fields); every other field is refused for that driver
    "stm32f7-pll": (("source", "pllm", "plln", "pllp", "pllq", "ahb_div", "apb1_div", "apb2_div",
                     "flash_wait_states", "overdrive"), ("hse_hz", "hse_bypass")),
    "stm32h7-pll": (("source", "pllm", "plln", "pllp", "vos", "core_div", "ahb_div", "apb1_div", "apb2_div",
                     "apb3_div", "apb4_div", "flash_wait_states"), ("hse_hz", "hse_bypass")),
    "nrf-hfxo": ((), ()),
}


@dataclass(frozen=True)
class ClockTree:
    """What a board.clock gives, in Hz: `core_hz`, the bus clocks by name (`buses`: sysclk, ahb, apb1, ...),
    the PLL's input and VCO (exact fractions; 0 without a PLL), and the reset clocks the firmware falls back to when an
    oscillator or the PLL does not start (`reset_core_hz`, `reset_uart_hz`)."""

    driver: str
    core_hz: int
    buses: dict[str, int]
    reset_core_hz: int
    reset_uart_hz: int
    vco_in_hz: Fraction = Fraction(0)
    vco_hz: Fraction = Fraction(0)

    def uart_bus(self, instance: Optional[str]) -> str:
        """The bus whose clock is the kernel clock of UART `instance` (at its reset kernel-clock selection)."""
        if self.driver == "nrf-hfxo":
            return "pclk16m"
        return "apb2" if instance in STM32_UART_ON_APB2 else "apb1"

    def uart_hz(self, instance: Optional[str]) -> int:
        """The kernel clock of UART `instance`, Hz (what board.uart.clock_hz must be)."""
        return self.buses[self.uart_bus(instance)]

    def describe(self) -> str:
        """One line for people, e.g. "core 216 MHz (HSE 25 MHz, VCO 432 MHz), ahb 216 MHz, apb1 54 MHz"."""
        pll = f" (VCO {_mhz(self.vco_hz)})" if self.vco_hz else ""
        buses = ", ".join(f"{name} {format_hz(hz)}" for name, hz in self.buses.items() if name != "sysclk")
        return f"core {format_hz(self.core_hz)}{pll}, {buses}"


class BoardClock(BaseModel):
    """board.clock: which clock driver the board firmware runs and its settings (see the module docstring).

    Unknown fields are errors and values are frozen, like every profile section (board.ProfileSection)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Text
    source: Optional[Literal["hse", "hsi"]] = None  # the PLL's input: the external oscillator or the internal RC
    hse_hz: Optional[Hz] = None  # source hse: the crystal (or, with hse_bypass, the external clock) frequency
    hse_bypass: Optional[bool] = None  # an external clock on OSC_IN (e.g. the ST-LINK's MCO), not a crystal
    pllm: Optional[Divider] = None
    plln: Optional[Divider] = None
    pllp: Optional[Divider] = None
    pllq: Optional[Divider] = None  # stm32f7-pll: the 48 MHz domain's divider
    vos: Optional[Annotated[int, Field(ge=0, le=3, strict=True)]] = None  # stm32h7-pll: voltage scale (1)
    core_div: Optional[Divider] = None  # stm32h7-pll: D1CPRE, SYSCLK -> core
    ahb_div: Optional[Divider] = None  # HPRE
    apb1_div: Optional[Divider] = None
    apb2_div: Optional[Divider] = None
    apb3_div: Optional[Divider] = None  # stm32h7-pll: D1PPRE
    apb4_div: Optional[Divider] = None  # stm32h7-pll: D3PPRE
    flash_wait_states: Optional[Annotated[int, Field(ge=0, le=15, strict=True)]] = None
    overdrive: Optional[bool] = None  # stm32f7-pll: the regulator's over-drive (needed above 180 MHz)

    @model_validator(mode="after")
    def _valid_tree(self) -> "BoardClock":
        if self.driver not in CLOCK_DRIVERS:
            close = difflib.get_close_matches(self.driver, CLOCK_DRIVERS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known drivers: {', '.join(CLOCK_DRIVERS)}"
            raise ValueError(f"driver: no clock driver '{self.driver}' ({hint})")
        required, optional = _FIELDS[self.driver]
        for name in required:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: required for the {self.driver} clock driver")
        for name in BoardClock.model_fields:
            if name != "driver" and name not in required + optional and getattr(self, name) is not None:
                users = [d for d, (req, opt) in _FIELDS.items() if name in req + opt]
                raise ValueError(f"{name}: does not apply to the {self.driver} clock driver"
                                 + (f" (only to {', '.join(users)})" if users else ""))
        if self.source == "hse" and self.hse_hz is None:
            raise ValueError("hse_hz: required with source: hse (the crystal's frequency, e.g. 25MHz)")
        if self.source == "hsi" and (self.hse_hz is not None or self.hse_bypass is not None):
            raise ValueError(f"{'hse_hz' if self.hse_hz is not None else 'hse_bypass'}: only applies with source: hse")
        clock_tree(self)  # every range and limit, with the field to change
        return self


def clock_tree(clock: BoardClock) -> ClockTree:
    """The clocks `clock` gives (ValueError "field: reason" when a range or a chip limit is exceeded)."""
    return {"stm32f7-pll": _stm32f7, "stm32h7-pll": _stm32h7, "nrf-hfxo": _nrf_hfxo}[clock.driver](clock)


def _mhz(hz: Fraction | int) -> str:
    return f"{float(hz) / MHZ:g} MHz"


def _hse(clock: BoardClock, crystal: tuple[int, int], bypass: tuple[int, int], hsi_hz: int) -> int:
    """The PLL's source clock, Hz, with the HSE frequency checked against the oscillator's range."""
    if clock.source == "hsi":
        return hsi_hz
    lo, hi = bypass if clock.hse_bypass else crystal
    if not lo <= clock.hse_hz <= hi:
        what = "an external clock (hse_bypass)" if clock.hse_bypass else "a crystal"
        raise ValueError(f"hse_hz: {format_hz(clock.hse_hz)} is outside {lo / MHZ:g}..{hi / MHZ:g} MHz for {what}")
    return clock.hse_hz


def _divided(value: Fraction, field: str, divider: int, allowed: tuple[int, ...]) -> Fraction:
    if divider not in allowed:
        raise ValueError(f"{field}: {divider} is not a divider of this prescaler (allowed: "
                         f"{', '.join(map(str, allowed))})")
    return value / divider


def _check_limit(field: str, what: str, hz: Fraction, limit_mhz: int, why: str) -> None:
    if hz > limit_mhz * MHZ:
        raise ValueError(f"{field}: {what} would be {_mhz(hz)}, above the {limit_mhz} MHz limit{why}")


def _as_hz(field: str, hz: Fraction) -> int:
    if hz.denominator != 1:
        raise ValueError(f"{field}: the clock it gives, {float(hz):.3f} Hz, is not a whole number of Hz; "
                         "choose dividers that divide evenly")
    return int(hz)


def _stm32f7(c: BoardClock) -> ClockTree:
    ref = Fraction(_hse(c, (4 * MHZ, 26 * MHZ), (1 * MHZ, 50 * MHZ), F7_HSI_HZ))
    if not 2 <= c.pllm <= 63:
        raise ValueError(f"pllm: {c.pllm} is outside 2..63 (RCC_PLLCFGR PLLM)")
    vco_in = ref / c.pllm
    if not Fraction(950_000) <= vco_in <= Fraction(2_100_000):
        raise ValueError(f"pllm: the PLL input {_mhz(ref)} / {c.pllm} = {_mhz(vco_in)} is outside 0.95..2.1 MHz "
                         f"(RM0385 'PLL configuration'; 2 MHz is recommended: pllm {math.ceil(ref / (2 * MHZ))})")
    if not 50 <= c.plln <= 432:
        raise ValueError(f"plln: {c.plln} is outside 50..432 (RCC_PLLCFGR PLLN)")
    vco = vco_in * c.plln
    if not 100 * MHZ <= vco <= 432 * MHZ:
        raise ValueError(f"plln: the VCO {_mhz(vco_in)} x {c.plln} = {_mhz(vco)} is outside 100..432 MHz")
    if c.pllp not in (2, 4, 6, 8):
        raise ValueError(f"pllp: {c.pllp} is not 2, 4, 6 or 8 (RCC_PLLCFGR PLLP)")
    if not 2 <= c.pllq <= 15:
        raise ValueError(f"pllq: {c.pllq} is outside 2..15 (RCC_PLLCFGR PLLQ)")
    sysclk = vco / c.pllp
    od = " with over-drive" if c.overdrive else " without over-drive (set overdrive: true for up to 216 MHz)"
    _check_limit("pllp", "SYSCLK", sysclk, 216 if c.overdrive else 180, od)
    ahb = _divided(sysclk, "ahb_div", c.ahb_div, AHB_DIVIDERS)
    apb1 = _divided(ahb, "apb1_div", c.apb1_div, APB_DIVIDERS)
    apb2 = _divided(ahb, "apb2_div", c.apb2_div, APB_DIVIDERS)
    _check_limit("apb1_div", "APB1 (PCLK1)", apb1, 54 if c.overdrive else 45, od)
    _check_limit("apb2_div", "APB2 (PCLK2)", apb2, 108 if c.overdrive else 90, od)
    need = max(0, math.ceil(ahb / (30 * MHZ)) - 1)
    if c.flash_wait_states < need:
        raise ValueError(f"flash_wait_states: {c.flash_wait_states} is too few for a {_mhz(ahb)} AHB clock: "
                         f"RM0385 'Read access latency' needs at least {need} at 2.7-3.6 V")
    buses = {"sysclk": _as_hz("pllp", sysclk), "ahb": _as_hz("ahb_div", ahb), "apb1": _as_hz("apb1_div", apb1),
             "apb2": _as_hz("apb2_div", apb2)}
    return ClockTree("stm32f7-pll", buses["ahb"], buses, F7_HSI_HZ, F7_HSI_HZ, vco_in, vco)


def h7_input_range(vco_in_hz: Fraction | int) -> tuple[int, bool]:
    """(PLL1RGE code, wide VCO) for a PLL1 input of `vco_in_hz` (RM0433 RCC_PLLCFGR: 1-2, 2-4, 4-8, 8-16 MHz;
    the medium VCO below 2 MHz, the wide one from 2 MHz)."""
    for code, top in enumerate((2, 4, 8)):
        if vco_in_hz < top * MHZ:
            return code, code > 0
    return 3, True


def h7_write_delay(ahb_hz: int) -> int:
    """The flash programming delay WRHIGHFREQ for an AHB (AXI) clock at VOS1 (RM0433 table)."""
    return next(delay for limit, delay in H7_VOS1_WRITE_DELAY if ahb_hz <= limit * MHZ)


def _stm32h7(c: BoardClock) -> ClockTree:
    ref = Fraction(_hse(c, (4 * MHZ, 48 * MHZ), (4 * MHZ, 50 * MHZ), H7_HSI_HZ))
    if c.vos != 1:
        raise ValueError(f"vos: the stm32h7-pll driver runs the chip at VOS1 only (400 MHz, every silicon revision; "
                         f"VOS0's 480 MHz needs revision V and the SYSCFG over-drive); got {c.vos}, use vos: 1")
    if not 1 <= c.pllm <= 63:
        raise ValueError(f"pllm: {c.pllm} is outside 1..63 (RCC_PLLCKSELR DIVM1)")
    vco_in = ref / c.pllm
    if not MHZ <= vco_in <= 16 * MHZ:
        raise ValueError(f"pllm: the PLL1 input {_mhz(ref)} / {c.pllm} = {_mhz(vco_in)} is outside 1..16 MHz "
                         "(RM0433 RCC_PLLCFGR PLL1RGE)")
    if not 4 <= c.plln <= 512:
        raise ValueError(f"plln: {c.plln} is outside 4..512 (RCC_PLL1DIVR DIVN1)")
    vco = vco_in * c.plln
    wide = h7_input_range(vco_in)[1]
    lo, hi = (192, 836) if wide else (150, 420)
    if not lo * MHZ <= vco <= hi * MHZ:
        raise ValueError(f"plln: the VCO {_mhz(vco_in)} x {c.plln} = {_mhz(vco)} is outside {lo}..{hi} MHz (the "
                         f"{'wide' if wide else 'medium'} VCO of a {_mhz(vco_in)} input)")
    if c.pllp % 2 or not 2 <= c.pllp <= 128:
        raise ValueError(f"pllp: {c.pllp} is not an even number 2..128 (PLL1's DIVP1 takes no odd divider)")
    core_max, ahb_max, apb_max = H7_VOS1_LIMITS
    why = " at VOS1"
    sysclk = vco / c.pllp
    core = _divided(sysclk, "core_div", c.core_div, AHB_DIVIDERS)
    _check_limit("pllp" if c.core_div == 1 else "core_div", "the core clock", core, core_max, why)
    ahb = _divided(core, "ahb_div", c.ahb_div, AHB_DIVIDERS)
    _check_limit("ahb_div", "the AXI/AHB clock", ahb, ahb_max, why)
    apbs = {}
    for n in (1, 2, 3, 4):
        field = f"apb{n}_div"
        apbs[f"apb{n}"] = _divided(ahb, field, getattr(c, field), APB_DIVIDERS)
        _check_limit(field, f"APB{n}", apbs[f"apb{n}"], apb_max, why)
    need = next((ws for ws, top in enumerate(H7_VOS1_FLASH_WS) if ahb <= top * MHZ), len(H7_VOS1_FLASH_WS))
    if c.flash_wait_states < need:
        raise ValueError(f"flash_wait_states: {c.flash_wait_states} is too few for a {_mhz(ahb)} AXI clock at VOS1: "
                         f"RM0433 'FLASH recommended number of wait states' needs at least {need}")
    if c.flash_wait_states > 7:
        raise ValueError(f"flash_wait_states: {c.flash_wait_states} is more than FLASH_ACR LATENCY takes (0..7)")
    buses = {"sysclk": _as_hz("pllp", sysclk), "ahb": _as_hz("ahb_div", ahb),
             **{name: _as_hz(f"{name}_div", hz) for name, hz in apbs.items()}}
    return ClockTree("stm32h7-pll", _as_hz("core_div", core), buses, H7_HSI_HZ, H7_HSI_HZ, vco_in, vco)


def _nrf_hfxo(c: BoardClock) -> ClockTree:
    return ClockTree("nrf-hfxo", 64 * MHZ, {"hfclk": 64 * MHZ, "pclk16m": 16 * MHZ}, 64 * MHZ, 16 * MHZ)
