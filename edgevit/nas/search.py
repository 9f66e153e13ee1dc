"""`edgevit search`: memory-budgeted architecture search, start to finish.

1. Load the profile, the dataset and the search space (`--space` YAML or the profile kind's default).
2. Feasibility first: estimate the space's smallest spec and a few random samples with the
   profile's target (edgevit.nas.estimate); if none fits every budget (MCU: SRAM and flash) and the
   latency bound, stop with exit code 3 (InfeasibleError) — before any training and before OUT is
   created.
3. Train the weight-sharing supernet for `supernet_share` of the time budget (`OUT/supernet/`,
   resumable).
4. Evolve (edgevit.nas.evolve) until the time budget ends: costs from the `Estimator` (the target's
   estimate of the spec's real int8 Program; the memory objective is its first pool), accuracies
   from the supernet on a class-balanced validation subset, evaluated by a local process pool or
   Ray tasks (edgevit.nas.workers).
5. Write OUT/best.yaml, front.json, candidates.json, front.png and best/ (the best spec with its
   supernet weights, a checkpoint for `edgevit train --init`), each atomically.

The time budget counts wall time over all sessions of one OUT directory: `search_state.json`
records it with the evolution state, so re-running the same command continues where the last one
stopped (the supernet resumes from its checkpoint, the evolution from its population and
accuracy cache) and only spends what is left. A different space, profile, dataset, seed or
validation subset in an existing OUT is refused.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from edgevit.atomic_write import make_dir, write_file_atomically
from edgevit.errors import InfeasibleError, UserInputError
from edgevit.nas.evolve import (EvolveConfig, costs_dict, evolve, read_state, reject_reason, write_json_atomic,
                                write_state_meta)

STATE_FILE = "search_state.json"
SUPERNET_DIR = "supernet"
BEST_MODEL_DIR = "best"      # the best spec with its supernet weights, a normal checkpoint directory
FEASIBILITY_SAMPLES = 32
OUTPUT_RESERVE_S = 3.0       # seconds of the budget kept for writing the outputs
MIN_SUPERNET_S = 5.0         # below this the supernet is not trained further (if a checkpoint exists)
MAX_WORKERS = 1024
MAX_POPULATION = 100_000
MAX_TIME_BUDGET_S = 30 * 24 * 3600.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNIT_S = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds from "30m", "90s", "1h", "1.5h" or plain seconds ("600"); UserInputError otherwise."""
    m = _DURATION.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise UserInputError(f"--time-budget {text!r}: give a positive duration such as 90s, 30m, 1h or "
                             "plain seconds (600)")
    return float(m.group(1)) * _UNIT_S[(m.group(2) or "").lower()]


@dataclass(frozen=True)
class SearchOptions:
    """The options of `edgevit search` (see its --help); time_budget_s in seconds."""

    profile: str
    out: Path
    data: str = "fashion-mnist"
    time_budget_s: float = 1800.0
    space: Path | None = None
    latency_ms: float | None = None
    population: int = 20
    seed: int = 0
    workers: int = 2
    ray_address: str | None = None
    supernet_share: float = 0.65
    val_images: int = 2000
    data_root: Path | None = None
    max_sram: int | None = None      # bytes: a tighter memory-pool budget than the profile's (nas.reuse)
    supernet: Path | None = None     # reuse this trained supernet: no training, the whole budget evolves

    def check(self) -> None:
        """UserInputError naming the first bad option (nan and inf included)."""
        from edgevit.validate import finite_number, int_in_range

        finite_number(self.supernet_share, "--supernet-share", low=0, high=1, low_open=True, high_open=True)
        int_in_range(self.workers, "--workers", low=1, high=MAX_WORKERS)
        int_in_range(self.val_images, "--val-images", low=1)
        int_in_range(self.population, "--population", low=2, high=MAX_POPULATION)
        int_in_range(self.seed, "--seed", low=0, high=2**32 - 1)
        finite_number(self.time_budget_s, "--time-budget", low=0, low_open=True, high=MAX_TIME_BUDGET_S,
                      hint="a duration such as 90s, 30m or 1h (at most 30 days)")
        if self.latency_ms is not None:
            finite_number(self.latency_ms, "--latency-ms", low=0, low_open=True,
                          hint="the slowest estimated latency a candidate may have, in milliseconds")
        EvolveConfig(population=self.population, parents=max(1, min(8, self.population // 2)),
                     latency_ms=self.latency_ms).check()
        if self.supernet is not None:
            from edgevit.nas.reuse import supernet_weights

            supernet_weights(self.supernet)  # before the dataset loads

    def evolve_config(self) -> EvolveConfig:
        """EvolveConfig for these options (parents: half the population, at most 8)."""
        return EvolveConfig(population=self.population, parents=max(2, min(8, self.population // 2)),
                            latency_ms=self.latency_ms)


class Reporter:
    """Progress sink of a search (this one is silent; the CLI passes a Rich one)."""

    def stage(self, text: str) -> None:
        """A new phase started (loading, feasibility, supernet, evolution, writing)."""

    def supernet(self, step: int, total: int, loss: float) -> None:
        """After every supernet training step."""

    def evolution(self, info: dict) -> None:
        """After every evaluated chunk (see `evolve`'s progress)."""

    def note(self, text: str) -> None:
        """A line worth keeping on screen."""


# ---- feasibility ---------------------------------------------------------------------------------
def _describe(spec) -> str:
    b = spec.blocks
    return (f"{spec.name}: {spec.image_size}x{spec.image_size} input, patch {spec.patch_size}, embed {spec.embed_dim}, "
            f"depth {spec.depth}, heads {min(x.heads for x in b)}-{max(x.heads for x in b)}")


def amount(value: int | None, unit: str, exact: bool = True) -> str:
    """A pool figure for people: a size for bytes ("8 KiB (8,192 B)", or "8 KiB" unless `exact`), else
    the count with its unit; "no limit" for None (a pool without budget)."""
    from edgevit.profiles.units import format_bytes, format_size

    if value is None:
        return "no limit"
    if unit == "B":
        return format_size(value) if exact else format_bytes(value)
    return f"{value:,}{' ' + unit if unit else ''}"


def check_feasible(space, estimate: Callable, profile, latency_ms: float | None, seed: int,
                   samples: int = FEASIBILITY_SAMPLES, space_source: str = "") -> int:
    """How many of [space.smallest()] + `samples` random specs fit; InfeasibleError (exit 3) when none does.

    The message names the budget(s) broken (the target's pools), the smallest need found and what to do.
    """
    rng = random.Random(f"{seed}/feasibility")
    specs = [space.smallest()] + [space.sample(rng) for _ in range(samples)]
    costs = [costs_dict(estimate(s)) for s in specs]
    if latency_ms is not None and costs[0].get("latency_ms") is None:
        why = costs[0].get("latency_note") or ("no calibration data for its core; calibrate the core with "
                                               "scripts/calibrate_latency.py")
        raise UserInputError(f"--latency-ms: profile {profile.name!r} (core {profile.core}) has no latency model "
                             f"({why}); drop --latency-ms or calibrate its target's latency model")
    fits = sum(reject_reason(c, latency_ms) is None for c in costs)
    if fits:
        return fits
    problems = []
    for j in range(len(costs[0]["pools"])):
        least = min(range(len(specs)), key=lambda i: costs[i]["pools"][j]["used"])
        pool = costs[least]["pools"][j]
        if pool["budget"] is not None and pool["used"] > pool["budget"]:
            detail = f"{pool['detail']}, " if pool["detail"] else ""
            problems.append(f"its {pool['name']} budget is {amount(pool['budget'], pool['unit'])} but the smallest "
                            f"need found is {amount(pool['used'], pool['unit'])} ({detail}{_describe(specs[least])})")
    if not problems and latency_ms is not None:
        fastest = min(c.get("latency_ms") or float("inf") for c in costs)
        problems.append(f"--latency-ms {latency_ms:g} is below the fastest estimate found, {fastest:.2f} ms")
    elif not problems:  # each budget is met by some spec, never all by the same one
        problems.append("no spec meets all its budgets at the same time")
    where = space_source or f"the default {space.name!r} space (edgevit/nas/spaces/{profile.kind}.yaml)"
    raise InfeasibleError(
        f"nothing in {where} fits profile {profile.name!r}: {'; '.join(problems)}. Checked the space's smallest "
        f"spec and {samples} random samples. Use a profile with more memory, or pass --space with smaller choices "
        "(lower image_sizes, embed_dims, depths, heads, mlp_ratios; larger patch_sizes; lowrank_ratios < 1)"
        + (", or a looser --latency-ms" if latency_ms is not None else "") + ". Nothing was trained or written.")


def pool_budgets(costs: dict[str, Any]) -> dict[str, Any]:
    """{pool_key: budget} of a costs dict's pools (MCU: sram_bytes, flash_bytes), for front.json."""
    from edgevit.nas.estimate import pool_key

    return {pool_key(p["name"], p["unit"]): p["budget"] for p in costs["pools"]}


# ---- the output directory --------------------------------------------------------------------------
def _identity(profile, space, opts: SearchOptions, budgets: dict[str, Any]) -> dict[str, Any]:
    """What must match to resume a search in the same OUT (`budgets`: pool_budgets of the estimates)."""
    from edgevit.nas.reuse import supernet_digest

    ident = {"profile": profile.name, "budgets": budgets, "space": space.to_dict(), "data": str(opts.data),
             "seed": opts.seed, "val_images": opts.val_images, "supernet": supernet_digest(opts.supernet)}
    return json.loads(json.dumps(ident))


def check_out_dir(out: Path, ident: dict[str, Any]) -> dict[str, Any] | None:
    """The saved meta of a search in `out` (None for a new or empty directory); UserInputError if `out`
    holds another search or unrelated files."""
    state_path = out / STATE_FILE
    if not state_path.is_file():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserInputError(f"{out}: exists and is not a search output directory (no {STATE_FILE}); "
                                 "choose a new --out")
        return None
    meta = (read_state(state_path) or {}).get("meta") or {}
    saved = meta.get("identity", {})
    differ = [k for k in ident if saved.get(k) != ident[k]]
    if differ:
        shown = ", ".join(k if k in ("space", "supernet") else f"{k} ({saved.get(k)!r} there, {ident[k]!r} now)"
                          for k in differ)
        raise UserInputError(f"{out}: holds a search with a different {shown}; use another --out, or delete "
                             f"{out} to start over")
    return meta


def _settings(opts: SearchOptions) -> dict[str, Any]:
    d = asdict(opts)
    return json.loads(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}))


# ---- phases -------------------------------------------------------------------------------------------
def _load_inputs(opts: SearchOptions, reporter: Reporter):
    """(profile, splits, space, space_source) for the options."""
    from edgevit.data import load_dataset
    from edgevit.nas.space import SearchSpace, default_space
    from edgevit.profiles.profile import load_profile

    profile = load_profile(opts.profile)
    reporter.stage(f"loading the dataset {opts.data}")
    splits = load_dataset(opts.data, root=opts.data_root)
    shape, classes = splits.train.image_shape, splits.train.num_classes
    if opts.space is not None:
        return profile, splits, SearchSpace.load(opts.space, shape, classes), str(opts.space)
    return profile, splits, default_space(profile, shape, classes), ""


def _train_or_load(space, splits, out: Path, opts: SearchOptions, budget_s: float, reporter: Reporter, trainer):
    """The supernet: trained for `budget_s` more seconds (resumed), or loaded when no time is left."""
    from edgevit.nas.supernet import WEIGHTS_FILE, SupernetConfig, load_supernet

    ckpt = out / SUPERNET_DIR
    if budget_s < MIN_SUPERNET_S and (ckpt / WEIGHTS_FILE).is_file():
        reporter.note("supernet: its share of the time budget is used up; loading the checkpoint")
        return load_supernet(ckpt)
    budget_s = max(budget_s, MIN_SUPERNET_S)  # a used-up share still trains the minimum (never "-3 s")
    reporter.stage(f"training the supernet ({budget_s:.0f} s)")
    supernet = trainer(space, splits, ckpt, SupernetConfig(seed=opts.seed), budget_s, reporter.supernet)
    info = _supernet_info(ckpt)
    if info.get("step") is not None:
        last = (info.get("history") or [{}])[-1]
        reporter.note(f"supernet: {info['step']} steps of {info.get('total_steps')} ({info.get('stopped')}), "
                      f"loss of the largest subnet {last.get('loss_largest')}")
    return supernet


def _supernet_info(ckpt: Path) -> dict:
    from edgevit.errors import CheckpointError
    from edgevit.nas.supernet import supernet_info

    try:
        return supernet_info(ckpt)
    except (CheckpointError, ValueError):
        return {}


def _default_trainer(space, splits, out, config, budget_s, progress):
    from edgevit.nas.supernet import train_supernet

    return train_supernet(space, splits, out, config, budget_s, progress)


def _default_evaluator(supernet_path, val, workers, ray_address, supernet):
    from edgevit.nas.workers import make_evaluator

    return make_evaluator(supernet_path, val, workers, ray_address, supernet=supernet)


def run_search(opts: SearchOptions, reporter: Reporter | None = None, *, trainer=None, evaluator_factory=None,
               estimator=None) -> dict[str, Any]:
    """Run (or resume) a search as described in the module doc; return the summary dict.

    Injection points for tests: trainer(space, splits, out, SupernetConfig, budget_s, progress) ->
    Supernet; evaluator_factory(supernet_path, val, workers, ray_address, supernet) -> evaluator;
    estimator(profile, max_memory=opts.max_sram) -> callable spec -> SpecCosts. Errors: UserInputError
    (options, OUT), InfeasibleError (nothing fits; nothing written), and the loaders'.
    """
    from edgevit.data.dataset import calibration_subset

    t_session = time.monotonic()
    reporter = reporter or Reporter()
    opts.check()
    from edgevit.threads import apply_thread_policy

    apply_thread_policy()  # torch on the available cores, BLAS on one thread (edgevit/threads.py)
    from edgevit.nas.preflight import preflight

    preflight(opts)  # profile, --space, --out and Ray (with its token authentication): before the data loads
    out = Path(opts.out)
    profile, splits, space, space_source = _load_inputs(opts, reporter)
    from edgevit.nas.preflight import check_splits

    check_splits(splits, str(opts.data))  # an empty split fails now, not after the supernet trained
    if estimator is None:
        from edgevit.nas.estimate import Estimator as estimator
    estimate = estimator(profile, max_memory=opts.max_sram)
    ident = _identity(profile, space, opts, pool_budgets(costs_dict(estimate(space.smallest()))))
    meta = check_out_dir(out, ident) or {}
    reporter.stage("checking feasibility")
    check_feasible(space, estimate, profile, opts.latency_ms, opts.seed, space_source=space_source)
    timings = dict(meta.get("timings") or {"total_s": 0.0, "supernet_s": 0.0})
    evolved = float((read_state(out / STATE_FILE) or {}).get("evolve_seconds", 0.0))
    spent_before = max(float(timings["total_s"]), float(timings["supernet_s"]) + evolved)  # an interrupted session
    deadline = t_session + max(0.0, opts.time_budget_s - spent_before) - OUTPUT_RESERVE_S
    if spent_before:
        reporter.note(f"resuming: {spent_before:.0f} s of the {opts.time_budget_s:.0f} s budget already spent")
    if opts.supernet is not None:
        from edgevit.nas.reuse import adopt_supernet

        adopt_supernet(opts.supernet, out, space)  # checked before anything else is written to OUT
    make_dir(out)
    state_path = out / STATE_FILE
    meta = {"identity": ident, "settings": _settings(opts), "timings": timings}
    write_state_meta(state_path, "meta", meta)

    t0 = time.monotonic()
    budget = (0.0 if opts.supernet is not None  # adopted above: loaded, not trained; evolution gets it all
              else min(opts.supernet_share * opts.time_budget_s - float(timings["supernet_s"]), deadline - t0))
    try:
        supernet = _train_or_load(space, splits, out, opts, budget, reporter, trainer or _default_trainer)
    finally:  # an interrupted session still counts the time its supernet training took
        timings["supernet_s"] = round(float(timings["supernet_s"]) + time.monotonic() - t0, 2)
        write_state_meta(state_path, "meta", meta)

    val = calibration_subset(splits.val, opts.val_images, seed=opts.seed)
    reporter.stage(f"evolution on {len(val)} validation images")
    make = evaluator_factory or _default_evaluator
    with make(out / SUPERNET_DIR, val, opts.workers, opts.ray_address, supernet) as evaluate:
        config = replace(opts.evolve_config(), chunk=max(8, getattr(evaluate, "parallelism", 1)))  # keep all busy
        result = evolve(space, opts.seed, estimate, evaluate, config, deadline, state_path, reporter.evolution)
        evaluator_desc = evaluate.describe() if hasattr(evaluate, "describe") else type(evaluate).__name__
    if result.best is None:
        raise InfeasibleError(f"the search in {out} evaluated no feasible candidate in its time budget; "
                              "give it more time (--time-budget) and re-run the same command to continue")
    reporter.stage(f"writing {out}")
    timings["total_s"] = round(spent_before + time.monotonic() - t_session, 2)
    timings["evolve_s"] = round(result.seconds, 2)
    write_state_meta(state_path, "meta", meta)
    files = write_outputs(out, result, profile, space, opts, timings, evaluator_desc, len(val), supernet)
    return summary(out, result, files, timings, evaluator_desc)


def write_outputs(out: Path, result, profile, space, opts: SearchOptions, timings: dict, evaluator: str,
                  val_images: int, supernet=None) -> dict[str, str]:
    """best.yaml, front.json, candidates.json, front.png and (with `supernet`) the best spec's inherited
    weights as a checkpoint `best/` (for `edgevit train --init`), each written atomically; returns {kind: path}."""
    from edgevit.model.checkpoint import save_checkpoint
    from edgevit.nas.plot import plot_front

    best_yaml = write_file_atomically(out / "best.yaml", result.best.spec.to_yaml())
    memory = result.best.costs["pools"][0]
    budgets = {**pool_budgets(result.best.costs), "latency_ms": opts.latency_ms}
    stats = {"evaluated": len(result.candidates), "generations": result.generations, "stopped": result.stopped,
             "rejected": result.rejected, "evaluator": evaluator, "val_images": val_images}
    front = {"profile": profile.name, "space": space.to_dict(), "budgets": budgets, "best": result.best.to_dict(),
             "front": [c.to_dict() for c in result.front], "settings": _settings(opts), "timings": timings,
             "stats": stats}
    write_json_atomic(out / "front.json", front)
    write_json_atomic(out / "candidates.json", {"profile": profile.name, "budgets": budgets,
                                                "candidates": [c.to_dict() for c in result.candidates]})
    plot_front(out / "front.png", result.candidates, result.front, result.best, memory["budget"], memory["name"],
               title=f"{space.name} space on {profile.name}: {len(result.candidates)} candidates")
    files = {"best": str(best_yaml), "front": str(out / "front.json"), "candidates": str(out / "candidates.json"),
             "plot": str(out / "front.png"), "supernet": str(out / SUPERNET_DIR), "state": str(out / STATE_FILE)}
    if supernet is not None:
        info = {"source": "edgevit search: supernet-inherited weights", "supernet_val_top1": result.best.accuracy}
        save_checkpoint(supernet.extract(result.best.spec), out / BEST_MODEL_DIR, info=info)
        files["model"] = str(out / BEST_MODEL_DIR)
    return files


def summary(out: Path, result, files: dict[str, str], timings: dict, evaluator: str) -> dict[str, Any]:
    """The JSON-able summary `edgevit search` prints."""
    b = result.best
    best = {"name": b.spec.name, "accuracy": b.accuracy, **b.costs}
    return {"out": str(out), "best": best, "spec": b.spec.to_dict(), "evaluated": len(result.candidates),
            "front_size": len(result.front), "generations": result.generations, "stopped": result.stopped,
            "evaluator": evaluator, "timings": timings, "files": files}
