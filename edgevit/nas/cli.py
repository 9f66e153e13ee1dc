"""`edgevit search`: the Typer command (registered by edgevit/cli.py) and its Rich progress.

Progress goes to stderr (supernet steps; evolution generations with the best accuracy, the front
size and candidates per second); stdout gets a short summary (or one JSON object with --json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from edgevit.nas.search import Reporter, amount


class RichReporter(Reporter):
    """Rich progress on stderr: a bar for the supernet, a live line for the evolution."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=self.console,
                                 transient=True)
        self._supernet = self._evolution = None
        self._generation = -1
        self._last = None
        self._shown = None

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._end_generation()
        self.progress.stop()

    def stage(self, text: str) -> None:
        """Print the phase that starts."""
        self._end_generation()
        self.console.print(f"[bold]search[/] {text}", highlight=False)

    def note(self, text: str) -> None:
        """Print a line."""
        self.console.print(f"  {text}", highlight=False)

    def supernet(self, step: int, total: int, loss: float) -> None:
        """Advance the supernet bar."""
        if self._supernet is None:
            self._supernet = self.progress.add_task("supernet steps", total=total, stats="")
        self.progress.update(self._supernet, completed=step, total=total, stats=f"loss {loss:.3f}")

    def evolution(self, info: dict) -> None:
        """Update the evolution line; print one line per finished generation."""
        if self._supernet is not None:
            self.progress.remove_task(self._supernet)
            self._supernet = None
        if self._evolution is None:
            self._evolution = self.progress.add_task("evolution", total=None, stats="")
        if info["generation"] != self._generation:
            self._end_generation()
            self._generation = info["generation"]
        self._last = info
        self.progress.update(self._evolution, completed=info["evaluated"], stats=self._stats(info),
                             description=f"generation {info['generation']}")

    @staticmethod
    def _stats(info: dict) -> str:
        best = "-" if info["best_accuracy"] is None else f"{info['best_accuracy']:.2%}"
        return f"best {best}  front {info['front_size']}  {info['candidates_per_s']:.2f} cand/s"

    def _end_generation(self) -> None:
        """One permanent line for a finished generation when the best or the front changed (or every 10th)."""
        info, self._last = self._last, None
        if info is None or self._generation < 0:
            return
        shown = (info["best_accuracy"], info["front_size"])
        if shown != self._shown or self._generation % 10 == 0:
            self._shown = shown
            self.console.print(f"  generation {self._generation}: {info['evaluated']} evaluated, "
                               f"{self._stats(info)}", highlight=False)


def print_summary(s: dict, console: Console) -> None:
    """The short human summary: best spec, its accuracy and costs (every resource pool), the paths written."""
    b, spec = s["best"], s["spec"]
    lat = "-" if b.get("latency_ms") is None else f"{b['latency_ms']:.1f} ms"
    console.print(f"best [bold]{b['name']}[/]: supernet val top-1 {b['accuracy']:.2%}", highlight=False)
    pools = [f"{p['name']} {amount(p['used'], p['unit'], False)} of {amount(p['budget'], p['unit'], False)}"
             + (f" ({p['detail']})" if p["detail"] else "") for p in b["pools"]]
    console.print(f"  {', '.join(pools)}, latency {lat}, MACs {b['macs']:,}, params {b['params']:,}",
                  highlight=False)
    depth = spec.get("depth", len(spec.get("blocks", [])))
    console.print(f"  {spec['image_size']}x{spec['image_size']} input, patch {spec['patch_size']}, "
                  f"embed {spec['embed_dim']}, depth {depth}", highlight=False)
    console.print(f"{s['evaluated']} candidates evaluated ({s['evaluator']}), {s['generations']} generations, "
                  f"front of {s['front_size']}; stopped: {s['stopped']}", highlight=False)
    f = s["files"]
    console.print(f"wrote {f['best']}, {f['front']}, {f['candidates']}, {f['plot']}", highlight=False)
    if "model" in f:
        console.print(f"fine-tune: edgevit train --spec {f['best']} --init {f['model']} --out <dir>", highlight=False)


def search_cmd(
    profile: str = typer.Option(..., "--profile", help="Device profile: a shipped name or a YAML path."),
    data: str = typer.Option("fashion-mnist", "--data", help="fashion-mnist, an ImageFolder directory or an .npz file."),
    time_budget: str = typer.Option("30m", "--time-budget", help="Wall time for the whole search: 90s, 30m, 1h or seconds."),
    out: Path = typer.Option(..., "--out", help="Output directory (re-run the same command to resume)."),
    space: Optional[Path] = typer.Option(None, "--space", help="Search-space YAML (default: the profile kind's)."),
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="Only specs estimated at most this fast."),
    population: int = typer.Option(20, "--population", min=2, help="Candidates kept per generation."),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(2, "--workers", min=1, help="Local evaluation processes (1: in this process)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Evaluate on this Ray cluster "
                                              "(pip install 'edgevit\\[ray]'; a cluster with token "
                                              "authentication needs RAY_AUTH_MODE=token and its token here)."),
    supernet_share: float = typer.Option(0.65, "--supernet-share", help="Share of the time budget for the supernet."),
    val_images: int = typer.Option(2000, "--val-images", min=1, help="Validation images per candidate."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where the dataset files live."),
    max_sram: Optional[str] = typer.Option(None, "--max-sram", help="A tighter SRAM limit than the profile's "
                                           "(arena + stack), e.g. 24KiB."),
    supernet: Optional[Path] = typer.Option(None, "--supernet", help="Reuse the supernet of an earlier search "
                                            "(its OUT directory) with the same space: no training."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Search an architecture that fits the device: supernet, then evolution under the memory budget."""
    from edgevit.nas.preflight import preflight
    from edgevit.nas.reuse import parse_max_sram
    from edgevit.nas.search import SearchOptions, parse_duration, run_search

    opts = SearchOptions(profile=profile, out=out, data=data, time_budget_s=parse_duration(time_budget), space=space,
                         latency_ms=latency_ms, population=population, seed=seed, workers=workers,
                         ray_address=ray_address, supernet_share=supernet_share, val_images=val_images,
                         data_root=data_root, max_sram=parse_max_sram(max_sram), supernet=supernet)
    opts.check()
    preflight(opts)  # every option checked before the progress display starts and the data loads
    with RichReporter() as reporter:
        result = run_search(opts, reporter)
    if as_json:
        print(json.dumps(result))
    else:
        print_summary(result, Console(soft_wrap=True))
