"""bench.json: the versioned document of a bench run, and reading one back (for --baseline).

    {"format": "edgevit-bench", "version": 1, "created": "2025-01-01T12:00:00+00:00", "duration_s": 171.3,
     "edgevit": {"version": "0.1.0", "commit": "e261850...", "dirty": true},
     "host": {"platform", "machine", "cpu", "cores", "python", "hostname", "tools": {"qemu-system-arm": "..."}},
     "config": {... BenchConfig.to_dict() ...},
     "summary": {"ok", "skipped", "infeasible", "failed", "mismatched", "cells"},
     "cells": [... record.py ...],
     "baseline": null or baseline.compare(...)}

Readers check `format` and `version`; a later edgevit that changes the cells' layout bumps VERSION.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import edgevit
from edgevit.atomic_write import write_file_atomically
from edgevit.bench.config import SOURCE_ROOT
from edgevit.errors import UserInputError

FORMAT = "edgevit-bench"
VERSION = 1
TOOLS = ("gcc", "arm-none-eabi-gcc", "qemu-system-arm")  # versions recorded when installed


def document(config_dict: dict, cells: list[dict], summary: dict, started: _dt.datetime, duration_s: float,
             baseline: dict | None = None) -> dict[str, Any]:
    """The bench.json document (see the module docstring)."""
    return {"format": FORMAT, "version": VERSION, "created": started.isoformat(timespec="seconds"),
            "duration_s": round(duration_s, 1), "edgevit": edgevit_info(), "host": host_info(),
            "config": config_dict, "summary": summary, "cells": cells, "baseline": baseline}


def write_document(doc: dict, path: Path) -> None:
    """Write `doc` as indented JSON (atomically: a temp file renamed over `path`, edgevit/atomic_write.py)."""
    write_file_atomically(Path(path), json.dumps(doc, indent=1, sort_keys=False) + "\n")


def load_document(path: str | Path, what: str = "--baseline") -> dict:
    """A bench.json read back and checked (format, version, cells with keys); UserInputError naming
    `what` and the file otherwise."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"{what} {path}: no such file; pass the bench.json of an earlier `edgevit bench`") from None
    except (OSError, ValueError) as e:
        raise UserInputError(f"{what} {path}: not a readable JSON file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserInputError(f"{what} {path}: not an edgevit bench result (its `format` is not {FORMAT!r}); pass the "
                             "bench.json that `edgevit bench` wrote")
    if doc.get("version") != VERSION:
        raise UserInputError(f"{what} {path}: bench result version {doc.get('version')!r}, this edgevit reads version "
                             f"{VERSION}; re-run the baseline with this edgevit")
    cells = doc.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) and isinstance(c.get("key"), str) for c in cells):
        raise UserInputError(f"{what} {path}: `cells` must be a list of cell records with a `key` each")
    return doc


def edgevit_info() -> dict[str, Any]:
    """edgevit's version and, in a git checkout, the commit (and whether tracked files are modified)."""
    info: dict[str, Any] = {"version": edgevit.__version__, "commit": None, "dirty": None}
    if not (SOURCE_ROOT / ".git").exists() or shutil.which("git") is None:
        return info
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=SOURCE_ROOT,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return info
    if head.returncode == 0:
        info["commit"] = head.stdout.strip()
        info["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    return info


def host_info() -> dict[str, Any]:
    """This machine: platform, architecture, CPU model, cores, Python, host name and tool versions."""
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "python": platform.python_version(), "hostname": platform.node(),
            "tools": tool_versions()}


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor() or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def tool_versions() -> dict[str, str]:
    """The first line of `--version` of each installed TOOLS binary."""
    out = {}
    for tool in TOOLS:
        if shutil.which(tool) is None:
            continue
        try:
            text = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if text.strip():
            out[tool] = text.strip().splitlines()[0]
    return out


def now() -> _dt.datetime:
    """The current time, timezone-aware (UTC)."""
    return _dt.datetime.now(_dt.timezone.utc)
