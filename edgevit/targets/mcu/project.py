"""The build projects around the generated model: Cortex-M firmware/ and host/ (docs/mcu-backend.md).

    firmware/startup.c   vector table, Reset_Handler (.data copy, .bss zeroing, FPU enable,
                         semihosting handles), SysTick_Handler counting wraps
    firmware/linker.ld   from the profile: code at emulator.memory_map.code_origin with the
                         DEVICE's flash size, RAM at data_origin with the DEVICE's SRAM size,
                         memory.STACK_BYTES of stack; an over-budget model fails at link time
    firmware/Makefile    the profile's toolchain.cc / cflags / ldflags, -O2, semihosting
                         (--specs=rdimon.specs -lrdimon), target firmware.elf, EDGEVIT_COUNT
    firmware/main.c      the test main shared with the host build (prints `EV ...` lines)
    firmware/ev_text.h   the EV line formatting main.c and serial_link.c share
    firmware/Makefile    also `make uart` / `make board`: the UART firmware (uart_project.py adds
                         its sources: serial_link.c, uart_<driver>.c, settings headers, linker_board.ld;
                         for the board also board.clock's clock_<driver>.c, clock_project.py)
    host/Makefile        the same sources with $(CC) (default gcc), EXTRA_CFLAGS, EDGEVIT_COUNT,
                         target model_host

Templates live in `templates/` with `@@NAME@@` placeholders (Makefiles use `$`).
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")


def render_template(name: str, values: dict[str, object]) -> str:
    """Template `templates/<name>` with every `@@KEY@@` replaced by str(values[KEY]).

    Raises KeyError naming the template if a placeholder has no value.
    """
    text = (TEMPLATES / name).read_text()

    def sub(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template {name}: no value for @@{m.group(1)}@@")
        return str(values[m.group(1)])

    return _PLACEHOLDER.sub(sub, text)


def _hex(value: int) -> str:
    return f"0x{int(value):08X}"


def linker_script(profile, arena_bytes: int, stack_bytes: int) -> str:
    """linker.ld text for an MCU profile: FLASH/RAM at the emulator's memory map with the device's
    sizes, `stack_bytes` of stack above .bss (which holds the `arena_bytes` arena)."""
    mm = profile.emulator.memory_map
    return render_template("linker.ld", {
        "PROFILE": profile.name, "CODE_ORIGIN": _hex(mm.code_origin), "DATA_ORIGIN": _hex(mm.data_origin),
        "LAYOUT": "Code and constants at the emulated board's code origin with the DEVICE's flash size; data\n"
                  " * at its data origin with the DEVICE's SRAM size",
        "FLASH_BYTES": int(profile.memory.flash_bytes), "SRAM_BYTES": int(profile.memory.sram_bytes),
        "STACK_BYTES": int(stack_bytes), "ARENA_BYTES": int(arena_bytes)})


def board_linker_script(profile, arena_bytes: int, stack_bytes: int) -> str:
    """linker_board.ld text: like linker_script, but at the real chip's addresses: FLASH from
    board.load_address to the end of the device's flash, RAM at its first SRAM region (the
    profile's memory.regions; data_origin of the emulator when it lists none)."""
    board, memory = profile.board, profile.memory
    flash = sorted(r.origin for r in memory.regions if r.kind == "flash")
    sram = sorted(r.origin for r in memory.regions if r.kind == "sram")
    flash_origin = flash[0] if flash else board.load_address
    return render_template("linker.ld", {
        "PROFILE": f"{profile.name}, the real chip", "CODE_ORIGIN": _hex(board.load_address),
        "LAYOUT": "Code, constants and the .data image in the chip's flash from board.load_address (startup.c\n"
                  " * copies .data to RAM); RAM at the chip's first SRAM region, of the DEVICE's SRAM size",
        "DATA_ORIGIN": _hex(sram[0] if sram else profile.emulator.memory_map.data_origin),
        "FLASH_BYTES": int(memory.flash_bytes) - (board.load_address - flash_origin),
        "SRAM_BYTES": int(memory.sram_bytes), "STACK_BYTES": int(stack_bytes), "ARENA_BYTES": int(arena_bytes)})


def uart_driver_sources(uart) -> str:
    """The firmware sources of a UART driver: uart_<driver>.c, plus the receive ring of the
    interrupt-driven ones ("" for no UART)."""
    if uart is None:
        return ""
    return f"uart_{uart.driver}.c" + ("" if uart.driver == "cmsdk-uart" else " uart_ring.c")


def clock_driver_sources(board) -> str:
    """The firmware sources of board.clock's driver: clock_<driver>.c, plus cm7_cache.c for the
    Cortex-M7 STM32 drivers ("" without a board or its clock section; clock_project.py)."""
    if board is None or board.clock is None:
        return ""
    return f"clock_{board.clock.driver}.c" + (" cm7_cache.c" if board.clock.driver.startswith("stm32") else "")


def firmware_makefile(profile, count: int) -> str:
    """firmware/Makefile text: the profile's compiler and flags, EDGEVIT_COUNT defaulting to `count`;
    targets firmware.elf (semihosting), uart (QEMU's UART) and board (the real chip)."""
    tc, emu, board = profile.toolchain, profile.emulator, profile.board
    return render_template("firmware.mk", {
        "PROFILE": profile.name, "CC": tc.cc, "CFLAGS": " ".join(tc.cflags), "LDFLAGS": " ".join(tc.ldflags),
        "COUNT": int(count), "QEMU": emu.binary or "qemu-system-arm", "MACHINE": emu.machine or "?",
        "QEMU_UART": uart_driver_sources(emu.uart), "BOARD_UART": uart_driver_sources(board and board.uart),
        "BOARD_CLOCK": clock_driver_sources(board),
        "QEMU_UART_NAME": f"{emu.uart.driver} @ {_hex(emu.uart.base)}" if emu.uart else "none: no emulator.uart",
        "BOARD_NAME": (f"{board.uart.instance or board.uart.driver} @ {board.uart.baud} baud, flash at "
                       f"{_hex(board.load_address)}, {board.cycle_counter} ticks") if board else "none: no board section"})


def host_makefile(count: int) -> str:
    """host/Makefile text: model_host from the same sources, EDGEVIT_COUNT defaulting to `count`."""
    return render_template("host.mk", {"COUNT": int(count)})


def project_files(profile, arena_bytes: int, stack_bytes: int, count: int) -> dict[str, str]:
    """Relative path -> text of every file of firmware/ and host/ (`count`: bundled test vectors)."""
    return {
        "firmware/startup.c": render_template("startup.c", {}),
        "firmware/main.c": render_template("main.c", {}),
        "firmware/ev_text.h": render_template("ev_text.h", {}),
        "firmware/linker.ld": linker_script(profile, arena_bytes, stack_bytes),
        "firmware/Makefile": firmware_makefile(profile, count),
        "host/Makefile": host_makefile(count),
    }
