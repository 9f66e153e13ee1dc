"""Device profiles: shipped YAMLs validate, figures are right, bad files fail with file + field + reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgevit.errors import EdgevitError, ProfileError
from edgevit.profiles import Profile, list_profiles, load_profile, profile_dir
from edgevit.profiles.profile import CpuMemory, FpgaMemory, McuMemory
from edgevit.profiles.units import format_bytes, format_hz, parse_hz, parse_size

SHIPPED = ["corstone-300", "cortex-a76", "host", "nrf52840", "pynq-z2", "rpi4", "stm32f746-disco", "stm32h743", "zcu104"]
MEMORY_OF = {"mcu": McuMemory, "cpu": CpuMemory, "fpga": FpgaMemory}
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

GOOD_MCU = """\
name: myboard
description: a test board
kind: mcu
core: cortex-m4
isa: [thumb2, dsp]
clock_hz: 64MHz
memory:
  sram_bytes: 256KiB
  flash_bytes: 1MiB
  regions:
    - {name: RAM, kind: sram, origin: 0x20000000, size_bytes: 256KiB}
emulator:
  kind: qemu-system
  machine: mps2-an386
  memory_map: {code_origin: 0x0, data_origin: 0x20000000}
toolchain:
  cc: arm-none-eabi-gcc
  cflags: [-mcpu=cortex-m4, -mthumb, -mfpu=fpv4-sp-d16, -mfloat-abi=hard]
"""


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def edited(tmp_path: Path, old: str, new: str, name: str = "bad.yaml") -> Path:
    assert old in GOOD_MCU
    return write(tmp_path, GOOD_MCU.replace(old, new), name)


def error_of(path: Path | str) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.exit_code == 2
    return str(info.value)


# ------------------------------------------------------------------ shipped profiles


def test_all_nine_shipped_profiles_are_listed() -> None:
    assert list_profiles() == SHIPPED
    assert all((profile_dir() / f"{n}.yaml").is_file() for n in SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_validates_with_kind_appropriate_memory(name: str) -> None:
    p = load_profile(name)
    assert isinstance(p, Profile) and p.name == name
    assert isinstance(p.memory, MEMORY_OF[p.kind])
    assert p.clock_hz > 0 and p.toolchain.cc and p.isa
    assert (p.sram_bytes is not None) == (p.kind == "mcu") == (p.flash_bytes is not None)
    assert set(p.summary()) >= {"name", "kind", "core", "clock", "ram", "flash", "emulator"}
    assert p.memory_rows()
    # the JSON form round-trips through the schema
    assert Profile.model_validate(json.loads(p.model_dump_json())) == p


def test_stm32f746_disco_figures() -> None:
    p = load_profile("stm32f746-disco")
    assert (p.kind, p.core, p.clock_hz) == ("mcu", "cortex-m7", 216_000_000)
    assert p.sram_bytes == 320 * KiB and p.flash_bytes == 1 * MiB
    regions = {r.name: (r.kind, r.origin, r.size_bytes) for r in p.memory.regions}
    assert regions == {"DTCM": ("sram", 0x20000000, 64 * KiB), "SRAM1": ("sram", 0x20010000, 240 * KiB),
                       "SRAM2": ("sram", 0x2004C000, 16 * KiB), "FLASH": ("flash", 0x08000000, 1 * MiB)}
    assert p.emulator.kind == "qemu-system" and p.emulator.machine == "mps2-an500"
    assert (p.emulator.memory_map.code_origin, p.emulator.memory_map.data_origin) == (0, 0x20000000)
    assert p.toolchain.cflags == ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"]
    assert ("SRAM (arena)", "320 KiB (327,680 B)") in p.memory_rows()


def test_other_figures() -> None:
    h7, nrf, m55 = load_profile("stm32h743"), load_profile("nrf52840"), load_profile("corstone-300")
    assert (h7.clock_hz, h7.sram_bytes, h7.flash_bytes) == (400_000_000, 512 * KiB, 2 * MiB)  # VOS1, board.clock
    assert (nrf.clock_hz, nrf.sram_bytes, nrf.flash_bytes, nrf.emulator.machine) == (
        64_000_000, 256 * KiB, 1 * MiB, "mps2-an386")
    assert m55.emulator.machine == "mps3-an547" and "helium" in m55.isa
    rpi, a76 = load_profile("rpi4"), load_profile("cortex-a76")
    assert (rpi.memory.cores, rpi.memory.l1d_bytes, rpi.memory.l2_bytes, rpi.memory.ram_bytes) == (
        4, 32 * KiB, 1 * MiB, 4 * GiB)
    assert (rpi.emulator.kind, rpi.emulator.cpu) == ("qemu-user", "cortex-a72")
    assert "dotprod" in a76.memory.simd and a76.emulator.cpu == "max"
    z2, zcu = load_profile("pynq-z2").memory, load_profile("zcu104").memory
    assert (z2.part, z2.dsp, z2.bram18, z2.uram, z2.lut, z2.ff) == ("xc7z020clg400-1", 220, 280, 0, 53200, 106400)
    assert (zcu.dsp, zcu.bram18, zcu.uram, zcu.lut, zcu.ff) == (1728, 624, 96, 230400, 460800)
    assert load_profile("host").emulator.kind == "native"


# ------------------------------------------------------------------ units


@pytest.mark.parametrize("text, expected", [
    ("320KiB", 320 * KiB), ("1MiB", MiB), ("512KB", 512 * KiB), ("64K", 64 * KiB), ("4 GiB", 4 * GiB),
    ("2M", 2 * MiB), ("1.5MiB", 3 * MiB // 2), ("1024", 1024), ("100B", 100), (4096, 4096),
])
def test_size_strings_parse(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "12 furlongs", "-1KiB", "0.3KiB"])
def test_bad_size_strings_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_clock_strings_and_formatting() -> None:
    assert parse_hz("216MHz") == 216_000_000 and parse_hz("1.5 GHz") == 1_500_000_000
    assert format_hz(2_800_000_000) == "2.8 GHz" and format_bytes(327680) == "320 KiB"


# ------------------------------------------------------------------ user files and errors


def test_user_yaml_path_works_and_name_defaults_to_stem(tmp_path: Path) -> None:
    p = load_profile(write(tmp_path, GOOD_MCU.replace("name: myboard\n", ""), "my-board.yaml"))
    assert p.name == "my-board" and p.sram_bytes == 256 * KiB and p.memory.regions[0].origin == 0x20000000
    assert load_profile(str(write(tmp_path, GOOD_MCU, "other.yaml"))).name == "myboard"


def test_negative_sram(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "sram_bytes: 256KiB", "sram_bytes: -1"))
    assert "bad.yaml:" in msg and "memory.sram_bytes: must be > 0 (got -1)" in msg


def test_missing_field(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "clock_hz: 64MHz\n", ""))
    assert "bad.yaml" in msg and "clock_hz: required field is missing" in msg


def test_missing_nested_field(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "  flash_bytes: 1MiB\n", ""))
    assert "memory.flash_bytes: required field is missing" in msg


def test_unknown_field_typo(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "sram_bytes: 256KiB", "sram_byte: 256KiB"))
    assert "bad.yaml:8: memory.sram_byte: unknown field (did you mean 'sram_bytes'?)" in msg


def test_wrong_type(tmp_path: Path) -> None:
    assert "memory.flash_bytes: must be a size" in error_of(edited(tmp_path, "flash_bytes: 1MiB", "flash_bytes: lots"))
    assert "isa: must be a list (got 'thumb2')" in error_of(edited(tmp_path, "isa: [thumb2, dsp]", "isa: thumb2"))
    assert "memory: must be a mapping" in error_of(write(tmp_path, GOOD_MCU.split("memory:")[0] + "memory: 5\n"))


def test_wrong_kind(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "kind: mcu", "kind: gpu"))
    assert "bad.yaml:3: kind: must be 'mcu', 'cpu' or 'fpga' (got 'gpu')" in msg


def test_memory_of_another_kind(tmp_path: Path) -> None:
    cpu_memory = "memory:\n  cores: 4\n  l1d_bytes: 32KiB\n  l2_bytes: 1MiB\n  ram_bytes: 1GiB\n"
    text = GOOD_MCU.split("memory:")[0] + cpu_memory + "emulator:" + GOOD_MCU.split("emulator:")[1]
    msg = error_of(write(tmp_path, text))
    assert "memory:" in msg and "belong to a 'cpu' profile but kind is 'mcu'" in msg


def test_emulator_that_cannot_stand_in(tmp_path: Path) -> None:
    text = GOOD_MCU.split("emulator:")[0] + "emulator:\n  kind: csim\n" + "toolchain:" + GOOD_MCU.split("toolchain:")[1]
    assert "emulator.kind: 'csim' cannot stand in for a mcu profile" in error_of(write(tmp_path, text))


def test_inconsistent_regions(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "size_bytes: 256KiB}", "size_bytes: 128KiB}"))
    assert "memory.regions: the sram regions add up to 128 KiB (131,072 B)" in msg and "256 KiB" in msg


def test_overlapping_regions(tmp_path: Path) -> None:
    two = ("size_bytes: 128KiB}\n    - {name: B, kind: sram, origin: 0x20010000, size_bytes: 128KiB}")
    msg = error_of(edited(tmp_path, "size_bytes: 256KiB}", two))
    assert "memory.regions: regions 'RAM' and 'B' overlap" in msg


def test_device_larger_than_emulated_board(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "data_origin: 0x20000000}", "data_origin: 0x20000000, data_bytes: 128KiB}"))
    assert "emulator.memory_map.data_bytes: mps2-an386 has 128 KiB" in msg


def test_mcpu_must_match_core(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "-mcpu=cortex-m4,", "-mcpu=cortex-m7,"))
    assert "toolchain.cflags: -mcpu=cortex-m7 does not match core 'cortex-m4'" in msg


def test_bad_yaml_syntax_names_file_and_line(tmp_path: Path) -> None:
    msg = error_of(edited(tmp_path, "isa: [thumb2, dsp]", "isa: [thumb2, dsp"))
    assert msg.startswith(str(tmp_path / "bad.yaml") + ":") and "invalid YAML" in msg
    line = int(msg.split("bad.yaml:")[1].split(":")[0])
    assert 5 <= line <= 8


def test_not_a_mapping(tmp_path: Path) -> None:
    assert "must be a YAML mapping" in error_of(write(tmp_path, "- 1\n- 2\n"))
    assert "an empty file" in error_of(write(tmp_path, ""))


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    msg = error_of("stm32f74")
    assert "unknown profile 'stm32f74'" in msg and "did you mean 'stm32f746-disco'" in msg
    assert all(n in msg for n in SHIPPED) and "path" in msg
    assert "not found" in error_of("no/such/file.yaml")


def test_profile_error_is_an_edgevit_error() -> None:
    assert issubclass(ProfileError, EdgevitError)


# ------------------------------------------------------------------ CLI (real console script)


def run_cli(*args: str, exe: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (exe or [sys.executable, "-m", "edgevit"]) + list(args)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "COLUMNS": "200"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_cli_list_shows_all_profiles() -> None:
    r = run_cli("profiles", "list")
    assert r.returncode == 0, r.stderr
    assert all(n in r.stdout for n in SHIPPED)


def test_cli_show_prints_memory() -> None:
    r = run_cli("profiles", "show", "stm32f746-disco")
    assert r.returncode == 0, r.stderr
    assert "320 KiB (327,680 B)" in r.stdout and "1 MiB (1,048,576 B)" in r.stdout and "mps2-an500" in r.stdout


def test_cli_show_json() -> None:
    r = run_cli("profiles", "show", "zcu104", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["name"] == "zcu104" and data["memory"]["dsp"] == 1728


def test_cli_bad_profile_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = edited(tmp_path, "sram_bytes: 256KiB", "sram_bytes: -1")
    r = run_cli("profiles", "show", str(bad))
    assert r.returncode == 2 and "sram_bytes" in r.stderr and "bad.yaml" in r.stderr
    r = run_cli("profiles", "show", "no-such-board")
    assert r.returncode == 2 and "unknown profile" in r.stderr


def _console_script() -> str | None:
    beside = Path(sys.executable).parent / "edgevit"
    return str(beside) if beside.is_file() else shutil.which("edgevit")


@pytest.mark.skipif(_console_script() is None, reason="edgevit console script not installed")
def test_installed_console_script() -> None:
    r = run_cli("profiles", "list", exe=[_console_script()])
    assert r.returncode == 0, r.stderr
    assert all(n in r.stdout for n in SHIPPED)


def test_shipped_yaml_files_parse_as_plain_yaml() -> None:
    for name in SHIPPED:
        data = yaml.safe_load((profile_dir() / f"{name}.yaml").read_text())
        assert data["name"] == name
