"""The build projects around the generated model: Cortex-M firmware/ and host/ (docs/mcu-backend.md).

    firmware/startup.c   vector table, Reset_Handler (.data copy, .bss zeroing, FPU enable,
                         semihosting handles), SysTick_Handler counting wraps
    firmware/linker.ld   from the profile: code at emulator.memory_map.code_origin with the
                         DEVICE's flash size, RAM at data_origin with the DEVICE's SRAM size,
                         memory.STACK_BYTES of stack; an over-budget model fails at link time
    firmware/Makefile    the profile's toolchain.cc / cflags / ldflags, -O2, semihosting
                         (--specs=rdimon.specs -lrdimon), target firmware.elf, EDGEVIT_COUNT
    firmware/main.c      the test main shared with the host build (prints `EV ...` lines)
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
        "FLASH_BYTES": int(profile.memory.flash_bytes), "SRAM_BYTES": int(profile.memory.sram_bytes),
        "STACK_BYTES": int(stack_bytes), "ARENA_BYTES": int(arena_bytes)})


def firmware_makefile(profile, count: int) -> str:
    """firmware/Makefile text: the profile's compiler and flags, EDGEVIT_COUNT defaulting to `count`."""
    tc, emu = profile.toolchain, profile.emulator
    return render_template("firmware.mk", {
        "PROFILE": profile.name, "CC": tc.cc, "CFLAGS": " ".join(tc.cflags), "LDFLAGS": " ".join(tc.ldflags),
        "COUNT": int(count), "QEMU": emu.binary or "qemu-system-arm", "MACHINE": emu.machine or "?"})


def host_makefile(count: int) -> str:
    """host/Makefile text: model_host from the same sources, EDGEVIT_COUNT defaulting to `count`."""
    return render_template("host.mk", {"COUNT": int(count)})


def project_files(profile, arena_bytes: int, stack_bytes: int, count: int) -> dict[str, str]:
    """Relative path -> text of every file of firmware/ and host/ (`count`: bundled test vectors)."""
    return {
        "firmware/startup.c": render_template("startup.c", {}),
        "firmware/main.c": render_template("main.c", {}),
        "firmware/linker.ld": linker_script(profile, arena_bytes, stack_bytes),
        "firmware/Makefile": firmware_makefile(profile, count),
        "host/Makefile": host_makefile(count),
    }
