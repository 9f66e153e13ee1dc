"""NAS evolution: the Pareto front, and evolve() with fake estimate / evaluate callables.

The fakes make the search a toy problem with a known answer: costs and accuracy are simple
functions of the genes of a small real SearchSpace, so the best feasible spec can be found by
enumerating the whole space.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.backend.costs import Costs, Pool
from edgevit.errors import UserInputError
from edgevit.nas.estimate import SpecCosts
from edgevit.nas.evolve import (Candidate, EvolveConfig, best_candidate, dominates, evolve, pareto_front,
                                read_state, spec_key, write_state_meta)
from edgevit.nas.space import SearchSpace

SRAM_BUDGET = 4_000
SPACE = SearchSpace(in_channels=1, num_classes=3, pool="cls", image_sizes=(8,), patch_sizes=(4,),
                    embed_dims=(16, 24, 32, 48), depths=(1, 2, 3), heads=(1, 2), head_dim=8,
                    mlp_ratios=(1.0, 2.0), lowrank_ratios=(1.0,), merge_rs=(0,), name="toy")


def fake_sram(spec) -> int:
    """Grows with width, depth, heads and MLP width."""
    return spec.embed_dim * sum(20 + 12 * b.heads + b.mlp_hidden // 4 for b in spec.blocks)


def fake_estimate(spec) -> SpecCosts:
    """Toy costs in the target's terms: pools sram (the memory objective, SRAM_BUDGET) and flash (never full)."""
    sram = fake_sram(spec)
    costs = Costs(pools=(Pool("sram", sram, SRAM_BUDGET), Pool("flash", 1000, 10**9)), macs=0, activation_bytes=sram,
                  latency_ms=spec.embed_dim * spec.depth / 10)
    return SpecCosts(costs, params=0)


def toy_accuracy(spec) -> float:
    """Bigger is better but with a preference pattern (heads matter more than MLP width)."""
    score = spec.embed_dim / 48 + sum(0.3 * b.heads + 0.002 * b.mlp_hidden for b in spec.blocks)
    return round(score / 5.0, 6)


def fake_evaluate(specs) -> list[float]:
    return [toy_accuracy(s) for s in specs]


def every_spec(space: SearchSpace):
    """The whole (small) space, enumerated gene by gene."""
    blocks = list(itertools.product(space.heads, space.mlp_ratios, space.lowrank_ratios, [0]))
    for embed, depth in itertools.product(space.embed_dims, space.depths):
        for combo in itertools.product(blocks, repeat=depth):
            yield space.build(8, 4, embed, list(combo))


def far() -> float:
    return time.monotonic() + 600


# ---- the Pareto front ----------------------------------------------------------------------------
def make_candidates(points) -> list[Candidate]:
    spec = SPACE.smallest()
    return [Candidate(key=f"k{i:03d}", spec=spec, accuracy=acc, generation=0,
                      costs={"pools": [{"name": "sram", "used": sram, "budget": None}]},
                      feasible=ok) for i, (acc, sram, ok) in enumerate(points)]


points = st.lists(st.tuples(st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9]), st.integers(1, 8), st.booleans()),
                  max_size=25)


@settings(max_examples=40, deadline=None)
@given(points)
def test_pareto_front_is_the_brute_force_non_dominated_set(pts):
    cands = make_candidates(pts)
    front = pareto_front(cands)
    feasible = [c for c in cands if c.feasible]
    brute = {(c.accuracy, c.memory_bytes) for c in feasible if not any(dominates(d, c) for d in feasible)}
    assert {(c.accuracy, c.memory_bytes) for c in front} == brute
    assert len(front) == len(brute)  # ties appear once
    assert all(c.feasible for c in front)
    assert all(a.memory_bytes < b.memory_bytes and a.accuracy < b.accuracy for a, b in zip(front, front[1:]))
    best = best_candidate(cands)
    assert (best is None) == (not feasible)
    if best is not None:
        assert best.accuracy == max(c.accuracy for c in feasible) and best in front


# ---- evolve with fakes --------------------------------------------------------------------------
def test_evolve_finds_the_known_optimum_under_the_budget():
    feasible = [s for s in every_spec(SPACE) if fake_sram(s) <= SRAM_BUDGET]
    assert 50 < len(feasible) < 300  # the budget cuts the space: the optimum is not simply the largest
    optimum = max(toy_accuracy(s) for s in feasible)
    cfg = EvolveConfig(population=12, parents=4, max_generations=8)
    result = evolve(SPACE, 0, fake_estimate, fake_evaluate, cfg, far())
    assert result.stopped == "max_generations" and result.generations == 8
    assert result.best.accuracy == optimum
    assert len(result.candidates) < len(feasible)  # found without evaluating every feasible spec
    assert fake_sram(result.best.spec) <= SRAM_BUDGET
    assert all(c.feasible and c.memory_bytes == c.costs["sram_bytes"] <= SRAM_BUDGET for c in result.candidates)
    assert result.rejected["sram"] > 0 and "flash" not in result.rejected  # reasons: the pools over budget
    assert len({c.key for c in result.candidates}) == len(result.candidates)  # never evaluated twice
    assert result.front == pareto_front(result.candidates) and result.best in result.front


def test_evolve_respects_the_deadline():
    def slow(specs):
        time.sleep(0.05 * len(specs))
        return fake_evaluate(specs)

    t0 = time.monotonic()
    result = evolve(SPACE, 1, fake_estimate, slow, EvolveConfig(population=8, parents=4, chunk=4), t0 + 1.0)
    elapsed = time.monotonic() - t0
    assert result.stopped == "deadline"
    assert 1.0 <= elapsed < 1.0 + 4 * 0.05 + 1.5  # at most one chunk (+ slack for a loaded machine) past it
    assert result.best is not None and len(result.candidates) >= 8


def test_deadline_already_past_still_evaluates_one_chunk():
    result = evolve(SPACE, 0, fake_estimate, fake_evaluate, EvolveConfig(population=8, chunk=3), time.monotonic() - 1)
    assert result.stopped == "deadline" and len(result.candidates) == 3 and result.best is not None


def test_evolve_is_deterministic_given_the_seed():
    cfg = EvolveConfig(population=8, parents=4, max_generations=4)
    runs = [evolve(SPACE, seed, fake_estimate, fake_evaluate, cfg, far()) for seed in (3, 3, 4)]
    keys = [[c.key for c in r.candidates] for r in runs]
    assert keys[0] == keys[1] and keys[0] != keys[2]
    assert [c.accuracy for c in runs[0].candidates] == [c.accuracy for c in runs[1].candidates]


class Crash(Exception):
    pass


def test_evolve_resumes_from_its_state_like_an_uninterrupted_run(tmp_path):
    cfg = EvolveConfig(population=8, parents=4, chunk=3, max_generations=5)
    whole = evolve(SPACE, 7, fake_estimate, fake_evaluate, cfg, far())
    state = tmp_path / "search_state.json"
    write_state_meta(state, "meta", {"kept": True})
    calls = []

    def crashing(specs):
        calls.append(len(specs))
        if len(calls) == 7:  # mid-generation
            raise Crash()
        return fake_evaluate(specs)

    with pytest.raises(Crash):
        evolve(SPACE, 7, fake_estimate, crashing, cfg, far(), state)
    saved = read_state(state)
    assert saved["meta"] == {"kept": True} and len(saved["candidates"]) == sum(calls[:6])
    evaluated = []

    def counting(specs):
        evaluated.extend(specs)
        return fake_evaluate(specs)

    resumed = evolve(SPACE, 7, fake_estimate, counting, cfg, far(), state)
    assert [c.key for c in resumed.candidates] == [c.key for c in whole.candidates]
    assert [c.accuracy for c in resumed.candidates] == [c.accuracy for c in whole.candidates]
    assert len(evaluated) == len(whole.candidates) - sum(calls[:6])  # cached ones not evaluated again
    assert resumed.population == whole.population and resumed.generations == whole.generations
    assert read_state(state)["meta"] == {"kept": True}
    again = evolve(SPACE, 7, fake_estimate, counting, cfg, far(), state)  # finished: nothing more to do
    assert len(again.candidates) == len(whole.candidates) and again.evaluations_this_session == 0


def test_state_of_another_seed_or_space_is_refused(tmp_path):
    state = tmp_path / "s.json"
    cfg = EvolveConfig(population=4, parents=2, max_generations=1)
    evolve(SPACE, 0, fake_estimate, fake_evaluate, cfg, far(), state)
    with pytest.raises(UserInputError, match="different seed"):
        evolve(SPACE, 1, fake_estimate, fake_evaluate, cfg, far(), state)
    other = SearchSpace.from_dict({**SPACE.to_dict(), "depths": [1, 2]})
    with pytest.raises(UserInputError, match="different search space"):
        evolve(other, 0, fake_estimate, fake_evaluate, cfg, far(), state)
    json.loads(state.read_text())  # still valid JSON
    old = json.loads(state.read_text())
    state.write_text(json.dumps({**old, "version": 1}))
    with pytest.raises(UserInputError, match="search state of format 1, written by another edgevit version"):
        evolve(SPACE, 0, fake_estimate, fake_evaluate, cfg, far(), state)


def test_latency_bound_keeps_only_fast_specs():
    cfg = EvolveConfig(population=8, parents=4, max_generations=3, latency_ms=6.0)
    result = evolve(SPACE, 0, fake_estimate, fake_evaluate, cfg, far())
    assert result.candidates and all(c.costs["latency_ms"] <= 6.0 for c in result.candidates)
    assert result.rejected["latency"] > 0


def test_small_space_is_exhausted_without_duplicates():
    tiny = SearchSpace.from_dict({**SPACE.to_dict(), "embed_dims": [16], "depths": [1], "mlp_ratios": [1.0]})
    result = evolve(tiny, 0, fake_estimate, fake_evaluate, EvolveConfig(population=4, parents=2, tries=5), far())
    assert result.stopped == "exhausted"
    assert sorted(c.key for c in result.candidates) == sorted({spec_key(s) for s in every_spec(tiny)})


def test_bad_config_is_a_user_error():
    with pytest.raises(UserInputError, match="population"):
        evolve(SPACE, 0, fake_estimate, fake_evaluate, EvolveConfig(population=1), far())


def test_candidate_records_round_trip_with_the_spec_as_yaml():
    spec = SPACE.largest()
    c = Candidate(spec_key(spec), spec, 0.5, fake_estimate(spec).to_dict(), 3)
    d = json.loads(json.dumps(c.to_dict()))
    assert d["spec"] == spec.to_yaml() and d["name"] == spec.name
    assert Candidate.from_dict(d) == c
