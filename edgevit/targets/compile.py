"""`edgevit compile`: checkpoint -> passes -> Program -> memory plan -> budget check -> artifact.

    load checkpoint, profile, dataset -> run the pass pipeline (calibration: the TRAIN split)
      -> lower -> plan (get_target(profile).estimate) -> over budget? InfeasibleError (exit 3),
      nothing written -> test vectors (TEST split) -> emit every file in memory
      -> write into a temp dir next to OUT -> rename it to OUT

OUT must not exist unless `force` (then the old directory is replaced only once the new one
is complete). Any failure removes the temp dir, so OUT is either the complete new artifact or
untouched. Progress goes to stderr (Rich) unless `progress=False`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from edgevit.errors import InfeasibleError, UserInputError

SCHEDULES = ("fast", "reference")
SUGGESTED_PASSES = ("quant(w=8,a=8) (int8 activations and weights: about 4x less memory than float)",
                    "tome(r=...) (token merging: fewer rows in every activation)",
                    "prune(heads=...) (fewer attention heads / MLP channels)",
                    "lowrank(...) (smaller weights)")


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


def check_out_dir(out: Path, force: bool) -> None:
    """UserInputError if OUT exists (and not `force`) or is not a directory."""
    if out.exists() or out.is_symlink():
        if not force:
            raise UserInputError(f"{out}: already exists; choose another --out or pass --force to replace it")
        if not out.is_dir():
            raise UserInputError(f"{out}: exists and is not a directory; remove it or choose another --out")


def _largest_buffers(plan, program, n: int = 5) -> str:
    """The largest buffers live at the plan's peak step, e.g. "at step 5 (blocks.0.attn.core): t0.qkv (9,600 B), ..."."""
    bufs = list(plan.buffers.values())
    where = ""
    if plan.timeline:
        peak = max(range(len(plan.timeline)), key=lambda i: (plan.timeline[i], -i))
        bufs = [b for b in bufs if b.first <= peak <= b.last] or bufs
        names = ", ".join(program.kernels[k].name for k in plan.steps[peak].kernels)
        where = f"at step {peak} ({names}), {plan.timeline[peak]:,} B live: "
    bufs = sorted(bufs, key=lambda b: (-b.size, b.name))[:n]
    return where + ", ".join(f"{b.name} ({b.size:,} B)" for b in bufs)


def check_budget(costs, plan, profile, program, passes: str | None) -> None:
    """InfeasibleError (exit 3) when arena + stack exceed the SRAM or weights + code the flash; the
    message gives the figures, the largest buffers and what to try."""
    problems = []
    if not costs.fits_sram:
        problems.append(f"SRAM: arena {costs.arena_bytes:,} B + stack {costs.stack_bytes:,} B = "
                        f"{costs.sram_bytes:,} B > {costs.sram_budget:,} B")
    if not costs.fits_flash:
        problems.append(f"flash: weights {costs.weight_bytes:,} B + code {costs.code_bytes:,} B = "
                        f"{costs.flash_bytes:,} B > {costs.flash_budget:,} B")
    if not problems:
        return
    raise InfeasibleError(
        f"{program.name!r} (passes: {passes or 'none'}) does not fit {profile.name}: {'; '.join(problems)}. "
        f"Largest arena buffers {_largest_buffers(plan, program)}. Compress the model with --passes, e.g. "
        f"{'; '.join(_suggestions(program))}, or let `edgevit search --profile {profile.name}` find an "
        "architecture that fits. Nothing was written.")


def _suggestions(program) -> list[str]:
    """Passes worth trying (quant only for float programs)."""
    is_float = program.meta.get("lowering", "float") == "float"
    return [p for p in SUGGESTED_PASSES if is_float or not p.startswith("quant")]


def _calibrate_and_lower(model, passes: str | None, calib, calib_size: int | None, say, profile=None):
    """(Program, pass reports as dicts without wall times) after running the pipeline on `model`;
    with `profile` every report carries the planned peak memory (arena bytes) before and after its pass."""
    from edgevit.lower import lower

    if not passes:
        say("lowering")
        return lower(model), []
    from edgevit.passes.pipeline import parse_pipeline, run_pipeline

    steps = parse_pipeline(passes)
    if calib_size is not None:
        steps = [(n, {**o, "calib": calib_size} if "calib" in o else o) for n, o in steps]
    result, reports = run_pipeline(model, steps, calib, progress=say, profile=profile)
    say("lowering")
    return lower(result), [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in reports]


def plan_for(program, profile):
    """(Costs, MemoryPlan) of `program` on `profile` from the profile's Target."""
    from edgevit.targets.base import get_target

    costs = get_target(profile).estimate(program, profile)  # the MCU target's Costs carry their plan
    return costs, costs.plan


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(out: Path, files: dict, force: bool) -> None:
    """Write `files` into a temp dir beside `out`, then rename it to `out` (replacing it if `force`).
    The temp dir is removed on any failure."""
    from edgevit.targets.mcu.emit import write_artifact_files

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        write_artifact_files(tmp, files)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists() and force:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rename(out, old / "artifact")
        try:
            os.rename(tmp, out)
        except OSError as e:
            if old is not None:
                os.rename(old / "artifact", out)
            raise UserInputError(f"{out}: cannot create the artifact directory ({e.strerror}); "
                                 "does it exist now?") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def compile_artifact(model, profile, out, passes: str | None = None, data: str = "fashion-mnist",
                     data_root=None, vectors: int = 50, schedule: str = "fast", calib_size: int | None = None,
                     force: bool = False, progress: bool = True) -> dict:
    """Compile checkpoint `model` for `profile` (name or YAML path) into the artifact directory `out`.

    `vectors` test images come from the dataset's test split; calibration (passes) uses its train
    split. Returns a summary dict (out, profile, program, memory, budget, kernels, functions,
    vectors, files, seconds). Errors: UserInputError (bad options, OUT exists), InfeasibleError
    (over budget; nothing written), and those of the loaders.
    """
    from edgevit.data.resize import load_for_spec
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.profiles.profile import load_profile
    from edgevit.targets.mcu.emit import artifact_files
    from edgevit.targets.mcu.vectors import dataset_vectors

    t0 = time.perf_counter()
    out = Path(out)
    if schedule not in SCHEDULES:
        raise UserInputError(f"--schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if passes:
        from edgevit.passes.pipeline import parse_pipeline

        parse_pipeline(passes)  # a bad pipeline fails before anything is loaded
    check_out_dir(out, force)
    prof = load_profile(profile)
    with _stages(progress) as say:
        say("loading the checkpoint")
        net = load_checkpoint(Path(model))
        splits = None
        if passes:  # calibration data first; without passes the budget is checked before any data is read
            say(f"loading the dataset {data}")
            splits = load_for_spec(data, net.spec, data_root, str(model))
        program, reports = _calibrate_and_lower(net, passes, splits.train if splits else None, calib_size, say,
                                                profile=prof)
        say("planning memory")
        costs, plan = plan_for(program, prof)
        check_budget(costs, plan, prof, program, passes)
        if splits is None:
            say(f"loading the dataset {data}")
            splits = load_for_spec(data, net.spec, data_root, str(model))
        say(f"test vectors: {vectors} images of the test split through the reference interpreter")
        vecs = dataset_vectors(program, splits.test, vectors)
        files = artifact_files(program, prof, plan, vectors=vecs, passes=passes, schedule=schedule,
                               pass_reports=reports, progress=say)
        say(f"writing {out}")
        write_atomically(out, files, force)
    return summary_of(out, files, costs, time.perf_counter() - t0)


def summary_of(out: Path, files: dict, costs, seconds: float) -> dict:
    """The summary `compile_artifact` returns (JSON-able), from the written manifest."""
    import json

    m = json.loads(files["manifest.json"])
    functions = sorted({f for k in m["kernels"] for f in k["functions"]})
    return {"out": str(out), "profile": m["profile"]["name"], "program": m["program"]["name"],
            "fingerprint": m["program"]["fingerprint"], "lowering": m["program"]["lowering"],
            "passes": m["passes"], "macs": m["program"]["macs"], "memory": m["memory"], "budget": m["budget"],
            "fits": bool(costs.fits), "kernels": len(m["kernels"]), "functions": len(functions),
            "steps": len(m["steps"]), "vectors": m["vectors"]["count"],
            "reference_top1": m["vectors"]["reference_top1"], "files": len(m["files"]) + 1,
            "seconds": round(seconds, 2)}


def print_summary(summary: dict, console) -> None:
    """Print a compile summary (from `compile_artifact`) as a small Rich table."""
    from rich.table import Table

    mem, budget = summary["memory"], summary["budget"]
    sram = mem["arena_bytes"] + mem["stack_bytes"]
    t = Table(title=f"{summary['program']} -> {summary['out']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("profile", summary["profile"])
    t.add_row("passes", summary["passes"] or "(none)")
    t.add_row("program", f"{summary['lowering']}, {summary['kernels']} kernels in {summary['steps']} steps, "
                         f"{summary['functions']} C functions, {summary['macs']:,} MACs")
    t.add_row("arena", f"{mem['arena_bytes']:,} B (naive {mem['naive_bytes']:,} B, lower bound "
                       f"{mem['lower_bound_bytes']:,} B)")
    t.add_row("SRAM", f"{sram:,} / {budget['sram_bytes']:,} B ({100 * sram / budget['sram_bytes']:.1f}%)")
    t.add_row("flash", f"{mem['flash_bytes']:,} / {budget['flash_bytes']:,} B "
                       f"({100 * mem['flash_bytes'] / budget['flash_bytes']:.1f}%)")
    top1 = summary.get("reference_top1")
    t.add_row("vectors", f"{summary['vectors']}" + ("" if top1 is None else f" (reference top-1 {100 * top1:.1f}%)"))
    t.add_row("files", f"{summary['files']} ({summary['seconds']} s)")
    console.print(t)
    console.print(f"next: [bold]edgevit run {summary['out']} --runner qemu[/]")
