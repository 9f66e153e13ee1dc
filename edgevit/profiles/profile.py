"""Device profiles: the schema (pydantic v2), validation with errors for people, and lookup.

A profile is a YAML file: shipped ones live next to this module (`edgevit/profiles/*.yaml`),
users pass a path to their own. Sizes, clocks and addresses accept units (see units.py:
"320KiB", "216MHz", 0x20000000; K = 1024).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from edgevit.errors import ProfileError
from edgevit.profiles.board import CORES_WITH_DWT, Board, FlashMethod, ProfileSection, Uart
from edgevit.profiles.board_clock import BoardClock
from edgevit.profiles.cores import core_problem
from edgevit.profiles.units import Address, Count, Hz, Size, Text, format_bytes, format_hz, format_size, show_value

KINDS = ("mcu", "cpu", "fpga")
_EMULATORS = {"mcu": ("qemu-system",), "cpu": ("qemu-user", "native"), "fpga": ("csim",)}
_Model = ProfileSection


class Region(_Model):
    """One contiguous memory of an MCU: SRAM or flash, at an origin, of a size."""

    name: Text
    kind: Literal["sram", "flash"]
    origin: Address
    size_bytes: Size


class McuMemory(_Model):
    """MCU memories: the SRAM usable for the arena, the flash, and optionally their regions."""

    kind: Literal["mcu"] = Field("mcu", exclude=True)
    sram_bytes: Size
    flash_bytes: Size
    regions: list[Region] = []

    @field_validator("regions")
    @classmethod
    def _regions_consistent(cls, regions: list[Region], info: Any) -> list[Region]:
        for kind in ("sram", "flash"):
            total, parts = info.data.get(f"{kind}_bytes"), [r.size_bytes for r in regions if r.kind == kind]
            if parts and total is not None and sum(parts) != total:
                raise ValueError(f"the {kind} regions add up to {format_size(sum(parts))} but "
                                 f"memory.{kind}_bytes is {format_size(total)}; make them agree")
        ordered = sorted(regions, key=lambda r: r.origin)
        for a, b in zip(ordered, ordered[1:]):
            if a.origin + a.size_bytes > b.origin:
                raise ValueError(f"regions '{a.name}' and '{b.name}' overlap ('{a.name}' at 0x{a.origin:08X} "
                                 f"runs {format_size(a.size_bytes)}, past 0x{b.origin:08X})")
        return regions


class CpuMemory(_Model):
    """CPU memories: cores, the data caches one core sees, RAM and the SIMD extensions."""

    kind: Literal["cpu"] = Field("cpu", exclude=True)
    cores: Count
    l1d_bytes: Size  # per core
    l2_bytes: Size  # what one core can use: its private L2 or the cluster's shared L2
    l3_bytes: Optional[Size] = None
    ram_bytes: Size
    simd: list[str] = []


class FpgaMemory(_Model):
    """FPGA fabric resources (part, DSP, BRAM18, URAM, LUT, FF), fabric clock, host DDR."""

    kind: Literal["fpga"] = Field("fpga", exclude=True)
    part: Text
    dsp: Count
    bram18: Count  # 18 Kib block RAMs (one BRAM36 = two BRAM18)
    uram: Annotated[int, Field(ge=0, strict=True)] = 0  # 288 Kib UltraRAM blocks
    lut: Count
    ff: Count
    clock_hz: Hz  # fabric clock the HLS kernels are built for
    ddr_bytes: Optional[Size] = None


Memory = Annotated[Union[McuMemory, CpuMemory, FpgaMemory], Field(discriminator="kind")]
_MEMORIES = {"mcu": McuMemory, "cpu": CpuMemory, "fpga": FpgaMemory}


class MemoryMap(_Model):
    """Where the emulated board has code and data memory; firmware for QEMU links there."""

    code_origin: Address
    data_origin: Address
    code_bytes: Optional[Size] = None  # capacity of the emulated code memory
    data_bytes: Optional[Size] = None  # capacity of the emulated data memory


class Emulator(_Model):
    """What stands in for the device in CI: QEMU (system or user mode), HLS csim or native."""

    kind: Literal["qemu-system", "qemu-user", "csim", "native"]
    binary: Optional[Text] = None  # e.g. qemu-system-arm, qemu-aarch64
    machine: Optional[Text] = None  # QEMU -M, qemu-system only
    cpu: Optional[Text] = None  # QEMU -cpu
    memory_map: Optional[MemoryMap] = None
    uart: Optional[Uart] = None  # qemu-system: the emulated board's UART (for UART firmware)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> "Emulator":
        if self.kind == "qemu-system" and not self.machine:
            raise ValueError("machine: required for qemu-system (the QEMU -M board, e.g. mps2-an500)")
        for field in ("machine", "memory_map", "uart"):
            if self.kind != "qemu-system" and getattr(self, field) is not None:
                raise ValueError(f"{field}: only applies to qemu-system (kind is '{self.kind}')")
        return self


class Toolchain(_Model):
    """Compiler driver and the device's flags (for MCUs: -mcpu, -mthumb, -mfpu, -mfloat-abi)."""

    cc: Text
    cflags: list[str] = []
    ldflags: list[str] = []

    @property
    def mcpu(self) -> Optional[str]:
        """The value of -mcpu= in cflags, or None."""
        found = [f.split("=", 1)[1] for f in self.cflags if f.startswith("-mcpu=")]
        return found[-1] if found else None


def _fields(model: type[BaseModel]) -> list[str]:
    """The fields a user may write for `model` (the hidden memory tag excluded)."""
    return [f for f in model.model_fields if not (f == "kind" and model in _MEMORIES.values())]


class Profile(_Model):
    """A device: kind, core/ISA, clock, memories, the emulator standing in for it, toolchain.

    `memory` takes the shape of `kind` (McuMemory, CpuMemory or FpgaMemory). For an FPGA,
    `clock_hz` is the host (PS) clock and `memory.clock_hz` the fabric clock of the kernels.
    `isa_when_present` (natively run cpu profiles such as `host`): extensions the code uses only
    if the machine that compiles it reports them (detected at run time, recorded in the artifact).
    `target` names the backend that compiles for the device (`edgevit.targets.<target>` or one
    registered with `edgevit.backend.target.register_target`); by default the one named like `kind`.
    """

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    description: str = ""
    kind: Literal["mcu", "cpu", "fpga"]
    target: Optional[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]] = None
    core: Text
    isa: list[str] = []
    isa_when_present: list[str] = []  # cpu, native: extensions used when the compiling machine reports them
    clock_hz: Hz
    memory: Memory
    emulator: Emulator
    toolchain: Toolchain
    board: Optional[Board] = None  # mcu: the physical board (serial runner, edgevit flash)

    @model_validator(mode="before")
    @classmethod
    def _tag_memory(cls, data: Any) -> Any:
        """Select the memory shape from the top-level kind (catching shapes of another kind)."""
        if not (isinstance(data, dict) and isinstance(data.get("memory"), dict) and data.get("kind") in KINDS):
            return data
        kind, memory = data["kind"], data["memory"]
        if "kind" in memory:
            raise ValueError("memory.kind: unknown field (the memory's shape follows the top-level kind)")
        extra = set(memory) - set(_fields(_MEMORIES[kind]))
        for other in KINDS:
            if extra and other != kind and extra <= set(_fields(_MEMORIES[other])):
                raise ValueError(f"memory: {', '.join(sorted(extra))} belong to a '{other}' profile but kind is "
                                 f"'{kind}'; a {kind} memory has {', '.join(_fields(_MEMORIES[kind]))}")
        return {**data, "memory": {**memory, "kind": kind}}

    @model_validator(mode="after")
    def _consistent(self) -> "Profile":
        if self.memory.kind != self.kind:
            raise ValueError(f"memory: is a {self.memory.kind} memory but kind is '{self.kind}'")
        problem = core_problem(self.core, self.kind, self.isa, self.isa_when_present)  # the table in cores.py
        if problem:
            raise ValueError(problem)
        if self.emulator.kind not in _EMULATORS[self.kind]:
            raise ValueError(f"emulator.kind: '{self.emulator.kind}' cannot stand in for a {self.kind} profile; "
                             f"use {' or '.join(_EMULATORS[self.kind])}")
        mcpu = self.toolchain.mcpu
        if mcpu and mcpu.split("+")[0] != self.core:
            raise ValueError(f"toolchain.cflags: -mcpu={mcpu} does not match core '{self.core}'")
        if self.kind == "mcu":
            self._check_mcu()
        elif self.board is not None:
            raise ValueError(f"board: only applies to mcu profiles (kind is '{self.kind}')")
        return self

    def _check_mcu(self) -> None:
        if not self.toolchain.mcpu or "-mthumb" not in self.toolchain.cflags:
            raise ValueError(f"toolchain.cflags: an mcu profile needs -mcpu=... and -mthumb "
                             f"(got {self.toolchain.cflags})")
        mm = self.emulator.memory_map
        if mm is None:
            raise ValueError("emulator.memory_map: required for an mcu emulated by qemu-system "
                             "(the board's code_origin and data_origin, e.g. 0x00000000 and 0x20000000)")
        for what, have, need in (("code", mm.code_bytes, self.memory.flash_bytes),
                                 ("data", mm.data_bytes, self.memory.sram_bytes)):
            if have is not None and need > have:
                raise ValueError(f"emulator.memory_map.{what}_bytes: {self.emulator.machine} has {format_size(have)}"
                                 f" of {what} memory, less than the device's {format_size(need)}")
        if self.board is not None:
            self._check_board(self.board)

    def _check_board(self, board: Board) -> None:
        if board.cycle_counter == "dwt" and self.core not in CORES_WITH_DWT:
            raise ValueError(f"board.cycle_counter: a {self.core} has no DWT cycle counter; use systick")
        flash = [r for r in self.memory.regions if r.kind == "flash"]
        if flash and not any(r.origin <= board.load_address < r.origin + r.size_bytes for r in flash):
            where = ", ".join(f"{r.name} @ 0x{r.origin:08X}" for r in flash)
            raise ValueError(f"board.load_address: 0x{board.load_address:08X} is not in a flash region ({where})")

    @property
    def sram_bytes(self) -> Optional[int]:
        """SRAM usable for the tensor arena (MCU profiles; None for other kinds)."""
        return self.memory.sram_bytes if isinstance(self.memory, McuMemory) else None

    @property
    def flash_bytes(self) -> Optional[int]:
        """Flash for code and weights (MCU profiles; None for other kinds)."""
        return self.memory.flash_bytes if isinstance(self.memory, McuMemory) else None

    def weight_capacity(self) -> Optional[tuple[int, str]]:
        """(bytes, what) of the memory the device keeps a model's weights in: an MCU's flash, a CPU's
        RAM; None when there is no such limit (FPGA: weights stream from the host)."""
        m = self.memory
        if isinstance(m, McuMemory):
            return m.flash_bytes, "flash"
        if isinstance(m, CpuMemory):
            return m.ram_bytes, "RAM"
        return None

    def emulator_label(self) -> str:
        """One-line emulator description, e.g. "qemu-system mps2-an500" or "qemu-user -cpu max"."""
        e = self.emulator
        return " ".join([e.kind] + ([e.machine] if e.machine else []) + ([f"-cpu {e.cpu}"] if e.cpu else []))

    def summary(self) -> dict[str, str]:
        """Flat, human-oriented facts for tables: name, kind, core, isa, clock, ram, flash, emulator, cc."""
        m = self.memory
        facts = {"name": self.name, "kind": self.kind, "core": self.core, "isa": ", ".join(self.isa),
                 "clock": format_hz(self.clock_hz), "flash": "-", "emulator": self.emulator_label(),
                 "cc": self.toolchain.cc}
        if isinstance(m, McuMemory):
            return {**facts, "ram": format_bytes(m.sram_bytes), "flash": format_bytes(m.flash_bytes)}
        if isinstance(m, CpuMemory):
            return {**facts, "core": f"{m.cores}x {self.core}", "ram": format_bytes(m.ram_bytes)}
        return {**facts, "core": m.part, "clock": f"{format_hz(m.clock_hz)} fabric",
                "ram": f"{m.bram18} BRAM18" + (f", {m.uram} URAM" if m.uram else "")}

    def memory_rows(self) -> list[tuple[str, str]]:
        """(label, value) rows describing the memories, sizes in human units and bytes."""
        m = self.memory
        if isinstance(m, McuMemory):
            return [("SRAM (arena)", format_size(m.sram_bytes)), ("flash", format_size(m.flash_bytes))] + [
                (f"  {r.name}", f"{r.kind} @ 0x{r.origin:08X}, {format_size(r.size_bytes)}") for r in m.regions]
        if isinstance(m, CpuMemory):
            rows = [("cores", str(m.cores)), ("L1d (per core)", format_size(m.l1d_bytes)),
                    ("L2", format_size(m.l2_bytes))]
            rows += [("L3", format_size(m.l3_bytes))] if m.l3_bytes else []
            return rows + [("RAM", format_size(m.ram_bytes)), ("SIMD", ", ".join(m.simd) or "-")]
        rows = [("part", m.part), ("fabric clock", format_hz(m.clock_hz)), ("DSP", f"{m.dsp:,}"),
                ("BRAM18", f"{m.bram18:,} ({format_bytes(m.bram18 * 18 * 1024 // 8)} incl. parity)"),
                ("URAM", f"{m.uram:,} ({format_bytes(m.uram * 288 * 1024 // 8)})"),
                ("LUT", f"{m.lut:,}"), ("FF", f"{m.ff:,}")]
        return rows + ([("DDR (host)", format_size(m.ddr_bytes))] if m.ddr_bytes else [])


_SUBMODELS: dict[tuple[Any, str], Any] = {
    (Profile, "memory"): "memory", (Profile, "emulator"): Emulator, (Profile, "toolchain"): Toolchain,
    (McuMemory, "regions"): Region, (Emulator, "memory_map"): MemoryMap, (Emulator, "uart"): Uart,
    (Profile, "board"): Board, (Board, "uart"): Uart, (Board, "flash"): FlashMethod, (Board, "clock"): BoardClock,
}


def _model_at(loc: tuple) -> list[str]:
    """Field names allowed at a (raw pydantic) location, for "did you mean" hints."""
    model: Any = Profile
    for seg in loc:
        if isinstance(seg, int):
            continue
        if model == "memory" and seg in _MEMORIES:
            model = _MEMORIES[seg]
            continue
        model = _SUBMODELS.get((model, seg))
    if model == "memory":
        return sorted({f for m in _MEMORIES.values() for f in _fields(m)})
    return _fields(model) if isinstance(model, type) else []


def _reason(err: dict) -> tuple[list, str]:
    """(field path, reason) for one pydantic error, in the words the user needs."""
    raw, kind, ctx, got = err["loc"], err["type"], err.get("ctx", {}), show_value(err.get("input"))
    loc = [s for i, s in enumerate(raw) if not (i == 1 and raw[0] == "memory" and s in _MEMORIES)]
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        m = re.match(r"^([a-z_][a-z0-9_.]*): (.*)$", msg, re.S)
        return (loc + m.group(1).split("."), m.group(2)) if m else (loc, msg)
    if kind == "extra_forbidden":
        allowed = _model_at(raw[:-1])
        close = difflib.get_close_matches(str(raw[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
        return loc, f"unknown field ({hint})"
    simple = {
        "missing": "required field is missing",
        "greater_than": f"must be > {ctx.get('gt')} (got {got})",
        "greater_than_equal": f"must be >= {ctx.get('ge')} (got {got})",
        "less_than": f"must be < {ctx.get('lt')} (got {got})",
        "literal_error": f"must be {ctx.get('expected')} (got {got})",
        "string_too_short": "must not be empty",
        "string_pattern_mismatch": f"must be letters, digits, '.', '_' or '-' (got {got})",
        "union_tag_not_found": "cannot tell which memory shape applies; set kind to mcu, cpu or fpga",
    }
    if kind in simple:
        return loc, simple[kind]
    for prefix, what in (("int", "an integer"), ("string", "a string"), ("list", "a list"),
                         ("model", "a mapping of fields"), ("dict", "a mapping of fields"), ("bool", "true or false")):
        if kind.startswith(prefix):
            return loc, f"must be {what} (got {got})"
    return loc, f"{err['msg']} (got {got})"


def _line_of(text: str, loc: list) -> Optional[int]:
    """1-based line of the deepest YAML node along `loc` (None if the YAML cannot be composed)."""
    try:
        node, line = yaml.compose(text, Loader=yaml.SafeLoader), None
    except yaml.YAMLError:
        return None
    for seg in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == seg]
            if not match:
                break
            line, node = match[0][0].start_mark.line + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(seg, int) and seg < len(node.value):
            node = node.value[seg]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _format_errors(err: ValidationError, source: str, text: str) -> str:
    """One message: `file:line: field.path: reason`, plus how many other problems there are."""
    errors = err.errors(include_url=False)
    if any(e["type"] != "union_tag_not_found" for e in errors):
        errors = [e for e in errors if e["type"] != "union_tag_not_found"]
    items = [_reason(e) for e in sorted(errors, key=lambda e: e["type"] != "extra_forbidden")]  # typos first
    loc, reason = items[0]
    line = _line_of(text, loc)
    where = ".".join(str(s) for s in loc)
    msg = f"{source}{f':{line}' if line else ''}: {where + ': ' if where else ''}{reason}"
    if len(items) > 1:
        others = ", ".join(".".join(str(s) for s in lc) or "(top level)" for lc, _ in items[1:])
        msg += f" (and {len(items) - 1} more: {others})"
    return msg


def profile_dir() -> Path:
    """The directory holding the shipped profile YAMLs."""
    return Path(__file__).resolve().parent


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(p.stem for p in profile_dir().glob("*.yaml"))


def _resolve(name_or_path: str | Path) -> tuple[Path, str, bool]:
    """(file, name to show in messages, shipped?) for a profile name or a YAML path."""
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith((".yaml", ".yml"))
    shipped = profile_dir() / f"{text}.yaml"
    if not looks_like_path and text and shipped.is_file():
        return shipped, f"edgevit/profiles/{text}.yaml", True
    path = Path(text).expanduser()
    if text and path.is_file():
        return path, text, False
    names = list_profiles()
    if looks_like_path:
        raise ProfileError(f"{text}: profile file not found")
    close = [n for n in names if n.startswith(text)][:1] or difflib.get_close_matches(text, names, n=1)
    raise ProfileError(f"unknown profile '{text}'{f' (did you mean {close[0]!r}?)' if close else ''}; "
                       f"shipped profiles: {', '.join(names)}; a path to a profile YAML also works")


def _read_yaml(path: Path, source: str) -> tuple[dict, str]:
    """The YAML mapping in `path` and its text; ProfileError for unreadable or malformed files."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{source}: cannot read the profile: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ProfileError(f"{source}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ProfileError(f"{source}: a profile must be a YAML mapping of fields (got {got})")
    return data, text


def load_profile(name_or_path: "str | Path | Profile") -> Profile:
    """Load and validate a shipped profile by name or a user's profile YAML by path (a Profile is
    returned as it is, so callers may take either).

    A user file without `name` is named after its stem. Any problem raises ProfileError
    naming the file (and line), the field path and the reason.
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    path, source, shipped = _resolve(name_or_path)
    data, text = _read_yaml(path, source)
    data.setdefault("name", path.stem)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as e:
        raise ProfileError(_format_errors(e, source, text)) from None
    if shipped and profile.name != path.stem:
        raise ProfileError(f"{source}: name: must match the file name '{path.stem}' (got {profile.name!r})")
    return profile
