"""Run the bench matrix: compile each (model, passes, profile) once, run every cell of it, time its
plan steps in a profiling build, and return one record per cell (record.py).

    records = run_cells(config, out_dir / "artifacts", jobs=1, say=print_to_stderr)

Per group of cells sharing an artifact (matrix.groups): cells whose runner lacks a tool are skipped
before compiling; if any cell remains, `compile_artifact` writes OUT/artifacts/<model>-<passes>-<profile>
(an over-budget model makes every cell of the group `infeasible`, any other compile error `failed`).
Per cell: the runner's own `check` on the artifact (a serial runner without a port, an ssh runner
without a host: `skipped`), `run_vectors` (`failed` with the message when the run fails), then,
when `kernel_profile` asks for it and the runner `supports_step_profile`, a second run of a few
vectors built with -DEDGEVIT_PROFILE_STEPS (benching runners with bench_runs=0) for per-step times.

With jobs > 1 groups run in parallel threads: compiles one at a time (the compiler's Python, torch
and TVM state is not shared across threads), the builds and runs (separate processes: make, QEMU,
the host programs) in parallel. Measured latencies then compete for the cores, so keep jobs=1 for
figures you compare against a baseline.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from edgevit.bench.config import BenchConfig
from edgevit.bench.matrix import Cell, expand, groups, make_runner, unavailable_reason
from edgevit.bench import record
from edgevit.errors import EdgevitError, InfeasibleError, UserInputError

Say = Callable[[str], None]
COMPILE_LOCK = threading.Lock()  # one compile at a time, also with --jobs > 1


def run_cells(config: BenchConfig, artifacts: Path, jobs: int = 1, say: Say = lambda m: None) -> list[dict]:
    """Every cell's record, in matrix order (see the module docstring); artifacts go under `artifacts`."""
    if jobs < 1:
        raise UserInputError(f"--jobs must be at least 1 (got {jobs})")
    cells = expand(config)
    index = {c.key: i + 1 for i, c in enumerate(cells)}
    total = len(cells)

    def tell(cell: Cell, message: str) -> None:
        say(f"[{index[cell.key]}/{total}] {cell.key}: {message}")

    todo = groups(cells)
    if jobs == 1:
        done = [run_group(config, g, artifacts, tell) for g in todo]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(lambda g: run_group(config, g, artifacts, tell), todo))
    by_key = {r["key"]: r for rows in done for r in rows}
    return [by_key[c.key] for c in cells]


def run_group(config: BenchConfig, cells: list[Cell], artifacts: Path, tell: Callable[[Cell, str], None]) -> list[dict]:
    """The records of cells sharing one artifact: skip the unavailable, compile once, run the rest."""
    out: dict[str, dict] = {}
    ready = []
    for cell in cells:
        why = unavailable_reason(cell)
        if why is not None:
            tell(cell, f"skipped: {why}")
            out[cell.key] = record.base_record(cell.fields(), "skipped", why)
        else:
            ready.append(cell)
    if ready:
        first = ready[0]
        tell(first, "compiling" + (f" (shared by {len(ready)} cells)" if len(ready) > 1 else ""))
        try:
            summary = compile_cell(config, first, artifacts)
        except InfeasibleError as e:
            for cell in ready:
                tell(cell, "does not fit the device")
                out[cell.key] = record.base_record(cell.fields(), "infeasible", str(e))
            ready = []
        except EdgevitError as e:
            for cell in ready:
                tell(cell, f"compile failed: {first_line(e)}")
                out[cell.key] = record.base_record(cell.fields(), "failed", f"compile failed: {e}")
            ready = []
        for n, cell in enumerate(ready):
            out[cell.key] = run_cell(config, cell, summary, reused=n > 0, tell=tell)
    return [out[c.key] for c in cells]


def compile_cell(config: BenchConfig, cell: Cell, artifacts: Path) -> dict:
    """compile_artifact for the cell's (model, passes, profile) into artifacts/<model>-<passes>-<profile>."""
    from edgevit.backend.compile import compile_artifact

    out = artifacts / cell.artifact_key.replace("/", "-")
    with COMPILE_LOCK:
        return compile_artifact(cell.model.path, cell.profile.profile, out, passes=cell.passes, data=config.data,
                                data_root=config.data_root, vectors=config.vectors, force=True, progress=False,
                                **cell.profile.compile_options)


def run_cell(config: BenchConfig, cell: Cell, summary: dict, reused: bool, tell: Callable[[Cell, str], None]) -> dict:
    """One cell's record: check the runner on the artifact, run its vectors, profile its steps."""
    from edgevit.backend.artifact import load_artifact
    from edgevit.backend.run import run_vectors

    rec = record.base_record(cell.fields(), "ok")
    rec["compile"] = record.compile_section(summary, reused)
    rec["memory"] = record.memory_section(summary)
    art = load_artifact(summary["out"])
    runner = make_runner(cell)
    try:
        runner.check(art, cell.profile.profile)
    except UserInputError as e:
        tell(cell, f"skipped: {first_line(e)}")
        return {**rec, "status": "skipped", "reason": str(e)}
    tell(cell, f"running {cell.runner.count} vectors on {runner.name}")
    try:
        result = run_vectors(art, runner, count=cell.runner.count, timeout=cell.runner.timeout, progress=False)
    except EdgevitError as e:
        tell(cell, f"run failed: {first_line(e)}")
        return {**rec, "status": "failed", "reason": f"run failed: {e}"}
    rec.update(latency=record.latency_section(result), accuracy=record.accuracy_section(result),
               memory=record.memory_section(summary, result), run=record.run_section(result))
    rec["kernels"] = profile_steps(config, cell, art, tell)
    acc, lat = rec["accuracy"], rec["latency"]
    shown = "no latency" if lat["ms"] is None else f"{lat['ms']:.3f} ms {lat['kind']}"
    tell(cell, f"{acc['matches']}/{acc['count']} match, top-1 {acc['top1']:.1%}, {shown}")
    return rec


def profile_steps(config: BenchConfig, cell: Cell, art, tell: Callable[[Cell, str], None]) -> dict:
    """The record's `kernels` section: per-step times from a profiling run of the cell's runner, or
    why there are none (profiling off, a runner that cannot time steps, a failed profiling run)."""
    from edgevit.backend.run import run_vectors

    count = min(config.kernel_profile_count, cell.runner.count)
    if count == 0:
        return record.no_kernels("not profiled: kernel_profile is off in the configuration")
    probe = make_runner(cell)
    if not type(probe).supports_step_profile():
        return record.no_kernels(f"not available: the {probe.name} runner cannot time plan steps")
    profile = cell.profile.profile
    extra = {"profile_steps": True}
    if type(probe).supports_bench():
        extra["bench_runs"] = 0
    runner = make_runner(cell, **extra)
    seconds = runner.step_tick_seconds(profile)
    if seconds is None:
        return record.no_kernels(f"not available: the {runner.name} runner cannot convert step ticks to time for "
                                 f"profile {profile.name}")
    tell(cell, f"profiling plan steps on {count} vector{'s' if count != 1 else ''}")
    try:
        result = run_vectors(art, runner, count=count, timeout=cell.runner.timeout, progress=False)
    except EdgevitError as e:
        tell(cell, f"step profile failed: {first_line(e)}")
        return record.no_kernels(f"the profiling run failed: {e}")
    if not result.get("step_ticks"):
        return record.no_kernels("the profiling build printed no EV-STEPS lines (an artifact older than the "
                                 "per-step profile: recompile it)")
    kind = "estimated" if runner.counts_instructions else "measured"
    try:
        return record.kernels_section(result["step_ticks"], seconds, art.manifest, kind, runner.step_note(profile))
    except ValueError as e:
        return record.no_kernels(f"the profiling run does not fit the manifest: {e}")


def first_line(error: Exception) -> str:
    """The first line of an error's message (progress lines stay one line)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
