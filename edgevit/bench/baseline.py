"""Compare a bench run with a baseline bench.json, cell by cell (matching keys).

    cmp = compare(cells, load_document("base.json"), latency_tolerance=0.05, memory_tolerance=0.0)
    cmp["failed"]        # True when any regression: the CLI exits 1

Per cell present and `ok` on both sides:
- latency: a regression when the current latency exceeds the baseline's by more than
  `latency_tolerance` (relative: 0.05 = 5%); compared only when both are of the same kind (measured
  vs measured, estimated vs estimated) — otherwise a note. QEMU's instruction counts are
  deterministic, so the tolerance matters mostly for measured latency on real hardware and hosts.
- memory: every resource pool both sides have (SRAM, flash, RAM...): a regression when `used`
  grows by more than `memory_tolerance` (default 0: any growth).
- accuracy: any drop is a regression: fewer matching outputs (as a fraction of the vectors run) or
  a lower top-1. Top-1 over a different number of vectors is not comparable: a note instead.
Changes beyond the tolerance in the other direction are listed as improvements. Cells on one side
only, or not `ok` on one side (skipped here, failed), are reported and never fail the comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevit.errors import UserInputError

DEFAULT_LATENCY_TOLERANCE = 0.05
DEFAULT_MEMORY_TOLERANCE = 0.0


def parse_tolerance(text: str, option: str) -> float:
    """A relative tolerance from "5%" or "0.05" (a fraction); UserInputError naming `option` otherwise."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UserInputError(f"{option} {text!r}: give a percentage such as 5% or a fraction such as 0.05") from None
    if not value >= 0 or value == float("inf"):
        raise UserInputError(f"{option} {text!r}: must be a finite tolerance of at least 0%")
    return value


def _change(current: float, base: float) -> float | None:
    return None if base == 0 else current / base - 1.0


def _row(key: str, metric: str, base: Any, current: Any, change: float | None, limit: str, detail: str = "") -> dict:
    return {"key": key, "metric": metric, "baseline": base, "current": current, "change": change, "limit": limit,
            "detail": detail}


def compare_cell(cur: dict, base: dict, latency_tolerance: float, memory_tolerance: float) -> tuple[list, list, list]:
    """(regressions, improvements, notes) of one cell `ok` on both sides."""
    key, worse, better, notes = cur["key"], [], [], []
    lc, lb = cur.get("latency") or {}, base.get("latency") or {}
    if lc.get("ms") is not None and lb.get("ms") is not None:
        if lc.get("kind") != lb.get("kind"):
            notes.append(_row(key, "latency_ms", lb["ms"], lc["ms"], None, "",
                              f"not compared: {lc.get('kind')} now, {lb.get('kind')} in the baseline"))
        else:
            change = _change(lc["ms"], lb["ms"])
            limit = f"+{latency_tolerance:.1%}"
            if change is not None and change > latency_tolerance:
                worse.append(_row(key, "latency_ms", lb["ms"], lc["ms"], change, limit, lc.get("kind", "")))
            elif change is not None and change < -latency_tolerance:
                better.append(_row(key, "latency_ms", lb["ms"], lc["ms"], change, limit, lc.get("kind", "")))
    pools_b = {p["name"]: p for p in (base.get("memory") or {}).get("pools", [])}
    for pool in (cur.get("memory") or {}).get("pools", []):
        old = pools_b.get(pool["name"])
        if old is None:
            continue
        metric, change = f"memory.{pool['name']}", _change(pool["used"], old["used"])
        limit = f"+{memory_tolerance:.1%}"
        if pool["used"] > old["used"] * (1 + memory_tolerance):
            worse.append(_row(key, metric, old["used"], pool["used"], change, limit, pool.get("unit") or ""))
        elif pool["used"] < old["used"] * (1 - memory_tolerance):
            better.append(_row(key, metric, old["used"], pool["used"], change, limit, pool.get("unit") or ""))
    ac, ab = cur.get("accuracy") or {}, base.get("accuracy") or {}
    if ac and ab:
        fc, fb = ac["matches"] / ac["count"], ab["matches"] / ab["count"]
        shown_c, shown_b = f"{ac['matches']}/{ac['count']}", f"{ab['matches']}/{ab['count']}"
        if fc < fb:
            worse.append(_row(key, "matches", shown_b, shown_c, fc - fb, "no drop", "outputs matching the reference"))
        elif fc > fb:
            better.append(_row(key, "matches", shown_b, shown_c, fc - fb, "no drop", "outputs matching the reference"))
        if ac["count"] != ab["count"]:
            notes.append(_row(key, "top1", ab["top1"], ac["top1"], None, "",
                              f"not compared: {ac['count']} vectors now, {ab['count']} in the baseline"))
        elif ac["top1"] < ab["top1"]:
            worse.append(_row(key, "top1", ab["top1"], ac["top1"], ac["top1"] - ab["top1"], "no drop", ""))
        elif ac["top1"] > ab["top1"]:
            better.append(_row(key, "top1", ab["top1"], ac["top1"], ac["top1"] - ab["top1"], "no drop", ""))
    return worse, better, notes


def compare(cells: list[dict], baseline: dict, latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE,
            memory_tolerance: float = DEFAULT_MEMORY_TOLERANCE, path: str | Path | None = None) -> dict:
    """The comparison of the current `cells` with the `baseline` document (results.load_document):
    regressions, improvements, notes, cells missing on either side, cells not ok on a side, `failed`."""
    base_cells = {c["key"]: c for c in baseline["cells"]}
    cur_cells = {c["key"]: c for c in cells}
    regressions, improvements, notes, not_ok = [], [], [], []
    compared = 0
    for key, cur in cur_cells.items():
        base = base_cells.get(key)
        if base is None:
            continue
        if cur["status"] != "ok" or base["status"] != "ok":
            not_ok.append({"key": key, "current": cur["status"], "baseline": base["status"],
                           "detail": first_line(cur.get("reason") or base.get("reason") or "")})
            continue
        compared += 1
        worse, better, note = compare_cell(cur, base, latency_tolerance, memory_tolerance)
        regressions += worse
        improvements += better
        notes += note
    edgevit = baseline.get("edgevit") or {}
    return {"path": None if path is None else str(path), "latency_tolerance": latency_tolerance,
            "memory_tolerance": memory_tolerance,
            "baseline": {"created": baseline.get("created"), "commit": edgevit.get("commit"),
                         "version": edgevit.get("version")},
            "compared": compared, "regressions": regressions, "improvements": improvements, "notes": notes,
            "not_ok": not_ok, "missing_in_current": sorted(set(base_cells) - set(cur_cells)),
            "missing_in_baseline": sorted(set(cur_cells) - set(base_cells)), "failed": bool(regressions)}


def first_line(text: str) -> str:
    """The first line of `text`."""
    text = text.strip()
    return text.splitlines()[0] if text else ""


def format_value(metric: str, value: Any) -> str:
    """A metric's value for tables: ms with 3 decimals, bytes with separators, top-1 as a percentage."""
    if value is None:
        return "-"
    if metric == "latency_ms":
        return f"{value:.3f} ms"
    if metric.startswith("memory."):
        return f"{value:,}"
    if metric == "top1":
        return f"{value:.2%}"
    return str(value)


def format_change(metric: str, change: float | None) -> str:
    """A relative change as "+12.0%" (latency, memory) or an absolute one in points (accuracy)."""
    if change is None:
        return "-"
    if metric in ("top1", "matches"):
        return f"{100 * change:+.2f} pt"
    return f"{change:+.1%}"
