"""The cpu backend's ISA handling (edgevit/targets/cpu/isa.py): /proc/cpuinfo parsing for x86 and
aarch64, the TVM LLVM target of each cpu profile (native x86: only features both the profile and
the host have; Arm: cross targets from the profile), clear errors when the host cannot run a
profile's code, and detection (never assumption) of the running host."""

from __future__ import annotations

import platform

import pytest

from edgevit.errors import UserInputError
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import (X86_LEVELS, missing_target_features, X86_MATTR, HostIsa, check_native, host_isa, llvm_target,
                                     missing_on_host, parse_cpuinfo)

X86_CPUINFO = """processor	: 0
vendor_id	: GenuineIntel
flags		: fpu sse sse2 pni ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt xsave avx f16c lahf_lm abm bmi1 avx2 bmi2 \
avx512f avx512bw avx512_vnni
bugs		: spectre_v1
"""
RPI4_CPUINFO = """processor	: 0
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU part	: 0xd08
"""
A76_CPUINFO = RPI4_CPUINFO.replace("crc32 cpuid", "crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp")
V3 = HostIsa("x86_64", frozenset(X86_LEVELS["x86-64-v3"]))


def test_parse_x86_flags_and_arm_features() -> None:
    x86 = parse_cpuinfo(X86_CPUINFO, "x86_64")
    assert x86.arch == "x86_64" and {"avx2", "fma", "avx512_vnni", "sse4_2"} <= x86.features
    assert parse_cpuinfo(RPI4_CPUINFO, "aarch64") == HostIsa("aarch64", frozenset({"fp", "neon", "crc"}))
    a76 = parse_cpuinfo(A76_CPUINFO, "arm64")
    assert a76.arch == "aarch64" and {"neon", "dotprod", "fp16"} <= a76.features
    assert parse_cpuinfo("", "x86_64") == HostIsa("x86_64", frozenset())


def test_host_isa_is_detected_from_this_machine() -> None:
    with open("/proc/cpuinfo") as f:
        want = parse_cpuinfo(f.read(), platform.machine())
    assert host_isa() == want


def test_host_profile_gets_features_both_claim() -> None:
    profile = load_profile("host").model_copy(update={"isa_when_present": []})
    host = parse_cpuinfo(X86_CPUINFO, "x86_64")
    assert llvm_target(profile, host) == {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v3",
                                          "mattr": ["+avx2", "+fma", "+sse4.2"]}
    vnni = profile.model_copy(update={"isa": [*profile.isa, "avx512f", "avx512_vnni", "avx_vnni"]})
    assert llvm_target(vnni, host)["mattr"] == ["+avx2", "+avx512f", "+avx512vnni", "+fma", "+sse4.2"]
    assert llvm_target(vnni, V3)["mattr"] == ["+avx2", "+fma", "+sse4.2"]   # the host lacks them: left out


def test_host_profile_uses_avx512_and_vnni_only_where_the_compiling_host_has_them() -> None:
    """`isa_when_present`: AVX-512 + VNNI on a machine reporting them, AVX2 only elsewhere; an
    artifact built with them is refused (by its recorded llvm_target) on a host without them."""
    profile = load_profile("host")
    rich = llvm_target(profile, parse_cpuinfo(X86_CPUINFO, "x86_64"))
    assert rich["mattr"] == ["+avx2", "+avx512bw", "+avx512f", "+avx512vnni", "+fma", "+sse4.2"]
    assert llvm_target(profile, V3)["mattr"] == ["+avx2", "+fma", "+sse4.2"]
    assert missing_target_features(rich, V3) == ["avx512_vnni", "avx512bw", "avx512f"]
    assert missing_target_features(rich, parse_cpuinfo(X86_CPUINFO, "x86_64")) == []
    bad = profile.model_copy(update={"isa_when_present": ["avx9000"]})
    with pytest.raises(UserInputError, match="isa_when_present"):
        llvm_target(bad, V3)


def test_host_profile_on_this_machine_follows_detection() -> None:
    profile = load_profile("host")
    if missing_on_host(profile):
        with pytest.raises(UserInputError):
            llvm_target(profile)
    else:
        target = llvm_target(profile)
        assert target["mcpu"] == "x86-64-v3"
        claimed = ("avx2", "fma", "sse4_2", *profile.isa_when_present)
        assert target["mattr"] == sorted(X86_MATTR[f] for f in claimed if f in host_isa().features)


def test_host_below_the_profiles_level_is_refused() -> None:
    no_fma = HostIsa("x86_64", V3.features - {"fma"})
    with pytest.raises(UserInputError, match="cannot run natively.*missing: fma"):
        llvm_target(load_profile("host"), no_fma)
    with pytest.raises(UserInputError, match="arch x86_64"):
        llvm_target(load_profile("host"), parse_cpuinfo(A76_CPUINFO, "aarch64"))


@pytest.mark.parametrize("name, mcpu, mattr", [("cortex-a76", "cortex-a76", ["+dotprod", "+neon"]),
                                               ("rpi4", "cortex-a72", ["+neon"])])
def test_arm_profiles_are_cross_targets(name, mcpu, mattr) -> None:
    want = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": mcpu, "mattr": mattr}
    for host in (V3, parse_cpuinfo(RPI4_CPUINFO, "aarch64")):   # whatever compiles them
        assert llvm_target(load_profile(name), host) == want


def test_arm_profiles_run_natively_only_on_a_capable_arm_host() -> None:
    a76, rpi4 = load_profile("cortex-a76"), load_profile("rpi4")
    with pytest.raises(UserInputError, match="'rpi4'.*cannot run natively on this x86_64 host.*emulator"):
        check_native(rpi4, V3)
    pi = parse_cpuinfo(RPI4_CPUINFO, "aarch64")
    check_native(rpi4, pi)
    with pytest.raises(UserInputError, match="missing: dotprod"):
        check_native(a76, pi)
    check_native(a76, parse_cpuinfo(A76_CPUINFO, "aarch64"))


def test_unknown_isa_names_and_cores_are_user_errors() -> None:
    host = load_profile("host")
    with pytest.raises(UserInputError, match=r"isa \['avx-2'\] unknown for x86_64"):
        llvm_target(host.model_copy(update={"isa": ["x86-64-v3", "avx-2"]}), V3)
    with pytest.raises(UserInputError, match="core 'riscv64'"):
        llvm_target(host.model_copy(update={"core": "riscv64"}), V3)
