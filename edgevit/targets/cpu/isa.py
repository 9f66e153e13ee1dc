"""ISA of a CPU: what the host runs (detected at run time) and the TVM LLVM target of a cpu profile.

Feature names follow the profiles (`isa:` in edgevit/profiles/*.yaml), which spell x86 features as
Linux's /proc/cpuinfo `flags` do (`avx2`, `fma`, `avx512_vnni`, ...) and Arm features by their
architecture names (`neon`, `dotprod`, `fp16`, `crc`); the aarch64 `Features` line of
/proc/cpuinfo (`asimd`, `asimddp`, ...) is translated to those.

`llvm_target(profile)` is the JSON-dict target TVM 0.27 takes:

- x86-64 profiles run natively (`emulator.kind: native`): `mcpu` is the profile's psABI level
  (`x86-64-v3`), which the host must meet, and `mattr` holds only the features the profile claims
  **and** the host has (the code must run where it is compiled);
- Arm profiles are cross-compiled: `aarch64-linux-gnu`, `mcpu` the profile's core, `mattr` from
  its ISA (`+neon`, `+dotprod` on cortex-a76; `+neon` alone on rpi4's cortex-a72).

`check_native(profile)` raises UserInputError when the host cannot run a profile's code itself
(another architecture, a missing psABI level or extension): such profiles run under an emulator.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edgevit.errors import UserInputError

CPUINFO = Path("/proc/cpuinfo")
X86, ARM64 = "x86_64", "aarch64"
TRIPLES = {X86: "x86_64-linux-gnu", ARM64: "aarch64-linux-gnu"}

# psABI levels -> the /proc/cpuinfo flags they require (cumulative; `pni` is SSE3, `abm` is LZCNT).
X86_LEVELS = {"x86-64": frozenset()}
X86_LEVELS["x86-64-v2"] = X86_LEVELS["x86-64"] | {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}
X86_LEVELS["x86-64-v3"] = X86_LEVELS["x86-64-v2"] | {"abm", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe",
                                                     "xsave"}
X86_LEVELS["x86-64-v4"] = X86_LEVELS["x86-64-v3"] | {"avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl"}

# profile feature -> LLVM attribute (None: known, no code generation effect beyond mcpu).
X86_MATTR = {"sse4_1": "+sse4.1", "sse4_2": "+sse4.2", "ssse3": "+ssse3", "avx": "+avx", "avx2": "+avx2",
             "fma": "+fma", "f16c": "+f16c", "bmi1": "+bmi", "bmi2": "+bmi2", "avx512f": "+avx512f",
             "avx512bw": "+avx512bw", "avx512cd": "+avx512cd", "avx512dq": "+avx512dq", "avx512vl": "+avx512vl",
             "avx512_vnni": "+avx512vnni", "avx_vnni": "+avxvnni", "avx512_bf16": "+avx512bf16"}
ARM_MATTR = {"neon": "+neon", "dotprod": "+dotprod", "i8mm": "+i8mm", "fp": None, "fp16": None, "crc": None}
ARM_LEVELS = ("armv8-a", "armv8.1-a", "armv8.2-a", "armv8.3-a", "armv8.4-a", "armv8.5-a", "armv9-a")

# aarch64 /proc/cpuinfo `Features` -> profile names.
ARM_CPUINFO = {"asimd": "neon", "asimddp": "dotprod", "fphp": "fp16", "asimdhp": "fp16", "crc32": "crc",
               "fp": "fp", "i8mm": "i8mm"}


@dataclass(frozen=True)
class HostIsa:
    """The machine this process runs on: `arch` ("x86_64" or "aarch64") and its features (profile
    spelling: x86 cpuinfo flags; Arm `neon`, `dotprod`, `fp16`, ...)."""

    arch: str
    features: frozenset[str]


def parse_cpuinfo(text: str, machine: str) -> HostIsa:
    """The HostIsa described by /proc/cpuinfo `text` on a `machine` (platform.machine(): x86_64,
    amd64, aarch64, arm64): x86 `flags` as they are, aarch64 `Features` translated (ARM_CPUINFO)."""
    arch = {"amd64": X86, "x86_64": X86, "arm64": ARM64, "aarch64": ARM64}.get(machine.lower(), machine.lower())
    key = "flags" if arch == X86 else "features"
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == key:
            words = value.split()
            found = set(words) if arch == X86 else {ARM_CPUINFO[w] for w in words if w in ARM_CPUINFO}
            return HostIsa(arch, frozenset(found))
    return HostIsa(arch, frozenset())


@lru_cache(maxsize=1)
def host_isa() -> HostIsa:
    """The running host's ISA, read from /proc/cpuinfo (no features if it cannot be read)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        text = ""
    return parse_cpuinfo(text, platform.machine())


def profile_arch(profile) -> str:
    """"x86_64" or "aarch64" for a cpu profile's core (x86-64*, cortex-a*, neoverse-*);
    UserInputError for anything else."""
    from edgevit.profiles.cores import find_core

    core = find_core(profile.core)  # the supported cores and the instruction set each runs
    if core is not None and core.machine in (X86, ARM64):
        return core.machine
    what = f"a core of the {core.family} family ({core.machine} code)" if core else "not a core edgevit knows"
    raise UserInputError(f"profile {profile.name!r}: core {profile.core!r} is {what}; the cpu backend generates "
                         "x86-64 and aarch64 code: use an x86-64 core or a 64-bit Arm Cortex-A / Neoverse core")


def _known_features(profile) -> tuple[list[str], list[str]]:
    """(psABI / architecture levels, extension features) of a profile's `isa` list; UserInputError
    for names the backend does not know."""
    arch = profile_arch(profile)
    levels = X86_LEVELS if arch == X86 else ARM_LEVELS
    known = (set(X86_MATTR) | set(X86_LEVELS["x86-64-v4"])) if arch == X86 else set(ARM_MATTR)
    unknown = [f for f in profile.isa if f not in known and f not in levels]
    unknown_optional = [f for f in profile.isa_when_present if f not in known]
    if unknown or unknown_optional:
        field = "isa" if unknown else "isa_when_present"
        raise UserInputError(f"profile {profile.name!r}: {field} {unknown or unknown_optional} unknown for {arch}; "
                             f"known: {', '.join(sorted(levels))}, {', '.join(sorted(known))}")
    return [f for f in profile.isa if f in levels], [f for f in profile.isa if f not in levels]


def _x86_level(profile) -> str:
    """The highest x86-64 psABI level a profile claims ("x86-64" if none)."""
    levels, _ = _known_features(profile)
    return max(levels, key=list(X86_LEVELS).index, default="x86-64")


def missing_on_host(profile, host: HostIsa | None = None) -> list[str]:
    """What the host lacks to run a profile's code natively: ["arch <a>"] for another architecture,
    else the flags of its psABI level (x86) or its code-generation features (Arm) the host has not."""
    host = host or host_isa()
    arch = profile_arch(profile)
    if host.arch != arch:
        return [f"arch {arch}"]
    if arch == X86:
        return sorted(X86_LEVELS[_x86_level(profile)] - host.features)
    _, features = _known_features(profile)
    return sorted(f for f in features if ARM_MATTR[f] and f not in host.features)


def check_native(profile, host: HostIsa | None = None) -> None:
    """UserInputError unless this host can run code compiled for `profile` itself."""
    host = host or host_isa()
    missing = missing_on_host(profile, host)
    if missing:
        raise UserInputError(f"profile {profile.name!r} ({profile_arch(profile)}, isa {profile.isa}) cannot run "
                             f"natively on this {host.arch} host (missing: {', '.join(missing)}); run its code "
                             "under an emulator (qemu-user) or on the device")


def llvm_target(profile, host: HostIsa | None = None) -> dict:
    """The TVM LLVM target dict of a cpu profile: {"kind": "llvm", "mtriple", "mcpu", "mattr"}.

    Native profiles (`emulator.kind: native`) are checked against the host (`check_native`) and
    get only the extensions the profile claims (`isa`, `isa_when_present`) and the host has; others
    are cross-compiled for what the profile says. `host` defaults to the detected one.
    """
    arch = profile_arch(profile)
    _, features = _known_features(profile)
    if arch == X86:
        if profile.emulator.kind != "native":
            raise UserInputError(f"profile {profile.name!r}: x86-64 profiles run natively (emulator.kind: native)")
        host = host or host_isa()
        check_native(profile, host)
        wanted = [*features, *profile.isa_when_present]
        mattr = {X86_MATTR[f] for f in wanted if f in X86_MATTR and f in host.features}
        return {"kind": "llvm", "mtriple": TRIPLES[X86], "mcpu": _x86_level(profile), "mattr": sorted(mattr)}
    if profile.emulator.kind == "native":
        check_native(profile, host)
    mattr = [ARM_MATTR[f] for f in features if ARM_MATTR[f]]
    return {"kind": "llvm", "mtriple": TRIPLES[ARM64], "mcpu": profile.core, "mattr": sorted(set(mattr))}


def missing_target_features(target: dict, host: HostIsa | None = None) -> list[str]:
    """The x86 features an artifact's LLVM target (its manifest's `llvm_target`) uses that the host
    lacks (cpuinfo spelling, e.g. ["avx512_vnni"]): code compiled on a machine with AVX-512 must not
    run on one without. [] for Arm targets (checked through the profile) and when nothing is missing."""
    host = host or host_isa()
    if not str(target.get("mtriple", "")).startswith("x86_64") or host.arch != X86:
        return []
    flag_of = {v: k for k, v in X86_MATTR.items()}
    return sorted(flag_of[a] for a in target.get("mattr", ()) if a in flag_of and flag_of[a] not in host.features)
