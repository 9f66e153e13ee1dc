"""`edgevit search`: time budgets, feasibility first (exit 3, nothing written), outputs, resuming.

Fast tests run `run_search` in-process with a fake supernet trainer and a fake evaluator (the
estimator is the real one: the planner's figures); the slow one runs the real command end to end
on a few hundred Fashion-MNIST images.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgevit.errors import InfeasibleError, UserInputError
from edgevit.model.spec import ViTSpec
from edgevit.nas.estimate import Estimator
from edgevit.nas.evolve import read_state
from edgevit.nas.search import SearchOptions, parse_duration, run_search
from edgevit.nas.space import SearchSpace
from edgevit.profiles.profile import profile_dir
from tests.atomic_helpers import leftovers, plant_dead

EDGEVIT = shutil.which("edgevit") or str(Path(sys.executable).parent / "edgevit")
TINY_SPACE = {"name": "tiny", "image_sizes": [28, 14], "patch_sizes": [7], "embed_dims": [16, 24, 32],
              "depths": [1, 2], "heads": [1, 2], "head_dim": 8, "mlp_ratios": [1.0, 2.0],
              "lowrank_ratios": [1.0, 0.5], "merge_rs": [0, 2]}


def fmnist_subset(path: Path, train: int = 600, val: int = 200, test: int = 100) -> Path:
    """An .npz of the first images of the real Fashion-MNIST splits (skip if the dataset is missing)."""
    from edgevit.data import load_dataset
    from edgevit.errors import DataError

    try:
        sp = load_dataset("fashion-mnist")
    except DataError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    np.savez(path, x_train=sp.train.images[:train, 0], y_train=sp.train.labels[:train],
             x_val=sp.val.images[:val, 0], y_val=sp.val.labels[:val],
             x_test=sp.test.images[:test, 0], y_test=sp.test.labels[:test])
    return path


@pytest.fixture(scope="module")
def fmnist_npz(tmp_path_factory) -> Path:
    return fmnist_subset(tmp_path_factory.mktemp("data") / "fm.npz")


@pytest.fixture
def tiny_space(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return path


def small_sram_profile(tmp_path: Path, sram: str = "8KiB") -> Path:
    """stm32f746-disco with only `sram` of SRAM (one region)."""
    d = yaml.safe_load((profile_dir() / "stm32f746-disco.yaml").read_text())
    d["name"] = "tiny-sram"
    d["memory"]["sram_bytes"] = sram
    d["memory"]["regions"] = [r for r in d["memory"]["regions"] if r["kind"] == "flash"]
    path = tmp_path / "tiny-sram.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def planner_figures(costs: dict) -> dict:
    """The memory figures of a costs dict (the latency model's calibration may be re-created meanwhile)."""
    keys = ("arena_bytes", "stack_bytes", "sram_bytes", "flash_bytes", "weight_bytes", "code_bytes", "macs",
            "params", "sram_budget", "flash_budget", "fits", "pools", "lower_bound_bytes", "naive_bytes")
    return {k: costs[k] for k in keys}


def run_cli(*args, timeout=600):
    return subprocess.run([EDGEVIT, "search", *map(str, args)], capture_output=True, text=True, timeout=timeout)


# ---- the time budget ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("90s", 90), ("1h", 3600), ("600", 600), ("1.5h", 5400),
                                           (" 2 m ", 120), ("45", 45), (".5m", 30)])
def test_time_budget_parses(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5m", "0", "m", "1h30m", "5 days"])
def test_bad_time_budget_is_a_clear_error(text):
    with pytest.raises(UserInputError, match="--time-budget.*90s, 30m, 1h"):
        parse_duration(text)


# ---- feasibility first -------------------------------------------------------------------------------
def test_8kib_sram_profile_exits_3_before_anything_is_written(tmp_path, fmnist_npz):
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = run_cli("--profile", small_sram_profile(tmp_path), "--data", fmnist_npz, "--time-budget", "10m", "--out", out)
    assert r.returncode == 3, r.stderr
    err = " ".join(r.stderr.split())
    assert "tiny-sram" in err and "8 KiB (8,192 B)" in err and "smallest need found" in err
    assert "mcu.yaml" in err and "--space" in err and "Nothing was trained or written" in err
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not out.exists()
    assert time.monotonic() - t0 < 60  # no training happened


def test_infeasible_custom_space_names_the_space_file(tmp_path, fmnist_npz, tiny_space):
    with pytest.raises(InfeasibleError, match="tiny.yaml") as e:
        run_search(SearchOptions(profile=str(small_sram_profile(tmp_path, "8KiB")), out=tmp_path / "o",
                                 data=str(fmnist_npz), space=tiny_space, time_budget_s=60))
    assert e.value.exit_code == 3 and not (tmp_path / "o").exists()


def test_latency_bound_below_anything_is_infeasible(tmp_path, fmnist_npz, tiny_space):
    with pytest.raises(InfeasibleError, match="--latency-ms 1e-06 is below the fastest estimate"):
        run_search(SearchOptions(profile="stm32f746-disco", out=tmp_path / "o", data=str(fmnist_npz),
                                 space=tiny_space, time_budget_s=60, latency_ms=1e-6))


# ---- fast search with fakes --------------------------------------------------------------------------
def fake_trainer(space, splits, out, config, budget_s, progress):
    """An untrained (seeded) supernet, saved like a trained one."""
    from edgevit.data import compute_normalization
    from edgevit.nas.supernet import Supernet, save_supernet

    sn = Supernet(space, compute_normalization(splits.train), seed=config.seed)
    save_supernet(sn, out, {"step": 0})
    progress(1, 1, 2.3)
    return sn.eval()


class ToyEvaluator:
    """Accuracy = a smooth function of width and depth; records what it evaluated."""

    def __init__(self, log: list, crash_after: int | None = None) -> None:
        self.log, self.crash_after = log, crash_after

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def describe(self) -> str:
        return "toy"

    def __call__(self, specs):
        if self.crash_after is not None and len(self.log) >= self.crash_after:
            raise KeyboardInterrupt
        time.sleep(0.01 * len(specs))
        self.log.extend(specs)
        return [min(1.0, 0.2 + spec.embed_dim / 64 + 0.05 * spec.depth) for spec in specs]


def fake_factory(log, crash_after=None):
    return lambda path, val, workers, ray, supernet: ToyEvaluator(log, crash_after)


def test_fast_search_writes_every_output_and_resumes(tmp_path, fmnist_npz, tiny_space):
    out = tmp_path / "s"
    opts = SearchOptions(profile="stm32f746-disco", out=out, data=str(fmnist_npz), space=tiny_space,
                         time_budget_s=6, population=6, val_images=50)
    log: list = []
    with pytest.raises(KeyboardInterrupt):  # interrupted after 12 evaluations
        run_search(opts, trainer=fake_trainer, evaluator_factory=fake_factory(log, crash_after=12))
    assert len(read_state(out / "search_state.json")["candidates"]) == 12
    assert not (out / "best.yaml").exists()
    summary = run_search(opts, trainer=fake_trainer, evaluator_factory=fake_factory(log))
    keys = [s.to_yaml() for s in log]
    assert len(keys) == len(set(keys)) > 12  # resumed: nothing evaluated twice
    space = SearchSpace.load(tiny_space, (1, 28, 28), 10)
    best = ViTSpec.load(out / "best.yaml")
    assert space.contains(best) and best.name == summary["best"]["name"]
    front = json.loads((out / "front.json").read_text())
    cands = json.loads((out / "candidates.json").read_text())["candidates"]
    assert len(cands) == summary["evaluated"] == len(log)
    assert front["best"]["name"] == best.name and front["best"]["accuracy"] == max(c["accuracy"] for c in cands)
    assert front["budgets"]["sram_bytes"] == 320 * 1024 and front["settings"]["population"] == 6
    assert {c["key"] for c in front["front"]} <= {c["key"] for c in cands}
    assert all(c["costs"]["sram_bytes"] <= 320 * 1024 and c["feasible"] for c in cands)
    assert planner_figures(Estimator("stm32f746-disco")(best).to_dict()) == planner_figures(front["best"]["costs"])
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from edgevit.model.checkpoint import load_checkpoint
    assert load_checkpoint(out / "best").spec == best
    assert front["timings"]["total_s"] <= 6 + 1.0
    # the budget is spent: re-running rewrites the outputs without evaluating anything new (and removes
    # what a killed earlier run left beside them)
    debris = [plant_dead(out, name) for name in ("best.yaml", "front.json", "candidates.json", "front.png")]
    again = run_search(opts, trainer=fake_trainer, evaluator_factory=fake_factory(log))
    assert again["evaluated"] == summary["evaluated"] and len(log) == len(keys)
    assert not list(out.glob(".*.tmp")) and leftovers(out) == [] and leftovers(out / "best") == []
    assert not any(p.exists() for p in debris)


def test_another_space_or_profile_in_the_same_out_is_refused(tmp_path, fmnist_npz, tiny_space):
    out = tmp_path / "s"
    opts = SearchOptions(profile="stm32f746-disco", out=out, data=str(fmnist_npz), space=tiny_space,
                         time_budget_s=4, population=4, val_images=20)
    run_search(opts, trainer=fake_trainer, evaluator_factory=fake_factory([]))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**TINY_SPACE, "depths": [1]}))
    with pytest.raises(UserInputError, match="different space"):
        run_search(SearchOptions(**{**opts.__dict__, "space": other}), trainer=fake_trainer,
                   evaluator_factory=fake_factory([]))
    with pytest.raises(UserInputError, match="different profile.*stm32f746-disco.*nrf52840"):
        run_search(SearchOptions(**{**opts.__dict__, "profile": "nrf52840"}), trainer=fake_trainer,
                   evaluator_factory=fake_factory([]))
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="not a search output directory"):
        run_search(SearchOptions(**{**opts.__dict__, "out": stray}), trainer=fake_trainer,
                   evaluator_factory=fake_factory([]))


def test_bad_options_are_user_errors(tmp_path):
    for field, value, flag in (("supernet_share", 1.5, "--supernet-share"), ("workers", 0, "--workers"),
                               ("val_images", 0, "--val-images"), ("population", 1, "--population")):
        kw = {"profile": "stm32f746-disco", "out": tmp_path / "o", field: value}
        with pytest.raises(UserInputError, match=flag):
            run_search(SearchOptions(**kw))


# ---- the real thing ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_end_to_end_search_finds_a_feasible_spec(tmp_path, fmnist_npz, tiny_space):
    out = tmp_path / "search"
    args = ("--profile", "stm32f746-disco", "--data", fmnist_npz, "--space", tiny_space, "--time-budget", "60s",
            "--out", out, "--population", "8", "--val-images", "200", "--workers", "2")
    t0 = time.monotonic()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 60 + 30  # the budget, plus start-up
    assert "best nas-" in r.stdout and "front.png" in r.stdout
    best = ViTSpec.load(out / "best.yaml")
    front = json.loads((out / "front.json").read_text())
    costs = front["best"]["costs"]
    assert costs["fits"] and costs["sram_bytes"] <= costs["sram_budget"] == 320 * 1024
    assert front["best"]["accuracy"] > 0.15  # better than chance (10 classes) after a short supernet training
    assert planner_figures(Estimator("stm32f746-disco")(best).to_dict()) == planner_figures(costs)
    assert front["stats"]["evaluated"] >= 8 and front["stats"]["evaluator"] == "local pool of 2 processes"
    assert (out / "front.png").stat().st_size > 10_000 and (out / "supernet" / "supernet.safetensors").is_file()
    again = run_cli(*args, "--json")  # budget spent: resumes straight to the outputs
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["best"]["name"] == best.name
