"""bench.html: a self-contained HTML5 report of a bench.json document (inline CSS and SVG; no script,
no network, no external fonts or styles), readable offline and in CI artifacts.

Sections: the run (edgevit version and commit, host, tools, config), a results table (one row per
cell: status, latency and whether it is measured or estimated, memory pools against budgets,
accuracy, compile time), charts (latency, each memory pool, top-1, per-kernel time per cell, built
by svg.py), the baseline comparison when there is one, and the cells not run with their reasons.
Estimated figures are always labelled "estimated" (hatched bars, an "est." tag), never shown bare.
"""

from __future__ import annotations

from html import escape

from edgevit.bench.baseline import format_change, format_value
from edgevit.bench.svg import Bar, bar_chart, fmt

CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ok { color: #1a7f37; font-weight: bold; } .bad { color: #c00; font-weight: bold; } .muted { color: #666; }
.tag { display: inline-block; font-size: 0.8em; padding: 0 0.4em; border-radius: 3px; border: 1px solid #999; }
.est { background: #fff4e0; border-color: #d08b00; } .meas { background: #e6f4ea; border-color: #1a7f37; }
pre { white-space: pre-wrap; font-size: 0.85em; background: #f7f7f7; padding: 0.5em; margin: 0; max-width: 900px; }
figure { margin: 1em 0 2em; } figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; max-width: 900px; }
svg.chart { max-width: 100%; height: auto; display: block; }
"""
KIND_TAG = {"measured": '<span class="tag meas">measured</span>', "estimated": '<span class="tag est">estimated</span>',
            "none": '<span class="tag">none</span>'}


def render(doc: dict) -> str:
    """The whole HTML page for the bench.json document `doc`."""
    cells = doc["cells"]
    ok = [c for c in cells if c["status"] == "ok"]
    title = f"edgevit bench: {doc['config'].get('name', '')}"
    parts = [f"<h1>{escape(title)}</h1>", _run_info(doc), _summary(doc), "<h2>Results</h2>", _results_table(cells)]
    if ok:
        parts += ["<h2>Latency</h2>", _latency_chart(ok), "<h2>Memory</h2>", _memory_charts(ok),
                  "<h2>Accuracy</h2>", _accuracy_chart(ok), "<h2>Per-kernel time</h2>", _kernel_sections(ok)]
    if doc.get("baseline"):
        parts += ["<h2>Baseline comparison</h2>", _baseline(doc["baseline"])]
    not_run = [c for c in cells if c["status"] != "ok"]
    if not_run:
        parts += ["<h2>Cells not run</h2>", _not_run(not_run)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """A table of already-escaped cell HTML; columns in `numeric` are right-aligned."""
    th = "".join(f"<th>{h}</th>" for h in head)
    num = ' class="num"'
    body = "".join("<tr>" + "".join(f"<td{num if i in numeric else ''}>{v}</td>" for i, v in enumerate(r))
                   + "</tr>\n" for r in rows)
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _run_info(doc: dict) -> str:
    ev, host, cfg = doc["edgevit"], doc["host"], doc["config"]
    commit = ev.get("commit") or "unknown"
    if ev.get("dirty"):
        commit += " (with local changes)"
    rows = [["created", escape(doc["created"])], ["duration", f"{doc['duration_s']:.1f} s"],
            ["edgevit", escape(f"{ev['version']}, commit {commit}")],
            ["host", escape(f"{host.get('cpu') or '?'}, {host.get('cores')} cores, {host.get('platform')}")],
            ["configuration", escape(f"{cfg.get('path')} ({cfg.get('vectors')} vectors per artifact, data "
                                     f"{cfg.get('data')})")]]
    rows += [[escape(t), escape(v)] for t, v in (host.get("tools") or {}).items()]
    return _table(["", ""], rows).replace("<thead><tr><th></th><th></th></tr></thead>\n", "")


def _summary(doc: dict) -> str:
    s = doc["summary"]
    text = (f"{s['cells']} cells: <span class=\"ok\">{s['ok']} ran</span>, {s['skipped']} skipped, "
            f"{s['infeasible']} did not fit, <span class=\"{'bad' if s['failed'] else 'muted'}\">{s['failed']} failed"
            "</span>")
    if s["mismatched"]:
        text += f"; <span class=\"bad\">outputs differ from the reference in {len(s['mismatched'])} cell(s)</span>"
    b = doc.get("baseline")
    if b:
        verdict = (f"<span class=\"bad\">{len(b['regressions'])} regression(s)</span>" if b["failed"]
                   else "<span class=\"ok\">no regression</span>")
        text += f"; against the baseline: {verdict}"
    return f"<p>{text}.</p>"


def _pools_text(memory: dict | None) -> str:
    if not memory:
        return ""
    out = []
    for p in memory["pools"]:
        unit = f" {p['unit']}" if p["unit"] else ""
        share = f" ({100 * p['used'] / p['budget']:.1f}%)" if p["budget"] else ""
        budget = f" / {p['budget']:,}" if p["budget"] is not None else ""
        out.append(f"{escape(p['name'])} {p['used']:,}{budget}{unit}{share}")
    if memory.get("peak_rss_bytes") is not None:
        out.append(f"peak RSS {memory['peak_rss_bytes']:,} B (measured)")
    return "<br>".join(out)


def _results_table(cells: list[dict]) -> str:
    rows = []
    for c in cells:
        status = f"<span class=\"{'ok' if c['status'] == 'ok' else 'bad' if c['status'] == 'failed' else 'muted'}\">" \
                 f"{escape(c['status'])}</span>"
        lat, acc, comp = c.get("latency"), c.get("accuracy"), c.get("compile")
        latency = "" if not lat else ("n/a" if lat["ms"] is None else f"{lat['ms']:.3f} ms") + " " + KIND_TAG[lat["kind"]]
        if lat and lat.get("p90_ms") is not None:
            latency += f"<br><span class=\"muted\">p90 {lat['p90_ms']:.3f} ms</span>"
        accuracy = ""
        if acc:
            cls = "ok" if acc["bit_exact"] else "bad"
            accuracy = (f"<span class=\"{cls}\">{acc['matches']}/{acc['count']}</span> match; top-1 {acc['top1']:.1%} "
                        f"(reference {acc['reference_top1']:.1%})")
        compile_s = "" if not comp else f"{comp['seconds']:.1f} s" + (" (reused)" if comp["reused"] else "")
        rows.append([escape(c["model"]), escape(c["passes_name"]), escape(c["profile"]), escape(c["runner"]), status,
                     latency, _pools_text(c.get("memory")), accuracy, compile_s])
    return _table(["model", "passes", "profile", "runner", "status", "latency", "memory (used / budget)", "accuracy",
                   "compile"], rows, numeric={5, 8})


def _latency_chart(ok: list[dict]) -> str:
    bars = [Bar(c["key"], c["latency"]["ms"], color=0, hatched=c["latency"]["kind"] == "estimated",
                note="est." if c["latency"]["kind"] == "estimated" else "") for c in ok]
    svg = bar_chart("chart-latency", bars, "ms", "Latency per inference",
                    legend=[(0, False, "measured"), (0, True, "estimated")])
    notes = sorted({f"{c['runner']} runner on {c['profile']} ({c['latency']['kind']}): {c['latency']['note']}"
                    for c in ok})
    caption = "How each figure was obtained:<br>" + "<br>".join(escape(n) for n in notes)
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _memory_charts(ok: list[dict]) -> str:
    names = list(dict.fromkeys(p["name"] for c in ok for p in c["memory"]["pools"]))
    out = []
    for i, name in enumerate(names):
        bars, unit = [], "B"
        for c in ok:
            pool = next((p for p in c["memory"]["pools"] if p["name"] == name), None)
            if pool is not None:
                unit = pool["unit"] or "units"
                bars.append(Bar(c["key"], float(pool["used"]), color=1 + i, limit=pool["budget"],
                                note=f"of {fmt(pool['budget'])}" if pool["budget"] is not None else ""))
        svg = bar_chart(f"chart-memory-{i}", bars, unit, f"{name}: used (red mark: the device's budget)", log=False)
        details = sorted({f"{c['key']}: {p['detail']}" for c in ok for p in c["memory"]["pools"]
                          if p["name"] == name and p["detail"]})
        out.append(f"<figure>{svg}<figcaption>{'<br>'.join(escape(d) for d in details)}</figcaption></figure>")
    return "\n".join(out)


def _accuracy_chart(ok: list[dict]) -> str:
    bars = [Bar(c["key"], 100 * c["accuracy"]["top1"], color=2,
                note=f"({c['accuracy']['matches']}/{c['accuracy']['count']} bit-exact)"
                if c["accuracy"]["match_rule"] == "bit-exact" else
                f"({c['accuracy']['matches']}/{c['accuracy']['count']} match)") for c in ok]
    svg = bar_chart("chart-accuracy", bars, "%", "Top-1 on the bundled test vectors", log=False)
    return (f"<figure>{svg}<figcaption>Top-1 of the device's outputs on the vectors each cell ran; in parentheses the "
            "outputs equal to the reference interpreter's.</figcaption></figure>")


def _kernel_sections(ok: list[dict]) -> str:
    out = []
    for n, c in enumerate(ok):
        k = c.get("kernels") or {"kind": "none", "note": "not profiled", "steps": [], "by_op": {}}
        head = f"<h3>{escape(c['key'])} {KIND_TAG[k['kind']]}</h3>"
        if not k["steps"]:
            out.append(f"{head}<p class=\"muted\">{escape(k['note'])}</p>")
            continue
        hatched = k["kind"] == "estimated"
        total = sum(k["by_op"].values()) or 1.0
        bars = [Bar(label, ms, color=3, hatched=hatched, note=f"({100 * ms / total:.1f}%)")
                for label, ms in k["by_op"].items()]
        svg = bar_chart(f"chart-kernels-{n}", bars, "ms", f"Time by kernel ({k['kind']}, median of {k['vectors']} "
                        "vectors; a chain of row-wise kernels counts as one)", log=False,
                        legend=[(3, hatched, k["kind"])])
        rows = [[str(s["index"]), escape(s["label"]), escape(", ".join(s["kernels"])), f"{s['ms']:.4f}"]
                for s in k["steps"]]
        table = _table(["step", "ops", "kernels", f"ms ({k['kind']})"], rows, numeric={0, 3})
        out.append(f"{head}<figure>{svg}<figcaption>{escape(k['note'])}</figcaption></figure>"
                   f"<details><summary>{len(rows)} plan steps</summary>{table}</details>")
    return "\n".join(out)


def _baseline(b: dict) -> str:
    tol = (f"latency tolerance {b['latency_tolerance']:.1%}, memory tolerance {b['memory_tolerance']:.1%}, "
           "any accuracy drop")
    base = b["baseline"]
    parts = [f"<p>Baseline {escape(str(b.get('path')))} (created {escape(str(base.get('created')))}, commit "
             f"{escape(str(base.get('commit')))}); {b['compared']} cells compared; {escape(tol)}.</p>"]
    for title, rows, cls in (("Regressions", b["regressions"], "bad"), ("Improvements", b["improvements"], "ok")):
        if rows:
            body = [[escape(r["key"]), escape(r["metric"]), escape(format_value(r["metric"], r["baseline"])),
                     escape(format_value(r["metric"], r["current"])), escape(format_change(r["metric"], r["change"])),
                     escape(r["limit"]), escape(r["detail"])] for r in rows]
            parts.append(f"<h3 class=\"{cls}\">{title} ({len(rows)})</h3>"
                         + _table(["cell", "metric", "baseline", "now", "change", "allowed", "detail"], body, {2, 3, 4}))
    if not b["regressions"]:
        parts.append("<p class=\"ok\">No regression.</p>")
    extra = [[escape(r["key"]), escape(r["metric"]), escape(r["detail"])] for r in b["notes"]]
    extra += [[escape(r["key"]), "status", escape(f"{r['current']} now, {r['baseline']} in the baseline: {r['detail']}")]
              for r in b["not_ok"]]
    extra += [[escape(k), "missing", "in the baseline only"] for k in b["missing_in_current"]]
    extra += [[escape(k), "missing", "not in the baseline"] for k in b["missing_in_baseline"]]
    if extra:
        parts.append("<h3>Not compared</h3>" + _table(["cell", "what", "why"], extra))
    return "\n".join(parts)


def _not_run(cells: list[dict]) -> str:
    rows = [[escape(c["key"]), escape(c["status"]), f"<pre>{escape(c.get('reason') or '')}</pre>"] for c in cells]
    return _table(["cell", "status", "reason"], rows)
