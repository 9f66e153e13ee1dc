"""The UART firmware's generated files, per profile: settings headers with the right register numbers,
every driver compiling with -Wall -Wextra -Werror for its profile, and whole UART / board firmware
linking with the generated Makefile (a stand-in model, so no model is compiled here): no
semihosting, the board image starting from the chip's flash with the UART interrupt in its table."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from edgevit.errors import UserInputError
from edgevit.profiles.profile import list_profiles, load_profile
from edgevit.targets.mcu import project
from edgevit.targets.mcu.uart_project import nrf_baudrate, uart_config_header, uart_of, uart_project_files

needs_arm_gcc = pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"), reason="arm-none-eabi-gcc not installed")
MCU = [n for n in list_profiles() if load_profile(n).kind == "mcu"]
BUILDS = [(n, b) for n in MCU for b in (False, True) if (load_profile(n).board is not None or not b)]
WERROR = ["-Wall", "-Wextra", "-Werror"]

# A stand-in model: output[k] = the wrapping sum of the inputs j with j % 10 == k (any C would do).
MODEL_H = """#ifndef EDGEVIT_MODEL_H
#define EDGEVIT_MODEL_H
#include <stdint.h>
#define EDGEVIT_INPUT_SIZE 64
#define EDGEVIT_OUTPUT_SIZE 10
typedef int8_t edgevit_in_t;
typedef int8_t edgevit_out_t;
int edgevit_run(const edgevit_in_t *input, edgevit_out_t *output);
#endif
"""
MODEL_C = """#include "edgevit_model.h"
int edgevit_run(const edgevit_in_t *input, edgevit_out_t *output) {
  for (int k = 0; k < EDGEVIT_OUTPUT_SIZE; k++) output[k] = 0;
  for (int j = 0; j < EDGEVIT_INPUT_SIZE; j++) output[j % 10] = (edgevit_out_t)(output[j % 10] + input[j]);
  return 0;
}
"""
VECTORS_H = """#ifndef EDGEVIT_VECTORS_H
#define EDGEVIT_VECTORS_H
#include "edgevit_model.h"
#define EDGEVIT_VECTOR_COUNT 2
extern const edgevit_in_t edgevit_vector_inputs[128];
#endif
"""
VECTORS_C = '#include "vectors.h"\nconst edgevit_in_t edgevit_vector_inputs[128] = {1, 2, 3};\n'


def write_project(root: Path, name: str) -> Path:
    """The firmware/ project (semihosting + UART files) of profile `name` around the stand-in model."""
    profile = load_profile(name)
    files = {**project.project_files(profile, 1024, 4096, 2), **uart_project_files(profile, 1024, 4096)}
    files.update({"src/edgevit_model.h": MODEL_H, "src/model.c": MODEL_C, "src/weights.c": "typedef int unused_t;\n",
                  "src/vectors.h": VECTORS_H, "src/vectors.c": VECTORS_C})
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "firmware"


def defines(name: str, for_board: bool) -> dict[str, str]:
    """The #define lines of a profile's settings header, {name: value}."""
    text = uart_config_header(load_profile(name), for_board=for_board)
    return {w[1]: w[2] for w in (line.split() for line in text.splitlines()) if w[:1] == ["#define"] and len(w) == 3}


def test_settings_headers_carry_the_profiles_numbers() -> None:
    f7 = defines("stm32f746-disco", True)
    assert (f7["EDGEVIT_UART_BASE"], f7["EDGEVIT_UART_IRQ"], f7["EDGEVIT_TICKS_DWT"]) == ("0x40011000u", "37", "1")
    assert f7["EDGEVIT_UART_BRR"] == "938u"  # PCLK2 108 MHz / 115200 (937.5), oversampling by 16
    assert f7["EDGEVIT_UART_BRR_RESET"] == "139u"  # 16 MHz (HSI) / 115200: the divisor after a clock fall-back
    assert (f7["EDGEVIT_STM32_UART_ENR"], f7["EDGEVIT_STM32_UART_ENR_BIT"]) == ("0x00000044u", "4u")  # APB2ENR
    assert (f7["EDGEVIT_UART_TX_PORT"], f7["EDGEVIT_UART_TX_PIN"], f7["EDGEVIT_UART_RX_PORT"]) == ("0u", "9u", "1u")
    assert (f7["EDGEVIT_TICK_KIND"], f7["EDGEVIT_CORE_CLOCK_HZ"]) == ("2u", "216000000u")  # DWT at board.clock's 216 MHz
    assert f7["EDGEVIT_TICKS_PER_MS"] == "216000u" and f7["EDGEVIT_BOARD_CLOCK"] == "1"
    h7 = defines("stm32h743", True)
    assert (h7["EDGEVIT_UART_BRR"], h7["EDGEVIT_STM32_RCC_BASE"]) == ("868u", "0x58024400u")  # PCLK1 100 MHz
    assert (h7["EDGEVIT_UART_BRR_RESET"], h7["EDGEVIT_CORE_CLOCK_HZ"]) == ("556u", "400000000u")  # HSI 64 MHz
    assert (h7["EDGEVIT_STM32_UART_ENR"], h7["EDGEVIT_STM32_UART_ENR_BIT"]) == ("0x000000E8u", "18u")  # APB1LENR
    assert (h7["EDGEVIT_UART_TX_PORT"], h7["EDGEVIT_UART_TX_PIN"]) == ("3u", "8u")  # PD8
    nrf = defines("nrf52840", True)
    assert (nrf["EDGEVIT_NRF_BAUDRATE"], nrf["EDGEVIT_UART_RX_PIN"]) == ("0x01D7E000u", "8u")
    assert nrf["EDGEVIT_UART_IRQ"] == "2"
    assert "EDGEVIT_UART_BRR_RESET" not in nrf and nrf["EDGEVIT_BOARD_CLOCK"] == "1"  # the UARTE: 16 MHz always
    qemu = defines("stm32f746-disco", False)
    assert (qemu["EDGEVIT_UART_BAUDDIV"], qemu["EDGEVIT_TICK_KIND"]) == ("217u", "1u")
    assert "EDGEVIT_BOARD_CLOCK" not in qemu  # the QEMU build never sets up a board's clock
    assert qemu["EDGEVIT_TICKS_PER_MS"] == "25000u" and "EDGEVIT_TICKS_DWT" not in qemu  # SysTick, 25 MHz virtual
    assert "EDGEVIT_UART_IRQ" not in qemu  # polled on QEMU
    assert defines("corstone-300", False)["EDGEVIT_TICKS_PER_MS"] == "32000u"


def test_nrf_baudrate_matches_the_product_specification_table() -> None:
    assert [nrf_baudrate(b, 16_000_000) for b in (9600, 115200, 1_000_000)] == [0x00275000, 0x01D7E000, 0x10000000]


def test_a_profile_without_a_board_says_so() -> None:
    with pytest.raises(UserInputError, match="profile 'corstone-300' has no `board:` section"):
        uart_of(load_profile("corstone-300"), for_board=True)
    assert "firmware/linker_board.ld" not in uart_project_files(load_profile("corstone-300"), 1024, 4096)


@needs_arm_gcc
@pytest.mark.parametrize("name, for_board", BUILDS)
def test_driver_compiles_with_werror(tmp_path: Path, name: str, for_board: bool) -> None:
    firmware = write_project(tmp_path, name)
    profile = load_profile(name)
    uart = uart_of(profile, for_board=for_board)
    config = f'-DEDGEVIT_UART_CONFIG="uart_config_{"board" if for_board else "qemu"}.h"'
    sources = project.uart_driver_sources(uart).split() + ["serial_link.c", "startup.c", "main.c"]
    sources += project.clock_driver_sources(profile.board).split() if for_board else []
    for source in sources:
        cmd = [profile.toolchain.cc, *profile.toolchain.cflags, "-O2", "-std=c99", *WERROR, "-I../src",
               "-DEDGEVIT_TRANSPORT_UART", config, "-DEDGEVIT_COUNT=2", "-c", source, "-o", "/dev/null"]
        r = subprocess.run(cmd, cwd=firmware, capture_output=True, text=True)
        assert r.returncode == 0, f"{source} for {name}:\n{r.stderr}"


def _words(path: Path, count: int) -> tuple[int, ...]:
    return struct.unpack(f"<{count}I", path.read_bytes()[:4 * count])


def _first_hex_address(path: Path) -> int:
    """The address of the first data record of an Intel HEX file."""
    base = 0
    for line in path.read_text().splitlines():
        kind, offset = int(line[7:9], 16), int(line[3:7], 16)
        if kind == 4:
            base = int(line[9:13], 16) << 16
        elif kind == 0:
            return base + offset
    raise AssertionError(f"{path.name} has no data record")


def _symbols(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {w[2]: int(w[0], 16) for w in (line.split() for line in out.splitlines()) if len(w) == 3}


@needs_arm_gcc
@pytest.mark.parametrize("name", [n for n in MCU if load_profile(n).board is not None])
def test_board_firmware_starts_from_the_chips_flash(tmp_path: Path, name: str) -> None:
    firmware = write_project(tmp_path, name)
    r = subprocess.run(["make", "-s", "board", "EXTRA_CFLAGS=-Werror"], cwd=firmware, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    profile, elf = load_profile(name), firmware / "firmware_board.elf"
    board, sram = profile.board, [reg for reg in profile.memory.regions if reg.kind == "sram"][0]
    symbols = _symbols(elf)
    assert symbols["edgevit_vector_table"] == board.load_address
    assert "initialise_monitor_handles" not in symbols and "_swiwrite" not in symbols  # no semihosting
    assert "board_clock_init" in symbols and "board_clock_core_hz" in symbols  # board.clock's set-up, linked
    assert ("board_caches_enable" in symbols) == (profile.core == "cortex-m7")  # the M7's caches enabled
    table = _words(firmware / "firmware_board.bin", 16 + board.uart.irq + 1)  # the .bin starts with the table
    assert table[0] == sram.origin + profile.memory.sram_bytes  # initial stack pointer: top of the chip's SRAM
    assert table[1] == symbols["Reset_Handler"] | 1 and board.load_address <= table[1] < board.load_address + (1 << 20)
    assert table[16 + board.uart.irq] == symbols["edgevit_uart_irq_handler"] | 1
    assert _first_hex_address(firmware / "firmware_board.hex") == board.load_address
    sections = subprocess.run(["arm-none-eabi-objdump", "-h", str(elf)], capture_output=True, text=True).stdout
    data = next(line.split() for line in sections.splitlines() if " .data " in line)
    vma, lma = int(data[3], 16), int(data[4], 16)
    assert vma >= sram.origin and board.load_address <= lma < board.load_address + profile.memory.flash_bytes


@needs_arm_gcc
@pytest.mark.parametrize("name", MCU)
def test_uart_build_for_qemu_links_without_semihosting_and_keeps_the_semihosting_build(tmp_path: Path,
                                                                                       name: str) -> None:
    firmware = write_project(tmp_path, name)
    r = subprocess.run(["make", "-s", "uart", "firmware.elf", "EXTRA_CFLAGS=-Werror"], cwd=firmware,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    uart, semihosting = _symbols(firmware / "firmware_uart.elf"), _symbols(firmware / "firmware.elf")
    assert "initialise_monitor_handles" not in uart and "serial_link_serve" in uart
    assert "board_clock_init" not in uart  # the QEMU build keeps QEMU's clocks: no board clock set-up
    assert "initialise_monitor_handles" in semihosting and "serial_link_serve" not in semihosting
    assert uart["edgevit_vector_table"] == load_profile(name).emulator.memory_map.code_origin


def test_make_board_without_a_board_section_fails_clearly(tmp_path: Path) -> None:
    firmware = write_project(tmp_path, "corstone-300")
    r = subprocess.run(["make", "board"], cwd=firmware, capture_output=True, text=True)
    assert r.returncode != 0 and "profile corstone-300 has no board section" in r.stderr
