"""The cores edgevit knows, with the ISA features a profile may claim for each: profile validation
refuses an unknown `core` (naming the supported ones), a core of the wrong kind of device, and an
`isa` / `isa_when_present` entry the core does not have.

    core = find_core("cortex-m7")     # Core(name, family, machine, arch, features, kinds)
    core.features                     # {"armv7e-m", "thumb2", "dsp", "fpv5-sp-d16", "fpv5-d16"}

Names follow GCC's -mcpu spelling (cortex-m0plus, not cortex-m0+), since MCU and Arm CPU profiles
pass `-mcpu=<core>` to the compiler and the profile checks that the two agree. ISA feature names are
the ones profiles use: an architecture level (armv7e-m, armv8.2-a, x86-64-v3), then extensions
(thumb2, dsp, helium, neon, dotprod, avx2, ...). `machine` is the instruction set code is
generated for: "thumb" (Cortex-M), "arm" (32-bit Cortex-A), "aarch64" or "x86_64"; backends read
it to refuse a core they cannot generate code for before any work (targets/cpu: aarch64, x86_64).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

MCU, CPU, FPGA = "mcu", "cpu", "fpga"


@dataclass(frozen=True)
class Core:
    """One supported core: its `family` (for messages), the `machine` code is generated for, its
    base architecture `arch`, every ISA feature name a profile may claim for it (`arch` included),
    and the profile kinds it can be (an FPGA profile's core is its processing system)."""

    name: str
    family: str
    machine: str
    arch: str
    features: frozenset[str]
    kinds: tuple[str, ...]


def _core(name: str, family: str, machine: str, arch: str, features: str, kinds: tuple[str, ...]) -> Core:
    return Core(name, family, machine, arch, frozenset({arch, *features.split()}), kinds)


_M = (MCU,)
_A = (CPU, FPGA)
_M_FP = "fpv5-sp-d16 fpv5-d16"
_V8A = "armv8-a neon fp crc crypto"
_V82A = _V8A + " armv8.1-a armv8.2-a fp16 dotprod"
_V9A = _V82A + " armv8.3-a armv8.4-a armv8.5-a armv9-a i8mm bf16 sve sve2"
_X86_LEVEL_FLAGS = ("x86-64-v2 x86-64-v3 x86-64-v4 cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3 abm avx avx2 bmi1 "
                    "bmi2 f16c fma movbe xsave avx512f avx512bw avx512cd avx512dq avx512vl avx512_vnni avx_vnni "
                    "avx512_bf16")

CORES: dict[str, Core] = {c.name: c for c in (
    _core("cortex-m0", "Arm Cortex-M", "thumb", "armv6-m", "thumb", _M),
    _core("cortex-m0plus", "Arm Cortex-M", "thumb", "armv6-m", "thumb", _M),
    _core("cortex-m1", "Arm Cortex-M", "thumb", "armv6-m", "thumb", _M),
    _core("cortex-m3", "Arm Cortex-M", "thumb", "armv7-m", "thumb thumb2", _M),
    _core("cortex-m4", "Arm Cortex-M", "thumb", "armv7e-m", "thumb thumb2 dsp fpv4-sp-d16", _M),
    _core("cortex-m7", "Arm Cortex-M", "thumb", "armv7e-m", f"thumb thumb2 dsp {_M_FP}", _M),
    _core("cortex-m23", "Arm Cortex-M", "thumb", "armv8-m.base", "thumb trustzone", _M),
    _core("cortex-m33", "Arm Cortex-M", "thumb", "armv8-m.main", "thumb thumb2 dsp fpv5-sp-d16 trustzone", _M),
    _core("cortex-m35p", "Arm Cortex-M", "thumb", "armv8-m.main", "thumb thumb2 dsp fpv5-sp-d16 trustzone", _M),
    _core("cortex-m55", "Arm Cortex-M", "thumb", "armv8.1-m.main",
          f"thumb thumb2 dsp helium mve mve-fp fp16 trustzone {_M_FP}", _M),
    _core("cortex-m85", "Arm Cortex-M", "thumb", "armv8.1-m.main",
          f"thumb thumb2 dsp helium mve mve-fp fp16 trustzone pacbti {_M_FP}", _M),
    _core("cortex-a7", "Arm Cortex-A (32-bit)", "arm", "armv7-a", "thumb2 neon vfpv4 vfpv4-d16", _A),
    _core("cortex-a9", "Arm Cortex-A (32-bit)", "arm", "armv7-a", "thumb2 neon vfpv3 vfpv3-d16", _A),
    _core("cortex-a15", "Arm Cortex-A (32-bit)", "arm", "armv7-a", "thumb2 neon vfpv4 vfpv4-d16", _A),
    _core("cortex-a35", "Arm Cortex-A", "aarch64", "armv8-a", _V8A, _A),
    _core("cortex-a53", "Arm Cortex-A", "aarch64", "armv8-a", _V8A, _A),
    _core("cortex-a57", "Arm Cortex-A", "aarch64", "armv8-a", _V8A, _A),
    _core("cortex-a72", "Arm Cortex-A", "aarch64", "armv8-a", _V8A, _A),
    _core("cortex-a73", "Arm Cortex-A", "aarch64", "armv8-a", _V8A, _A),
    _core("cortex-a55", "Arm Cortex-A", "aarch64", "armv8.2-a", _V82A, _A),
    _core("cortex-a75", "Arm Cortex-A", "aarch64", "armv8.2-a", _V82A, _A),
    _core("cortex-a76", "Arm Cortex-A", "aarch64", "armv8.2-a", _V82A, _A),
    _core("cortex-a77", "Arm Cortex-A", "aarch64", "armv8.2-a", _V82A, _A),
    _core("cortex-a78", "Arm Cortex-A", "aarch64", "armv8.2-a", _V82A, _A),
    _core("cortex-x1", "Arm Cortex-X", "aarch64", "armv8.2-a", _V82A, _A),
    _core("neoverse-n1", "Arm Neoverse", "aarch64", "armv8.2-a", _V82A, _A),
    _core("cortex-a510", "Arm Cortex-A", "aarch64", "armv9-a", _V9A, _A),
    _core("cortex-a710", "Arm Cortex-A", "aarch64", "armv9-a", _V9A, _A),
    _core("cortex-x2", "Arm Cortex-X", "aarch64", "armv9-a", _V9A, _A),
    _core("neoverse-v1", "Arm Neoverse", "aarch64", "armv8.4-a", _V9A.replace(" armv8.5-a armv9-a", "")
          .replace(" sve2", ""), _A),
    _core("neoverse-n2", "Arm Neoverse", "aarch64", "armv9-a", _V9A, _A),
    _core("x86-64", "x86-64", "x86_64", "x86-64", _X86_LEVEL_FLAGS, _A),
    _core("x86-64-v2", "x86-64", "x86_64", "x86-64-v2", _X86_LEVEL_FLAGS, _A),
    _core("x86-64-v3", "x86-64", "x86_64", "x86-64-v3", _X86_LEVEL_FLAGS, _A),
    _core("x86-64-v4", "x86-64", "x86_64", "x86-64-v4", _X86_LEVEL_FLAGS, _A),
)}


def find_core(name: str) -> Core | None:
    """The Core called `name` (exact, case-insensitive), or None."""
    return CORES.get(str(name).lower())


def supported_cores(kind: str | None = None) -> list[str]:
    """Names of the supported cores (of profile `kind`, when given), in table order."""
    return [c.name for c in CORES.values() if kind is None or kind in c.kinds]


def core_problem(name: str, kind: str, isa: list[str], isa_when_present: list[str]) -> str | None:
    """Why a profile of `kind` cannot have core `name` with these ISA lists ("field: reason", the form
    profile validation reports), or None when it can."""
    core = find_core(name)
    if core is None:
        names = supported_cores(kind) or supported_cores()
        close = difflib.get_close_matches(str(name).lower(), names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"core: unknown core '{name}'{hint}; supported {kind} cores: {', '.join(names)}"
    if kind not in core.kinds:
        return (f"core: a {core.name} ({core.family}) cannot be the core of a '{kind}' profile; it suits "
                f"{' or '.join(core.kinds)} profiles; {kind} cores: {', '.join(supported_cores(kind))}")
    for field, names in (("isa", isa), ("isa_when_present", isa_when_present)):
        unknown = [f for f in names if f not in core.features]
        if unknown:
            return (f"{field}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a feature of the "
                    f"{core.name}; its features: {', '.join(sorted(core.features))}")
    return None
