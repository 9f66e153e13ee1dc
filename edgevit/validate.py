"""Checks of user values at the boundary, before any heavy work starts: one clear error each.

    lr = finite_number(lr, "--lr", low=0, low_open=True)          # nan, inf, 0, -1: UserInputError
    threads = int_in_range(threads, "--threads", low=0)            # -1: UserInputError
    check_out(out, "dir")                                          # not writable: UserInputError
    check_fits_memory(need, "training fmnist-tiny", parts, advice) # over this machine: InfeasibleError

Numbers: typer turns "nan", "inf" and "1e999" into floats without complaint, so every float
option goes through `finite_number` (finite, within its range) and every integer option with a
range through `int_in_range`; the message names the option, the value and the range. Output
places go through `check_out` (atomic_write.check_writable: the right kind, a directory above it,
file creation allowed; read-only places, /sys, a path below a file and names too long included).

Memory: `available_memory()` is what this process may still allocate: the kernel's MemAvailable
(/proc/meminfo), lowered by a cgroup memory limit (v1 or v2, minus what the cgroup uses) and by
the address-space limit (`ulimit -v`, minus what the process maps). `check_fits_memory` refuses a
need above it with every figure (exit 3, like a device budget), so a model that cannot fit is
refused up front instead of growing until the kernel kills the machine's processes.
Nothing here imports edgevit beyond its errors, atomic writes and units: every layer may use it.
"""

from __future__ import annotations

import math
import resource
from pathlib import Path

from edgevit.atomic_write import check_writable
from edgevit.errors import InfeasibleError, UserInputError
from edgevit.profiles.units import format_bytes

__all__ = ["available_memory", "check_fits_memory", "check_out", "finite_number", "int_in_range"]

_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a huge page-rounded number


def _bound_text(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "a finite number"


def finite_number(value, option: str, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False, hint: str = "") -> float:
    """`value` as a float when it is finite and within [low, high] (open ends with `low_open` /
    `high_open`); UserInputError naming `option`, the value, the range and `hint` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    bad = not math.isfinite(number)
    if not bad and low is not None:
        bad = number <= low if low_open else number < low
    if not bad and high is not None:
        bad = number >= high if high_open else number > high
    if bad:
        what = "a finite number" if low is None and high is None else f"a finite number {_bound_text(low, high, low_open, high_open)}"
        raise UserInputError(f"{option} {value!r}: must be {what}{'; ' + hint if hint else ''}")
    return number


def int_in_range(value, option: str, *, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """`value` when it is an integer within [low, high]; UserInputError naming `option`, the value
    and the range (and `hint`) otherwise."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and low is not None and value < low:
        ok = False
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        if low is not None and high is not None:
            rng = f"an integer in {low}..{high}"
        elif low is not None:
            rng = f"an integer >= {low}"
        elif high is not None:
            rng = f"an integer <= {high}"
        else:
            rng = "an integer"
        raise UserInputError(f"{option} {value!r}: must be {rng}{'; ' + hint if hint else ''}")
    return value


def check_out(out: str | Path, kind: str = "any", option: str = "--out") -> Path:
    """`out` as a Path when it can be written as a `kind` ("file", "dir" or "any"); UserInputError
    naming `option` and the path otherwise (see atomic_write.check_writable). Creates nothing."""
    if not str(out).strip():
        raise UserInputError(f"{option}: give a path (got an empty string)")
    out = Path(out)
    check_writable(out, kind=kind, option=option)
    return out


# ---- memory ----------------------------------------------------------------------------------------
def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_room() -> int | None:
    """Bytes the process's cgroup may still allocate under its memory limit (None: no limit)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path("/sys/fs/cgroup")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":  # cgroup v2
            places, limit_file, usage_file = [root / rel, root], "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            places, limit_file, usage_file = [root / "memory" / rel, root / "memory"], "memory.limit_in_bytes", \
                "memory.usage_in_bytes"
        else:
            continue
        for place in places:
            limit = _read_int(place / limit_file)
            if limit is not None and limit < _UNLIMITED:
                return max(0, limit - (_read_int(place / usage_file) or 0))
    return None


def _address_space_room() -> int | None:
    """Bytes left under `ulimit -v` (RLIMIT_AS) beyond what this process maps (None: no limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    mapped = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - mapped)


def available_memory() -> tuple[int | None, str]:
    """(bytes this process may still allocate, where that figure comes from): the smallest of
    MemAvailable, the cgroup's room and the address-space limit's room; (None, "") when none is known."""
    found = [(v, w) for v, w in ((_meminfo_available(), "MemAvailable in /proc/meminfo"),
                                 (_cgroup_room(), "the cgroup memory limit"),
                                 (_address_space_room(), "the address-space limit (ulimit -v)")) if v is not None]
    if not found:
        return None, ""
    return min(found)


def check_fits_memory(need: int, what: str, parts: str = "", advice: str = "") -> None:
    """InfeasibleError (exit 3) when `need` bytes exceed what this machine has available for this
    process; the message says `what` needs it (with the `parts` it adds up), the figure it was
    compared with and where it comes from, and `advice`."""
    room, source = available_memory()
    if room is None or need <= room:
        return
    raise InfeasibleError(
        f"{what} needs at least {format_bytes(need)} ({need:,} B{': ' + parts if parts else ''}) but this machine "
        f"has {format_bytes(room)} available ({source}). {advice + ' ' if advice else ''}Nothing was written.")

