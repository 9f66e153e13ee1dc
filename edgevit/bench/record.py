"""A bench cell's record in bench.json, from what compile and run returned (pure functions).

    {"key": "fmnist-tiny/int8/stm32f746-disco/qemu", "model": ..., "passes_name": "int8", "passes": ...,
     "profile": ..., "target": "mcu", "runner": "qemu",
     "status": "ok" | "skipped" | "infeasible" | "failed", "reason": None or why,
     "compile": {"seconds", "reused", "artifact", "program", "fingerprint", "lowering", "macs", "steps"},
     "latency": {"ms", "kind": "measured" | "estimated" | "none", "note", "source", "p90_ms", "min_ms",
                 "instructions", "cycles"},
     "memory": {"pools": [{"name", "used", "budget", "unit", "detail"}], "arena_bytes", "peak_rss_bytes"},
     "accuracy": {"count", "matches", "bit_exact", "match_rule", "top1", "reference_top1", "max_abs_error"},
     "kernels": {"kind": "measured" | "estimated" | "none", "note", "unit": "ms", "vectors",
                 "steps": [{"index", "label", "kernels", "ops", "ms"}], "by_op": {label: ms}},
     "run": {"elapsed_s", "source", "machine", "clock_hz"}}

Latency is what the runner measured when it measures (a bench program's median, a board's cycle
counter), else the runner's estimate (QEMU's instruction count at the profile's clock) — `kind` says
which, `note` how. Memory is the target's resource pools (MCU: SRAM and flash; CPU: RAM) from the
compile's cost estimate, the same numbers the artifact's budget check used. Per-kernel times come
from a second, profiling build of the same artifact (EV-STEPS lines): one figure per plan step
(a chain of row-wise kernels is one step), the median over the profiled vectors.
"""

from __future__ import annotations

import statistics
from typing import Any

STATUSES = ("ok", "skipped", "infeasible", "failed")


def base_record(fields: dict, status: str, reason: str | None = None) -> dict:
    """A record with the cell's identity `fields`, a status and reason, and empty sections."""
    assert status in STATUSES, status
    return {**fields, "status": status, "reason": reason, "compile": None, "latency": None, "memory": None,
            "accuracy": None, "kernels": None, "run": None}


def compile_section(summary: dict, reused: bool) -> dict:
    """The record's `compile` section from compile_artifact's summary; `reused`: the artifact came from
    an earlier cell of this run (its compile time is the one of that compile)."""
    return {"seconds": summary["seconds"], "reused": reused, "artifact": summary["out"], "program": summary["program"],
            "fingerprint": summary["fingerprint"], "lowering": summary["lowering"], "macs": summary["macs"],
            "steps": summary["steps"]}


def memory_section(summary: dict, result: dict | None = None) -> dict:
    """The target's resource pools (compile summary) and, when the runner measured it, peak RSS."""
    pools = [{k: p[k] for k in ("name", "used", "budget", "unit", "detail")} for p in summary["pools"]]
    out = {"pools": pools, "arena_bytes": summary["memory"].get("arena_bytes")}
    if result is not None and result.get("peak_rss_bytes") is not None:
        out["peak_rss_bytes"] = result["peak_rss_bytes"]
    return out


def latency_section(result: dict) -> dict:
    """Measured latency when the runner measured it (median, p90, min), else its estimate, else none."""
    note = result.get("latency_note") or ""
    base = {"source": result.get("source"), "note": note, "p90_ms": None, "min_ms": None,
            "instructions": result.get("instructions_per_inference"), "cycles": result.get("cycles_per_inference")}
    if result.get("latency_ms_median") is not None:
        return {**base, "ms": result["latency_ms_median"], "kind": "measured", "p90_ms": result.get("latency_ms_p90"),
                "min_ms": result.get("latency_ms_min")}
    if result.get("estimated_latency_ms") is not None:
        return {**base, "ms": result["estimated_latency_ms"], "kind": "estimated"}
    return {**base, "ms": None, "kind": "none"}


def accuracy_section(result: dict) -> dict:
    """count, matches, bit_exact (every output matched the reference), match_rule, top1, reference_top1."""
    return {"count": result["count"], "matches": result["matches"], "bit_exact": result["matches"] == result["count"],
            "match_rule": result["match_rule"], "top1": result["top1"], "reference_top1": result["reference_top1"],
            "max_abs_error": result["max_abs_error"]}


def run_section(result: dict) -> dict:
    """Where and how long the run took."""
    return {"elapsed_s": result.get("elapsed_s"), "source": result.get("source"), "machine": result.get("machine"),
            "clock_hz": result.get("clock_hz")}


def kernels_section(step_ticks: list[list[int]], seconds_per_tick: float, manifest: dict, kind: str,
                    note: str) -> dict:
    """Per plan step: its kernels and ops (from the artifact manifest's `steps` and `kernels`) and the
    median over vectors of its ticks x `seconds_per_tick`, in ms; `by_op` sums steps by label (the
    op, or "op+op" for a chain)."""
    op_of = {k["name"]: k["op"] for k in manifest.get("kernels") or []}
    steps_meta = manifest.get("steps") or []
    n = len(step_ticks[0])
    if len(steps_meta) != n:
        raise ValueError(f"the profiling run reported {n} steps but the manifest lists {len(steps_meta)}")
    steps, by_op = [], {}
    for i, meta in enumerate(steps_meta):
        ms = statistics.median(v[i] for v in step_ticks) * seconds_per_tick * 1e3
        ops = [op_of.get(k, "?") for k in meta["kernels"]]
        label = "+".join(dict.fromkeys(ops)) or "?"
        steps.append({"index": i, "label": label, "kernels": list(meta["kernels"]), "ops": ops, "ms": ms})
        by_op[label] = by_op.get(label, 0.0) + ms
    return {"kind": kind, "note": note, "unit": "ms", "vectors": len(step_ticks), "steps": steps,
            "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]))}


def no_kernels(reason: str) -> dict:
    """A `kernels` section without figures, saying why."""
    return {"kind": "none", "note": reason, "unit": "ms", "vectors": 0, "steps": [], "by_op": {}}


def summary_counts(cells: list[dict]) -> dict[str, Any]:
    """{status: number of cells} plus `mismatched`: ok cells whose outputs did not all match."""
    out: dict[str, Any] = {s: sum(c["status"] == s for c in cells) for s in STATUSES}
    out["mismatched"] = [c["key"] for c in cells if c["status"] == "ok" and not c["accuracy"]["bit_exact"]]
    out["cells"] = len(cells)
    return out
