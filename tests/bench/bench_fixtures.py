"""Synthetic bench cells and documents for the bench tests, built with the same record functions
`edgevit bench` uses (edgevit/bench/record.py), so their layout is the real one."""

from __future__ import annotations

import copy
import datetime as dt

from edgevit.bench import record, results

MANIFEST = {"kernels": [{"name": "pe", "op": "patch_embed"}, {"name": "ln", "op": "layernorm"},
                        {"name": "fc", "op": "linear"}, {"name": "at", "op": "attention"}],
            "steps": [{"index": 0, "kernels": ["pe"]}, {"index": 1, "kernels": ["ln", "fc"]},
                      {"index": 2, "kernels": ["at"]}]}


def summary(profile: str, pools: list[tuple[str, int, int | None]], seconds: float = 12.5) -> dict:
    """A compile summary (backend/compile.summary_of's keys the bench reads)."""
    return {"out": f"/tmp/artifacts/{profile}", "program": "m", "fingerprint": "ab" * 32, "lowering": "int8",
            "macs": 7_884_416, "steps": 3, "seconds": seconds, "memory": {"arena_bytes": 16200},
            "pools": [{"name": n, "used": u, "budget": b, "unit": "B", "detail": f"{n} detail", "fits": True}
                      for n, u, b in pools]}


def run_result(matches: int = 10, count: int = 10, top1: float = 0.9, measured_ms: float | None = None,
               estimated_ms: float | None = None) -> dict:
    """A run_vectors result dict (the keys the bench reads)."""
    return {"count": count, "matches": matches, "match_rule": "bit-exact", "top1": top1, "reference_top1": 0.9,
            "max_abs_error": 0, "latency_ms_median": measured_ms, "latency_ms_p90": None if measured_ms is None
            else measured_ms * 1.1, "latency_ms_min": measured_ms, "estimated_latency_ms": estimated_ms,
            "instructions_per_inference": None if estimated_ms is None else int(estimated_ms * 216e3),
            "latency_note": "measured" if measured_ms is not None else "estimate: instructions counted by QEMU",
            "source": "test", "elapsed_s": 1.0, "machine": None, "clock_hz": 216_000_000}


def ok_cell(model: str, profile: str, runner: str, *, ms: float, measured: bool, pools, matches: int = 10,
            count: int = 10, top1: float = 0.9, steps_ticks=((100, 300, 600), (100, 310, 590))) -> dict:
    """An `ok` cell record with latency, memory, accuracy and per-step times."""
    fields = {"key": f"{model}/int8/{profile}/{runner}", "model": model, "model_path": f"models/{model}",
              "passes_name": "int8", "passes": "quant(w=8,a=8)", "profile": profile,
              "target": "cpu" if runner == "host" else "mcu", "runner": runner}
    rec = record.base_record(fields, "ok")
    res = run_result(matches, count, top1, ms if measured else None, None if measured else ms)
    s = summary(profile, pools)
    rec.update(compile=record.compile_section(s, False), memory=record.memory_section(s, res),
               latency=record.latency_section(res), accuracy=record.accuracy_section(res), run=record.run_section(res))
    rec["kernels"] = record.kernels_section([list(t) for t in steps_ticks], 1e-6, MANIFEST,
                                            "measured" if measured else "estimated", "per-step note")
    return rec


def not_run_cell(model: str, profile: str, runner: str, status: str, reason: str) -> dict:
    """A skipped / failed / infeasible cell record."""
    fields = {"key": f"{model}/int8/{profile}/{runner}", "model": model, "model_path": f"models/{model}",
              "passes_name": "int8", "passes": "quant(w=8,a=8)", "profile": profile, "target": "mcu", "runner": runner}
    return record.base_record(fields, status, reason)


def cells() -> list[dict]:
    """Three ok cells (a measured host, two estimated MCUs with SRAM/flash) and three not run."""
    mcu = [("sram", 24_392, 327_680), ("flash", 178_418, 1_048_576)]
    return [ok_cell("tiny", "host", "host", ms=0.123, measured=True, pools=[("ram", 186_624, 8 << 30)]),
            ok_cell("tiny", "stm32f746-disco", "qemu", ms=87.75, measured=False, pools=mcu),
            ok_cell("tiny", "nrf52840", "qemu", ms=241.3, measured=False, pools=mcu),
            not_run_cell("tiny", "stm32f746-disco", "serial", "skipped", "--runner serial needs --port <&> \"x\""),
            not_run_cell("tiny", "nrf52840", "serial", "failed", "run failed: the board sent nothing"),
            not_run_cell("small", "nrf52840", "qemu", "infeasible", "does not fit nrf52840: sram 300,000 B > 262,144 B")]


def document(cell_records: list[dict] | None = None, baseline: dict | None = None) -> dict:
    """A bench.json document around `cell_records` (default: cells())."""
    cell_records = cells() if cell_records is None else cell_records
    config = {"path": "bench.yaml", "name": "synthetic", "data": "fashion-mnist", "vectors": 10}
    return results.document(config, cell_records, record.summary_counts(cell_records),
                            dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), 12.3, baseline)


def changed(doc: dict, key: str, path: tuple, value) -> dict:
    """A deep copy of `doc` with cells[key][path...] = value."""
    out = copy.deepcopy(doc)
    cell = next(c for c in out["cells"] if c["key"] == key)
    target = cell
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out
