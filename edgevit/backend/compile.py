"""`edgevit compile`: checkpoint -> passes -> Program -> target costs -> budget check -> artifact.

    profile -> its Target (backend/target.py) -> check the target's options
      -> load checkpoint, dataset -> run the pass pipeline (calibration: the TRAIN split)
      -> lower -> target.supports (exit 2 with the reasons) -> target.estimate -> over a budget?
      InfeasibleError (exit 3), nothing written -> test vectors (TEST split) -> target.build (every
      file in memory) + the Program itself (reference/, backend/artifact_program.py) -> seal the
      manifest -> write into a temp dir next to OUT -> rename it to OUT

Nothing here knows a backend: every target-specific step goes through the Target. OUT must not
exist unless `force` (then the old directory is replaced only once the new one is complete). Any
failure removes the temp dir, so OUT is either the complete new artifact or untouched. Progress
goes to stderr (Rich) unless `progress=False`.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from edgevit.backend.artifact_write import check_out_dir, seal, write_atomically
from edgevit.backend.budget_hints import reduce_hint
from edgevit.backend.compile_checks import (check_pipeline_for_target, check_vectors, check_weights_fit,
                                            vectors_to_bundle)
from edgevit.errors import InfeasibleError, UserInputError

__all__ = ["check_budget", "check_out_dir", "compile_artifact", "print_summary", "summary_of", "write_atomically"]



@contextmanager
def _stages(enabled: bool) -> Iterator[Callable[[str], None]]:
    """say(stage) shows the current stage with a spinner and elapsed time on stderr (no-op if disabled)."""
    if not enabled:
        yield lambda msg: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as p:
        task = p.add_task("starting", total=None)
        yield lambda msg: p.update(task, description=msg)


def _calibrate_and_lower(model, passes: str | None, calib, calib_size: int | None, say, memory_of=None):
    """(Program, pass reports as dicts without wall times) after running the pipeline on `model`;
    with `memory_of(program) -> bytes` every report carries the peak memory before and after its pass."""
    from edgevit.lower import lower

    if not passes:
        say("lowering")
        return lower(model), []
    from edgevit.passes.pipeline import parse_pipeline, run_pipeline

    steps = parse_pipeline(passes)
    if calib_size is not None:
        steps = [(n, {**o, "calib": calib_size} if "calib" in o else o) for n, o in steps]
    result, reports = run_pipeline(model, steps, calib, progress=say, memory_of=memory_of)
    say("lowering")
    return lower(result), [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in reports]


def check_budget(costs, program, profile, passes: str | None, hint: str = "") -> None:
    """InfeasibleError (exit 3) when any resource pool of `costs` exceeds its budget; the message gives
    every pool over budget, then the target's `hint` (what fills the pools over budget and the passes
    that shrink them: Target.over_budget_hint) or, without one, the passes that shrink any memory."""
    over = costs.over_budget
    if not over:
        return
    advice = hint.strip() or f"Compress the model: {reduce_hint('both', program)}."
    raise InfeasibleError(
        f"{program.name!r} (passes: {passes or 'none'}) does not fit {profile.name}: "
        f"{'; '.join(p.describe() for p in over)}. {advice} Or let `edgevit search --profile {profile.name}` find "
        "an architecture that fits. Nothing was written.")


def check_supported(target, program, profile) -> None:
    """UserInputError listing why `target` cannot run `program` (nothing written)."""
    problems = target.supports(program, profile)
    if problems:
        raise UserInputError(f"the {target.kind} target cannot compile {program.name!r} for {profile.name}: "
                             f"{'; '.join(problems)}. Nothing was written.")


def _warn(message: str) -> None:
    """Say something a user must read on stderr (also with --json)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def compile_artifact(model, profile, out, passes: str | None = None, data: str = "fashion-mnist",
                     data_root=None, vectors: int | None = None, calib_size: int | None = None, force: bool = False,
                     progress: bool = True, import_options=None, **options) -> dict:
    """Compile `model` for `profile` (name or YAML path) into the artifact directory `out`.

    `model`: an edgevit checkpoint or any source `edgevit import` reads (ONNX, a timm / Hugging Face
    state_dict or directory), imported on the fly with `import_options` (an ImportOptions).

    `vectors` test images come from the dataset's test split (None: 50, or the whole split when it is
    smaller; more than the split has is an error, not a silent clamp); calibration (passes) uses its train
    split. `options` go to the target's build (MCU: schedule="fast" | "reference"). Returns a summary
    dict (out, target, profile, program, memory, pools, kernels, vectors, files, seconds). Errors:
    UserInputError (bad options, OUT exists, unsupported program), InfeasibleError (over budget;
    nothing written), and those of the loaders.
    """
    from edgevit.backend.artifact_program import program_files
    from edgevit.backend.target import get_target
    from edgevit.backend.vectors import dataset_vectors
    from edgevit.data.resize import load_for_spec
    from edgevit.model.importers.source import load_model_source
    from edgevit.profiles.profile import load_profile
    from edgevit.validate import check_out

    t0 = time.perf_counter()
    out = Path(out)
    check_vectors(vectors)
    prof = load_profile(profile)
    target = get_target(prof)
    target.check_options(options)
    target.check_profile(prof)  # e.g. a core or ISA the backend cannot generate code for
    steps = []
    if passes:
        from edgevit.passes.pipeline import parse_pipeline

        steps = parse_pipeline(passes)  # a bad pipeline fails before anything is loaded
    check_pipeline_for_target(steps, target, prof)
    check_out(out, "dir")  # writable: checked before any heavy work
    check_out_dir(out, force)
    from edgevit.threads import apply_thread_policy

    apply_thread_policy()  # torch on the available cores, BLAS on one thread (edgevit/threads.py)
    with _stages(progress) as say:
        say("loading the model")
        net = load_model_source(Path(model), import_options, warn=_warn)
        check_weights_fit(net.spec, steps, prof, str(model))  # before calibration: weights the device cannot hold
        splits = None
        if passes:  # calibration data first; without passes the budget is checked before any data is read
            say(f"loading the dataset {data}")
            splits = load_for_spec(data, net.spec, data_root, str(model))
            vectors = vectors_to_bundle(vectors, splits.test, data)
        program, reports = _calibrate_and_lower(net, passes, splits.train if splits else None, calib_size, say,
                                                memory_of=lambda p: target.estimate(p, prof).activation_bytes)
        check_supported(target, program, prof)
        say("estimating costs")
        costs = target.estimate(program, prof)
        check_budget(costs, program, prof, passes, target.over_budget_hint(costs, program))
        if splits is None:
            say(f"loading the dataset {data}")
            splits = load_for_spec(data, net.spec, data_root, str(model))
            vectors = vectors_to_bundle(vectors, splits.test, data)
        say(f"test vectors: {vectors} images of the test split through the reference interpreter")
        vecs = dataset_vectors(program, splits.test, vectors)
        files = target.build(program, prof, costs, vecs, passes=passes, pass_reports=reports, progress=say, **options)
        files = seal({**files, **program_files(program)}, target, prof)  # every artifact carries its Program
        say(f"writing {out}")
        write_atomically(out, files, force)
    return summary_of(out, files, costs, time.perf_counter() - t0)


def summary_of(out: Path, files: dict, costs, seconds: float) -> dict:
    """The summary `compile_artifact` returns (JSON-able), from the sealed manifest and the Costs:
    out, target, runner, profile, program, fingerprint, lowering, passes, macs, memory (the target's
    figures), pools, fits, kernels, functions, steps (when the target has them), vectors,
    reference_top1, files, seconds."""
    import json

    m = json.loads(files["manifest.json"])
    kernels = m.get("kernels") or []
    functions = sorted({f for k in kernels for f in k.get("functions", ())})
    return {"out": str(out), "target": m["target"]["kind"], "runner": m["target"]["default_runner"],
            "profile": m["profile"]["name"], "program": m["program"]["name"],
            "fingerprint": m["program"]["fingerprint"], "lowering": m["program"]["lowering"],
            "passes": m["passes"], "macs": m["program"]["macs"], "memory": dict(costs.figures),
            "pools": [p.to_dict() for p in costs.pools], "fits": bool(costs.fits), "kernels": len(kernels),
            "functions": len(functions), "steps": len(m.get("steps") or []), "vectors": m["vectors"]["count"],
            "reference_top1": m["vectors"]["reference_top1"], "files": len(m["files"]) + 1,
            "seconds": round(seconds, 2)}


def print_summary(summary: dict, console) -> None:
    """Print a compile summary (from `compile_artifact`) as a small Rich table."""
    from rich.table import Table

    t = Table(title=f"{summary['program']} -> {summary['out']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("profile", f"{summary['profile']} ({summary['target']} target)")
    t.add_row("passes", summary["passes"] or "(none)")
    shape = f"{summary['kernels']} kernels" + (f" in {summary['steps']} steps" if summary["steps"] else "")
    functions = f", {summary['functions']} functions" if summary["functions"] else ""  # targets that emit C functions
    t.add_row("program", f"{summary['lowering']}, {shape}{functions}, {summary['macs']:,} MACs")
    mem = summary["memory"]
    if {"arena_bytes", "naive_bytes", "lower_bound_bytes"} <= set(mem):  # the shared planner's figures
        t.add_row("arena", f"{mem['arena_bytes']:,} B (naive {mem['naive_bytes']:,} B, lower bound "
                           f"{mem['lower_bound_bytes']:,} B)")
    for pool in summary["pools"]:
        unit = f" {pool['unit']}" if pool["unit"] else ""
        share = f" ({100 * pool['used'] / pool['budget']:.1f}%)" if pool["budget"] else ""
        budget = f" / {pool['budget']:,}{unit}" if pool["budget"] is not None else unit
        detail = f"  [dim]{pool['detail']}[/]" if pool["detail"] else ""
        t.add_row(pool["name"], f"{pool['used']:,}{budget}{share}{detail}")
    top1 = summary.get("reference_top1")
    t.add_row("vectors", f"{summary['vectors']}" + ("" if top1 is None else f" (reference top-1 {100 * top1:.1f}%)"))
    t.add_row("files", f"{summary['files']} ({summary['seconds']} s)")
    console.print(t)
    console.print(f"next: [bold]edgevit run {summary['out']}[/] (runner {summary['runner']})")
