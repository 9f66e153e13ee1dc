"""profiles/cores.py: the supported cores with their ISA features, used by profile validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevit.errors import ProfileError, UserInputError
from edgevit.profiles import list_profiles, load_profile, profile_dir
from edgevit.profiles.board import CORES_WITH_DWT
from edgevit.profiles.cores import CORES, core_problem, find_core, supported_cores


def edited(tmp_path: Path, shipped: str, *edits: tuple[str, str]) -> Path:
    text = (profile_dir() / f"{shipped}.yaml").read_text().replace(f"name: {shipped}", "name: edited")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "edited.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_uses_a_supported_core_and_its_features(name) -> None:
    p = load_profile(name)
    core = find_core(p.core)
    assert core is not None and p.kind in core.kinds
    assert set(p.isa) <= core.features and set(p.isa_when_present) <= core.features


def test_the_table_covers_the_named_families() -> None:
    for name in ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-a53",
                 "cortex-a72", "cortex-a76", "x86-64", "x86-64-v3", "x86-64-v4"):
        assert name in CORES, name
    assert set(CORES_WITH_DWT) <= set(CORES)  # every core a board may count cycles on is supported
    assert "dsp" in CORES["cortex-m4"].features and "dsp" not in CORES["cortex-m3"].features
    assert "helium" in CORES["cortex-m55"].features and "dotprod" in CORES["cortex-a76"].features
    assert "dotprod" not in CORES["cortex-a72"].features
    assert all(c.arch in c.features for c in CORES.values())


def test_an_unknown_core_is_refused_naming_the_supported_ones(tmp_path) -> None:
    path = edited(tmp_path, "stm32f746-disco", ("core: cortex-m7", "core: cortex-z99"),
                  ("-mcpu=cortex-m7", "-mcpu=cortex-z99"))
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:11: core: unknown core 'cortex-z99'"), msg
    assert "supported mcu cores: " + ", ".join(supported_cores("mcu")) in msg and e.value.exit_code == 2


def test_a_core_of_another_kind_of_device_is_refused(tmp_path) -> None:
    path = edited(tmp_path, "rpi4", ("core: cortex-a72", "core: cortex-m4"), ("-mcpu=cortex-a72", "-mcpu=cortex-m4"),
                  ("isa: [armv8-a, neon, fp, crc]", "isa: [armv7e-m]"))
    with pytest.raises(ProfileError, match=r"core: a cortex-m4 \(Arm Cortex-M\) cannot be the core of a 'cpu' "
                                           r"profile; it suits mcu profiles"):
        load_profile(path)


@pytest.mark.parametrize("shipped, old, new, field, bad", [
    ("rpi4", "isa: [armv8-a, neon, fp, crc]", "isa: [armv8-a, neon, fp, crc, sve]", "isa", "sve"),
    ("stm32f746-disco", "isa: [armv7e-m, thumb2, dsp, fpv5-sp-d16]", "isa: [armv7e-m, thumb2, dsp, helium]", "isa",
     "helium"),
    ("host", "isa_when_present: [avx512f,", "isa_when_present: [avx512f, amx_tile,", "isa_when_present", "amx_tile"),
])
def test_isa_entries_must_be_features_of_the_core(tmp_path, shipped, old, new, field, bad) -> None:
    with pytest.raises(ProfileError, match=rf"{field}: {bad} is not a feature of the .*; its features: "):
        load_profile(edited(tmp_path, shipped, (old, new)))


def test_core_problem_is_none_for_a_good_profile() -> None:
    assert core_problem("cortex-m4", "mcu", ["armv7e-m", "thumb2", "dsp"], []) is None
    assert core_problem("x86-64", "cpu", ["x86-64-v3", "avx2"], ["avx512_vnni"]) is None


def test_the_cpu_backend_reads_the_machine_from_the_table(tmp_path) -> None:
    from edgevit.targets.cpu.isa import ARM64, X86, profile_arch

    assert profile_arch(load_profile("rpi4")) == ARM64 and profile_arch(load_profile("host")) == X86
    a9 = load_profile(edited(tmp_path, "rpi4", ("core: cortex-a72", "core: cortex-a9"),
                             ("-mcpu=cortex-a72", "-mcpu=cortex-a9"), ("isa: [armv8-a, neon, fp, crc]", "isa: [armv7-a]")))
    with pytest.raises(UserInputError, match=r"core 'cortex-a9' is a core of the Arm Cortex-A \(32-bit\) family "
                                             r"\(arm code\); the cpu backend generates x86-64 and aarch64 code"):
        profile_arch(a9)
