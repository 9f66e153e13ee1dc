"""`edgevit bench [CONFIG.yaml]`: the command (registered by edgevit/cli.py), a thin shell over run_bench.

Progress goes to stderr; stdout gets a results table (or, with --json, the bench.json document).
Exit 0 when every cell that ran matched the reference and nothing regressed; 1 when a cell failed,
an output differed or a baseline comparison found a regression; 2 for a bad configuration or option.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgevit.bench.baseline import format_change, format_value, parse_tolerance
from edgevit.bench.run_bench import HTML_NAME, JSON_NAME, run_bench, verdict
from edgevit.errors import UserInputError

DEFAULT_OUT = Path("build/bench")
LOG_WIDTH = 150  # columns of the results table when stdout is not a terminal (CI logs)


def bench_cmd(
    config: Optional[Path] = typer.Argument(None, help="Bench configuration YAML (docs/bench.md); default: the "
                                            "shipped matrix (both zoo models, int8, two MCU boards on QEMU, host)."),
    default: bool = typer.Option(False, "--default", help="Run the shipped default configuration."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Directory for bench.json, bench.html and artifacts/."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="bench.json of an earlier run: fail on a "
                                            "latency or memory regression or any accuracy drop."),
    latency_tolerance: str = typer.Option("5%", "--latency-tolerance", help="Allowed latency growth vs the "
                                          "baseline (5% or 0.05)."),
    memory_tolerance: str = typer.Option("0%", "--memory-tolerance", help="Allowed growth of any memory pool vs "
                                         "the baseline."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Artifacts compiled and run in parallel (measured latency "
                             "is only comparable with 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the bench.json document on stdout."),
) -> None:
    """Run a benchmark matrix (models x passes x profiles x runners); write bench.json and bench.html."""
    if config is not None and default:
        raise UserInputError("give either a configuration file or --default, not both")
    lat_tol = parse_tolerance(latency_tolerance, "--latency-tolerance")
    mem_tol = parse_tolerance(memory_tolerance, "--memory-tolerance")
    err = Console(stderr=True, highlight=False)
    doc = run_bench(config, out, baseline=baseline, latency_tolerance=lat_tol, memory_tolerance=mem_tol, jobs=jobs,
                    say=lambda message: err.print(message, markup=False, soft_wrap=True))
    if as_json:
        print(json.dumps(doc))
    else:
        print_report(doc, Console(width=None if sys.stdout.isatty() else LOG_WIDTH))
    err.print(f"wrote {out / JSON_NAME} and {out / HTML_NAME} ({doc['duration_s']:.0f} s)", markup=False)
    problems = verdict(doc)
    if problems:
        err.print("[bold red]bench failed:[/] " + "; ".join(problems), soft_wrap=True)
        raise typer.Exit(1)


def print_report(doc: dict, console: Console) -> None:
    """The cells as a table (reasons of the cells not run below it) and, with a baseline, its
    regressions, for people."""
    t = Table(title=f"edgevit bench {doc['config']['name']}", title_justify="left")
    t.add_column("cell", no_wrap=True, overflow="fold")
    t.add_column("status")
    for col in ("latency ms", "memory B", "matches", "top-1"):
        t.add_column(col, justify="right", no_wrap=True)
    for c in doc["cells"]:
        lat, acc, mem = c.get("latency"), c.get("accuracy"), c.get("memory")
        latency = "" if not lat or lat["ms"] is None else f"{lat['ms']:.3f}" + (" est." if lat["kind"] == "estimated" else "")
        memory = "\n".join(f"{p['name']} {p['used']:,}" for p in mem["pools"]) if mem and c["status"] == "ok" else ""
        t.add_row(c["key"], c["status"], latency, memory, f"{acc['matches']}/{acc['count']}" if acc else "",
                  f"{acc['top1']:.1%}" if acc else "")
    console.print(t)
    for c in doc["cells"]:
        if c["status"] != "ok":
            console.print(f"{c['key']} {c['status']}: {c.get('reason') or ''}", markup=False, highlight=False,
                          soft_wrap=True)
    b = doc.get("baseline")
    if not b:
        return
    if not b["regressions"]:
        console.print(f"baseline {b['path']}: no regression ({b['compared']} cells compared)")
        return
    r = Table(title=f"regressions against {b['path']}", title_justify="left")
    for col in ("cell", "metric", "baseline", "now", "change", "allowed"):
        r.add_column(col)
    for row in b["regressions"]:
        r.add_row(row["key"], row["metric"], format_value(row["metric"], row["baseline"]),
                  format_value(row["metric"], row["current"]), format_change(row["metric"], row["change"]), row["limit"])
    console.print(r)
