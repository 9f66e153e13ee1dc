"""The machine edgevit runs on, described for people: profiles that run natively (`host`) have fixed
figures so that artifacts are the same bytes everywhere; `edgevit profiles show` prints this beside them."""

from __future__ import annotations

import os
from pathlib import Path

from edgevit.profiles.units import format_bytes


def this_machine() -> str:
    """What the machine running edgevit has, for profiles run natively (whose figures are fixed):
    e.g. "2 cores available (Intel(R) Xeon(R) CPU @ 2.60GHz), 23.5 GiB RAM"; unknown parts left out."""
    parts = []
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if cores:
        parts.append(f"{cores} core{'s' if cores != 1 else ''} available" + (f" ({model})" if model else ""))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                parts.append(f"{format_bytes(int(line.split()[1]) * 1024)} RAM")
    except (OSError, ValueError, IndexError):
        pass
    return ", ".join(parts) or "unknown"
