"""Targets and the printed report of benchmarks/cpu_latency.py (pure functions of its rows).

A row is {model, threads, edgevit_f32, edgevit_int8, ort_f32, ort_int8, ratios}; each cell holds
latency_ms_median, peak_rss_bytes, ... or {error}. A target's status is PASS (every value in
scope measured and within its threshold), FAIL (some measured value is not), ERROR (none fails
but some could not be measured) or N/A (nothing in scope was measured, e.g. --models left it out).
"""

from __future__ import annotations

LATENCY_TARGETS = (  # (name, ratio key, threshold)
    ("float32 latency <= 1.0x onnxruntime float32", "f32_vs_ort_f32", 1.0),
    ("int8 latency <= 0.6x onnxruntime float32", "int8_vs_ort_f32", 0.6),
    ("int8 latency <= 1.0x onnxruntime int8", "int8_vs_ort_int8", 1.0),
)


def status(values: dict, ok) -> str:
    """PASS / FAIL / ERROR / N/A for {label: value or None} under the predicate `ok(value)`."""
    if not values:
        return "N/A"
    if any(v is not None and not ok(v) for v in values.values()):
        return "FAIL"
    return "ERROR" if any(v is None for v in values.values()) else "PASS"


def _target(name: str, threshold: str, values: dict, ok, scope: str) -> dict:
    s = status(values, ok)
    return {"name": name, "threshold": threshold, "scope": scope, "values": values, "status": s, "met": s == "PASS"}


def compute_targets(rows: list[dict], models: list[str], limits: dict, deit: str) -> list[dict]:
    """The issue's targets from the measured rows: latency ratios (every model x thread count), compile
    wall time (zoo models < limits["zoo"], `deit` < limits[deit]; every compile, no tuning), int8
    bit-exact and float32 within tolerance on the host (matches == count, count >= 1)."""
    scope = f"models {', '.join(models)}; threads {', '.join(sorted({str(r['threads']) for r in rows}))}"
    out = []
    for name, key, limit in LATENCY_TARGETS:
        values = {f"{r['model']} t={r['threads']}": r["ratios"][key] for r in rows}
        out.append(_target(name, f"ratio <= {limit:g}", values, lambda v, lim=limit: v <= lim, scope))
    for group, label in (("zoo", "compile of a zoo model without tuning"), (deit, f"compile of {deit}")):
        limit = limits[group]
        values = {f"{r['model']} {prec}": r[f"edgevit_{prec}"].get("compile_s")  # one compile per model x prec
                  for r in rows for prec in ("f32", "int8")
                  if (r["model"] == deit) == (group == deit)}
        out.append(_target(f"{label} < {limit:g} s", f"wall seconds < {limit:g}", values,
                           lambda v, lim=limit: v < lim, scope))
    for prec, name in (("int8", "int8 outputs bit-exact vs the reference interpreter (host)"),
                       ("f32", "float32 outputs within 1e-4 relative of the reference (host)")):
        values = {f"{r['model']} t={r['threads']}": _exact(r[f"edgevit_{prec}"]) for r in rows}
        out.append(_target(name, "matches == count", values, lambda v: v["matches"] == v["count"] >= 1, scope))
    return out


def _exact(cell: dict) -> dict | None:
    if cell.get("matches") is None or cell.get("count") is None:
        return None
    return {"matches": int(cell["matches"]), "count": int(cell["count"])}


# ---------------------------------------------------------------- printing

HEADERS = ("model", "thr", "ev f32", "ev i8", "ort f32", "ort i8", "f32/ort32", "i8/ort32", "i8/orti8",
           "rss ev32", "rss ev8", "rss ort32", "rss ort8", "ev f32 ok", "ev i8 exact", "ort32 top1", "ort8 top1")


def _ms(cell: dict) -> str:
    v = cell.get("latency_ms_median")
    return "ERR" if "error" in cell else "-" if v is None else f"{v:.3f}"


def _mb(cell: dict) -> str:
    v = cell.get("peak_rss_bytes")
    return "ERR" if "error" in cell else "-" if v is None else f"{v / 2**20:.1f}"


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _matches(cell: dict) -> str:
    e = _exact(cell)
    return "ERR" if e is None and "error" in cell else "-" if e is None else f"{e['matches']}/{e['count']}"


def _agree(cell: dict) -> str:
    v = cell.get("agreement")
    return "ERR" if "error" in cell else "-" if v is None else f"{100 * v:.1f}%"


def table_lines(rows: list[dict]) -> list[str]:
    """The table: one line per model x threads; latency = median ms, RSS = peak MiB of the measuring process."""
    body = [(r["model"], str(r["threads"]), _ms(r["edgevit_f32"]), _ms(r["edgevit_int8"]), _ms(r["ort_f32"]),
             _ms(r["ort_int8"]), _ratio(r["ratios"]["f32_vs_ort_f32"]), _ratio(r["ratios"]["int8_vs_ort_f32"]),
             _ratio(r["ratios"]["int8_vs_ort_int8"]), _mb(r["edgevit_f32"]), _mb(r["edgevit_int8"]),
             _mb(r["ort_f32"]), _mb(r["ort_int8"]), _matches(r["edgevit_f32"]), _matches(r["edgevit_int8"]),
             _agree(r["ort_f32"]), _agree(r["ort_int8"])) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(HEADERS)]
    fmt = lambda cols: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))
    return [fmt(HEADERS), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)]


def print_report(doc: dict, cells: tuple[str, ...]) -> None:
    """Host, versions, settings, the table, errors and the targets with PASS/FAIL, for people (stdout)."""
    h, s = doc["host"], doc["settings"]
    v = h["versions"]
    print(f"cpu_latency{'  [QUICK MODE: smoke test, numbers not representative]' if doc['quick'] else ''}")
    print(f"host      {h['cpu']} ({h['arch']}, {h['cores']} cores), edgevit {h['edgevit_commit']}")
    print(f"ISA       {' '.join(h['simd_flags']) or '(no SIMD flags known to edgevit)'}")
    print(f"versions  torch {v['torch']}, onnxruntime {v['onnxruntime']}, TVM {v['apache-tvm']}, "
          f"onnx {v['onnx']}, numpy {v['numpy']}, Python {h['python']}")
    print(f"settings  profile {doc['profile']}, batch 1, median of {s['runs']} runs after warm-up in {s.get('rounds', 1)} interleaved rounds, "
          f"{s['vectors']} test vectors, {s['calib_size']} calibration images, int8 = {s['int8_passes']} / "
          f"onnxruntime static QDQ (S8S8, per-channel, MinMax)\n")
    for line in table_lines(doc["rows"]):
        print(line)
    print("\nlatency: median ms; ratios: edgevit / onnxruntime medians; rss: peak MiB of the measuring process "
          "(edgevit: the bench program; onnxruntime: a Python child, whose imports alone take "
          f"{_baseline(doc['rows'])}); ev ok: outputs matching the reference interpreter (int8 bit-exact, float32 "
          "1e-4 relative); ort top1: argmax agreement with the float32 reference interpreter")
    for r in doc["rows"]:
        for c in cells:
            if "error" in r[c]:
                print(f"ERROR {r['model']} t={r['threads']} {c}: {r[c]['error']}")
    print("\ntargets")
    for t in doc["targets"]:
        print(f"  [{t['status']:<5}] {t['name']}: {_worst(t)}")


def _baseline(rows: list[dict]) -> str:
    vals = [r[c]["baseline_rss_bytes"] for r in rows for c in ("ort_f32", "ort_int8") if "baseline_rss_bytes" in r[c]]
    return f"{min(vals) / 2**20:.0f}-{max(vals) / 2**20:.0f} MiB" if vals else "unknown"


def _worst(t: dict) -> str:
    """e.g. "worst 1.30 (fmnist-small t=2); 1 not measured"."""
    vals = {k: v for k, v in t["values"].items() if v is not None}
    missing = len(t["values"]) - len(vals)
    if not vals:
        return "nothing measured" if not t["values"] else f"{missing} not measured"
    if isinstance(next(iter(vals.values())), dict):
        bad = [k for k, v in vals.items() if v["matches"] != v["count"] or v["count"] < 1]
        text = "all match" if not bad else f"mismatches in {', '.join(bad)}"
    else:
        key = max(vals, key=vals.get)
        text = f"worst {vals[key]:.2f} ({key})"
    return text + (f"; {missing} not measured" if missing else "")
