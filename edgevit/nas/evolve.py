"""Evolutionary architecture search under memory budgets, with a Pareto front and resumable state.

`evolve()` never trains or measures anything itself: it takes two callables,
`estimate(spec) -> SpecCosts` (cheap: the target's costs of the spec's Program, edgevit.nas.estimate) and
`evaluate(specs) -> accuracies` (expensive: supernet-inherited validation accuracy), so tests
can drive it with fakes and `edgevit search` with the real estimator and a worker pool.

The loop (deadline-driven):
  generation 0: sample specs from the space, keep only the feasible ones (estimate first, it
  is cheap), evaluate them; the population is the best `population` candidates by accuracy.
  generation g >= 1: the top `parents` of the population breed children — crossover of two
  parents then mutation, or a mutation of one parent, plus a few fresh samples for exploration;
  children are feasible, new (never evaluated before) and distinct; they are evaluated in
  chunks and the population becomes the best of population + children.
It stops at the deadline (checked before every chunk; the first chunk always runs so a search
has a result), after `max_generations`, or when no new feasible child can be found.

Determinism and resuming: generation g draws from its own `random.Random(f"{seed}/{g}")` and
dedupes against candidates of earlier generations only, so the children of a generation do not
depend on when the previous session stopped. The state file (JSON, written atomically after
every chunk) holds every evaluated candidate (the accuracy cache) and the population; a resumed
run regenerates the interrupted generation, reuses the accuracies already measured and goes on —
the same candidates, in the same order, as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from edgevit.atomic_write import write_file_atomically
from edgevit.errors import UserInputError
from edgevit.model.spec import ViTSpec

STATE_VERSION = 2  # 2: costs carry the target's resource pools


@dataclass(frozen=True)
class EvolveConfig:
    """Settings of the evolutionary loop.

    population: candidates kept per generation (also the size of the initial sample);
    parents: the top-k of the population that breed; children: per generation (default: population);
    mutation_prob: per-gene re-sampling probability of `space.mutate`; crossover_share: share of
    children made by crossover (+ mutation) rather than by mutation alone; random_share: share of
    fresh random samples per generation; latency_ms: optional bound on the estimated latency_ms;
    chunk: specs per `evaluate` call (the deadline is checked between calls); tries: attempts per
    wanted spec before giving up on finding a new feasible one; max_generations: stop after this
    many generations after the initial one (None: only the deadline stops the search).
    """

    population: int = 20
    parents: int = 8
    children: int | None = None
    mutation_prob: float = 0.3
    crossover_share: float = 0.5
    random_share: float = 0.1
    latency_ms: float | None = None
    chunk: int = 8
    tries: int = 50
    max_generations: int | None = None

    def check(self) -> None:
        """UserInputError for settings out of range."""
        if self.population < 2:
            raise UserInputError(f"--population must be >= 2 (got {self.population})")
        if not 1 <= self.parents <= self.population:
            raise UserInputError(f"parents must be in [1, population] (got {self.parents})")
        for name in ("mutation_prob", "crossover_share", "random_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UserInputError(f"{name} must be in [0, 1] (got {v})")
        if self.latency_ms is not None and self.latency_ms <= 0:
            raise UserInputError(f"--latency-ms must be > 0 (got {self.latency_ms})")
        if self.chunk < 1 or self.tries < 1:
            raise UserInputError("chunk and tries must be >= 1")

    @property
    def children_per_generation(self) -> int:
        """Children bred per generation."""
        return self.children or self.population


@dataclass(frozen=True)
class Candidate:
    """One evaluated architecture: its spec, accuracy in [0, 1], costs (SpecCosts.to_dict(): `pools`
    [{name, used, budget, ...}], the first one the memory objective, latency_ms, ...), generation."""

    key: str
    spec: ViTSpec
    accuracy: float
    costs: dict[str, Any]
    generation: int
    feasible: bool = True

    @property
    def memory_bytes(self) -> int:
        """The memory objective: the use of the first pool (MCU: sram, arena + stack)."""
        return int(self.costs["pools"][0]["used"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record: name, key, generation, accuracy, feasible, costs, spec (its YAML text)."""
        return {"name": self.spec.name, "key": self.key, "generation": self.generation,
                "accuracy": self.accuracy, "feasible": self.feasible, "costs": dict(self.costs),
                "spec": self.spec.to_yaml()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "state") -> "Candidate":
        """Inverse of `to_dict` (the spec, YAML text or a dict, is re-validated)."""
        where = f"{source}: candidate {d.get('name', '?')}"
        raw = d["spec"]
        spec = ViTSpec.from_yaml(raw, source=where) if isinstance(raw, str) else ViTSpec.from_dict(raw, where)
        return cls(key=d["key"], spec=spec, accuracy=float(d["accuracy"]), costs=dict(d["costs"]),
                   generation=int(d["generation"]), feasible=bool(d.get("feasible", True)))


@dataclass
class SearchResult:
    """What `evolve` found: every evaluated candidate (evaluation order), the front, the best.

    generations: completed generations after the initial population; rejected: infeasible
    samples/children per reason (a pool's name such as sram or flash, or latency; a resumed generation
    may count some twice);
    seconds: evolution time over all sessions;
    stopped: "deadline", "max_generations" or "exhausted"; population: keys of the population.
    """

    candidates: list[Candidate]
    front: list[Candidate]
    best: Candidate | None
    generations: int
    rejected: dict[str, int]
    seconds: float
    stopped: str
    population: list[str] = field(default_factory=list)
    evaluations_this_session: int = 0


def spec_key(spec: ViTSpec) -> str:
    """Stable 16-hex identity of an architecture (its canonical YAML without the name)."""
    return hashlib.sha1(replace(spec, name="").to_yaml().encode()).hexdigest()[:16]


def costs_dict(costs: Any) -> dict[str, Any]:
    """SpecCosts (or any object with to_dict, or a dict) -> a JSON-able dict with `pools`."""
    return dict(costs.to_dict()) if hasattr(costs, "to_dict") else dict(costs)


def reject_reason(costs: dict[str, Any], latency_ms: float | None) -> str | None:
    """Why a spec with these costs is infeasible (the name of the first pool over its budget, or
    "latency"), or None if it is feasible."""
    for pool in costs["pools"]:
        if pool["budget"] is not None and pool["used"] > pool["budget"]:
            return pool["name"]
    if latency_ms is not None and (costs.get("latency_ms") is None or costs["latency_ms"] > latency_ms):
        return "latency"
    return None


def dominates(a: Candidate, b: Candidate) -> bool:
    """True when `a` is at least as accurate and as small as `b` and strictly better in one."""
    return (a.accuracy >= b.accuracy and a.memory_bytes <= b.memory_bytes
            and (a.accuracy > b.accuracy or a.memory_bytes < b.memory_bytes))


def pareto_front(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Non-dominated feasible candidates (maximise accuracy, minimise memory_bytes), by ascending memory.

    Candidates with the same (accuracy, memory_bytes) appear once (the smallest key). O(n log n).
    """
    pool = sorted((c for c in candidates if c.feasible), key=lambda c: (c.memory_bytes, -c.accuracy, c.key))
    front: list[Candidate] = []
    for c in pool:
        if not front or c.accuracy > front[-1].accuracy:
            front.append(c)
    return front


def rank_key(c: Candidate) -> tuple:
    """Sort key: most accurate first, then the smaller memory, then the key (deterministic)."""
    return (-c.accuracy, c.memory_bytes, c.key)


def best_candidate(candidates: Iterable[Candidate]) -> Candidate | None:
    """The most accurate feasible candidate (ties: smaller memory), or None."""
    feasible = sorted((c for c in candidates if c.feasible), key=rank_key)
    return feasible[0] if feasible else None


@dataclass
class _State:
    """Mutable search state (what `search_state` JSON holds)."""

    seed: int
    space: Any
    generation: int = 0          # the generation being built / evaluated now
    population: list[str] = field(default_factory=list)
    cache: dict[str, Candidate] = field(default_factory=dict)   # insertion order = evaluation order
    rejected: dict[str, int] = field(default_factory=dict)  # reason (reject_reason) -> count
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # other keys of the file (e.g. the search's "meta"), kept

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "version": STATE_VERSION, "seed": self.seed, "space": self.space, "generation": self.generation,
                "population": self.population, "rejected": self.rejected, "evolve_seconds": round(self.seconds, 3),
                "candidates": [c.to_dict() for c in self.cache.values()]}


def _space_fingerprint(space) -> Any:
    """The space as it reads back from JSON (tuples become lists), to compare with a saved state."""
    return json.loads(json.dumps(space.to_dict() if hasattr(space, "to_dict") else repr(space)))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path` through a temp file + rename (never half-written;
    edgevit/atomic_write.py, which also removes a killed writer's leftovers)."""
    write_file_atomically(Path(path), json.dumps(data, indent=1) + "\n")


def read_state(path: Path) -> dict[str, Any] | None:
    """The JSON object in the state file at `path`, or None if there is none; UserInputError if unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path}: unreadable search state ({e}); delete it to start over") from None
    if not isinstance(d, dict):
        raise UserInputError(f"{path}: not a search state (expected a JSON object); delete it to start over")
    return d


def write_state_meta(path: Path, key: str, value: Any) -> None:
    """Set top-level `key` of the state file at `path` (created if missing); evolve() keeps such keys."""
    d = read_state(path) or {}
    d[key] = value
    write_json_atomic(path, d)


def load_state(path: Path | None, seed: int, space, latency_ms: float | None) -> _State:
    """The saved state at `path` (checked against seed and space), or a fresh one (keeping other keys)."""
    fresh = _State(seed=seed, space=_space_fingerprint(space))
    d = read_state(path) if path is not None else None
    if d is None:
        return fresh
    own = {"version", "seed", "space", "generation", "population", "rejected", "evolve_seconds", "candidates"}
    fresh.extra = {k: v for k, v in d.items() if k not in own}
    if "candidates" not in d:
        return fresh
    if d.get("version") != STATE_VERSION:
        raise UserInputError(f"{path}: holds a search state of format {d.get('version')!r}, written by another "
                             f"edgevit version (this one writes {STATE_VERSION}); use another --out or delete the "
                             "directory to start over")
    if d.get("seed") != seed or d.get("space") != fresh.space:
        what = "seed" if d.get("seed") != seed else "search space"
        raise UserInputError(f"{path}: holds a search with a different {what}; use another --out "
                             "or delete the directory to start over")
    cands = [Candidate.from_dict(c, str(path)) for c in d["candidates"]]
    cands = [replace(c, feasible=reject_reason(c.costs, latency_ms) is None) for c in cands]
    return _State(seed=seed, space=fresh.space, generation=int(d["generation"]), population=list(d["population"]),
                  cache={c.key: c for c in cands}, rejected={**fresh.rejected, **d.get("rejected", {})},
                  seconds=float(d.get("evolve_seconds", 0.0)), extra=fresh.extra)


class _Run:
    """One session of the loop: holds the callables, the state and the clock."""

    def __init__(self, space, seed, estimate, evaluate, config: EvolveConfig, deadline, state_path, progress):
        self.space, self.seed, self.estimate, self.evaluate = space, seed, estimate, evaluate
        self.cfg, self.deadline, self.state_path, self.progress = config, deadline, state_path, progress
        self.state = load_state(state_path, seed, space, config.latency_ms)
        self.t0 = time.monotonic()
        self.evaluated_now = 0
        self.stopped = ""

    # ---- time ---------------------------------------------------------------
    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def save(self) -> None:
        if self.state_path is not None:
            self.state.seconds += time.monotonic() - self.t0
            self.t0 = time.monotonic()
            write_json_atomic(self.state_path, self.state.to_json())

    # ---- breeding -------------------------------------------------------------
    def feasible_costs(self, spec: ViTSpec) -> dict[str, Any] | None:
        """The costs dict of a feasible spec, or None (and the reason counted)."""
        costs = costs_dict(self.estimate(spec))
        reason = reject_reason(costs, self.cfg.latency_ms)
        if reason:
            self.state.rejected[reason] = self.state.rejected.get(reason, 0) + 1
            return None
        return costs

    def draw(self, rng: random.Random, parents: Sequence[ViTSpec]) -> ViTSpec:
        """One raw child: fresh sample, crossover + mutation, or mutation of a parent."""
        if not parents or rng.random() < self.cfg.random_share:
            return self.space.sample(rng)
        if len(parents) > 1 and rng.random() < self.cfg.crossover_share:
            a, b = rng.sample(list(parents), 2)
            return self.space.mutate(self.space.crossover(a, b, rng), rng, self.cfg.mutation_prob)
        return self.space.mutate(rng.choice(list(parents)), rng, self.cfg.mutation_prob)

    def breed(self, generation: int, parents: Sequence[ViTSpec], count: int) -> list[tuple[str, ViTSpec, dict]]:
        """Up to `count` new feasible distinct children (key, spec, costs) for `generation`."""
        rng = random.Random(f"{self.seed}/{generation}")
        seen = {k for k, c in self.state.cache.items() if c.generation < generation}
        out: dict[str, tuple[str, ViTSpec, dict]] = {}
        misses = 0
        while len(out) < count and misses < self.cfg.tries * count:
            if out and self.out_of_time() and (self.state.cache or len(out) >= self.cfg.chunk):
                break  # (a search without any result yet still gets its first chunk)
            spec = self.draw(rng, parents)
            key = spec_key(spec)
            if key in seen or key in out:
                misses += 1
                continue
            costs = self.feasible_costs(spec)
            if costs is None:
                misses += 1
                continue
            out[key] = (key, spec, costs)
        return list(out.values())

    # ---- evaluation --------------------------------------------------------------
    def evaluate_all(self, generation: int, children: list[tuple[str, ViTSpec, dict]], first: bool) -> bool:
        """Evaluate the children not cached yet, in chunks; False if the deadline cut it short."""
        todo = [c for c in children if c[0] not in self.state.cache]
        for i in range(0, len(todo), self.cfg.chunk):
            if self.out_of_time() and not (first and i == 0 and not self.state.cache):
                return False
            part = todo[i:i + self.cfg.chunk]
            accs = self.evaluate([spec for _, spec, _ in part])
            if len(accs) != len(part):
                raise RuntimeError(f"evaluate returned {len(accs)} accuracies for {len(part)} specs")
            for (key, spec, costs), acc in zip(part, accs):
                self.state.cache[key] = Candidate(key, spec, float(acc), costs, generation, True)
            self.evaluated_now += len(part)
            self.save()
            self.report(generation)
        return True

    def report(self, generation: int) -> None:
        if self.progress is None:
            return
        best = best_candidate(self.state.cache.values())
        elapsed = self.state.seconds + (time.monotonic() - self.t0)
        self.progress({"generation": generation, "evaluated": len(self.state.cache),
                       "best_accuracy": best.accuracy if best else None,
                       "front_size": len(pareto_front(self.state.cache.values())),
                       "candidates_per_s": len(self.state.cache) / elapsed if elapsed > 0 else 0.0,
                       "rejected": dict(self.state.rejected)})

    def select(self, keys: Iterable[str]) -> list[str]:
        """The best `population` feasible candidates among `keys`."""
        pool = {k: self.state.cache[k] for k in keys if k in self.state.cache and self.state.cache[k].feasible}
        return [c.key for c in sorted(pool.values(), key=rank_key)[: self.cfg.population]]

    # ---- the loop ----------------------------------------------------------------
    def step(self) -> bool:
        """Build and evaluate the current generation; False when the search must stop."""
        g = self.state.generation
        if g > 0 and self.cfg.max_generations is not None and g > self.cfg.max_generations:
            self.stopped = "max_generations"
            return False
        if self.out_of_time() and self.state.cache:
            self.stopped = "deadline"
            return False
        parents = [self.state.cache[k].spec for k in self.state.population[: self.cfg.parents]]
        count = self.cfg.population if g == 0 else self.cfg.children_per_generation
        children = self.breed(g, parents, count)
        if not children:
            self.stopped = "exhausted" if not self.out_of_time() else "deadline"
            return False
        if not self.evaluate_all(g, children, first=(g == 0)):
            self.stopped = "deadline"
            return False
        self.state.population = self.select(self.state.population + [c[0] for c in children])
        self.state.generation = g + 1
        self.save()
        return True

    def run(self) -> SearchResult:
        while self.step():
            pass
        self.save()
        cands = list(self.state.cache.values())
        self.state.seconds += time.monotonic() - self.t0
        self.t0 = time.monotonic()
        return SearchResult(candidates=cands, front=pareto_front(cands), best=best_candidate(cands),
                            generations=max(0, self.state.generation - 1), rejected=dict(self.state.rejected),
                            seconds=self.state.seconds, stopped=self.stopped, population=list(self.state.population),
                            evaluations_this_session=self.evaluated_now)


def evolve(space, rng_seed: int, estimate: Callable[[ViTSpec], Any], evaluate: Callable[[list[ViTSpec]], list[float]],
           config: EvolveConfig, deadline: float, state_path: Path | None = None,
           progress: Callable[[dict], None] | None = None) -> SearchResult:
    """Evolutionary search over `space` until `deadline` (a `time.monotonic()` value); see the module doc.

    estimate(spec) -> SpecCosts (or anything `costs_dict` turns into a dict with `pools` and
    latency_ms); evaluate([spec, ...]) -> [accuracy in [0, 1], ...] (same order). state_path: JSON state
    to resume from and to keep up to date (None: no state). progress(info) is called after every
    evaluated chunk with generation, evaluated, best_accuracy, front_size, candidates_per_s, rejected.
    """
    config.check()
    return _Run(space, rng_seed, estimate, evaluate, config, deadline, state_path, progress).run()
