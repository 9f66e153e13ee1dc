"""`edgevit bench` as a library call: run a configuration's matrix, compare with a baseline, write
OUT/bench.json and OUT/bench.html.

    doc = run_bench("bench.yaml", "build/bench", baseline="base.json", latency_tolerance=0.05)
    doc["summary"], doc["baseline"]["failed"], verdict(doc)

The baseline file and the configuration are read and validated before anything runs (a typo fails
in a second, not after the matrix). Artifacts are written under OUT/artifacts/ and kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from edgevit.atomic_write import make_dir, write_file_atomically
from edgevit.bench import baseline as baseline_mod
from edgevit.bench import record, results
from edgevit.bench.config import load_config
from edgevit.bench.execute import run_cells
from edgevit.bench.report_html import render
from edgevit.errors import UserInputError

JSON_NAME = "bench.json"
HTML_NAME = "bench.html"


def run_bench(config: str | Path | None, out: str | Path, baseline: str | Path | None = None,
              latency_tolerance: float = baseline_mod.DEFAULT_LATENCY_TOLERANCE,
              memory_tolerance: float = baseline_mod.DEFAULT_MEMORY_TOLERANCE, jobs: int = 1,
              say: Callable[[str], None] = lambda m: None) -> dict:
    """Run the bench configuration `config` (None: the shipped default), write OUT/bench.json and
    OUT/bench.html and return the document (results.py). UserInputError for a bad configuration,
    baseline file or OUT; cell failures are recorded in the document, not raised."""
    base_doc = results.load_document(baseline) if baseline is not None else None
    cfg = load_config(config)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: exists and is not a directory")
    make_dir(out)
    started, t0 = results.now(), time.monotonic()
    say(f"bench {cfg.name}: {cfg.path} -> {out}")
    cells = run_cells(cfg, out / "artifacts", jobs=jobs, say=say)
    comparison = None if base_doc is None else baseline_mod.compare(cells, base_doc, latency_tolerance,
                                                                    memory_tolerance, path=baseline)
    doc = results.document(cfg.to_dict(), cells, record.summary_counts(cells), started, time.monotonic() - t0,
                           comparison)
    write_outputs(doc, out)
    return doc


def write_outputs(doc: dict, out: Path) -> tuple[Path, Path]:
    """Write OUT/bench.json and OUT/bench.html for the document; returns both paths."""
    json_path, html_path = out / JSON_NAME, out / HTML_NAME
    results.write_document(doc, json_path)
    write_file_atomically(html_path, render(doc))  # temp + rename; a killed writer's leftovers removed
    return json_path, html_path


def verdict(doc: dict) -> list[str]:
    """Why the bench fails (the CLI exits 1), empty when it passes: failed cells, outputs that differ
    from the reference, regressions against the baseline."""
    s, why = doc["summary"], []
    if s["failed"]:
        why.append(f"{s['failed']} cell(s) failed")
    if s["mismatched"]:
        why.append(f"outputs differ from the reference in {', '.join(s['mismatched'])}")
    b = doc.get("baseline")
    if b and b["failed"]:
        why.append(f"{len(b['regressions'])} regression(s) against the baseline {b['path']}")
    return why
