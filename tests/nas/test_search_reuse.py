"""`edgevit search --max-sram` (a tighter budget of the target's memory pool) and `--supernet` (reuse a
trained supernet)."""

from __future__ import annotations

import json

import pytest
import yaml

from edgevit.backend.costs import Costs, Pool
from edgevit.errors import UserInputError
from edgevit.nas.reuse import limit_memory, parse_max_sram
from edgevit.nas.search import SearchOptions, run_search
from tests.nas.test_search_cli import TINY_SPACE, fake_factory, fake_trainer, fmnist_npz, tiny_space  # noqa: F401


def test_max_sram_parses_sizes_and_names_the_option():
    assert parse_max_sram("24KiB") == 24 * 1024 and parse_max_sram("24576") == 24576 and parse_max_sram(None) is None
    with pytest.raises(UserInputError, match="--max-sram 'lots'"):
        parse_max_sram("lots")


def test_limit_memory_lowers_only_the_memory_pools_budget():
    costs = Costs(pools=(Pool("sram", 24_000, 320 * 1024, "arena + stack"), Pool("flash", 9, 1024)), macs=1,
                  activation_bytes=16_000, latency_ms=2.0, figures={"arena_bytes": 16_000})
    tight = limit_memory(costs, 20_000, "stm32f746-disco")
    assert tight.memory == Pool("sram", 24_000, 20_000, "arena + stack") and not tight.fits
    assert tight.pools[1:] == costs.pools[1:] and costs.memory.budget == 320 * 1024
    assert (tight.macs, tight.activation_bytes, tight.latency_ms, tight.figures) == (1, 16_000, 2.0, costs.figures)
    assert limit_memory(costs, 24_000, "x").fits
    with pytest.raises(UserInputError, match="--max-sram .* is more than stm32f746-disco's sram budget"):
        limit_memory(costs, 320 * 1024 + 1, "stm32f746-disco")


def _opts(tmp_path, npz, space, out="s", **kw):
    return SearchOptions(profile="stm32f746-disco", out=tmp_path / out, data=str(npz), space=space,
                         time_budget_s=4, population=4, val_images=20, **kw)


def test_max_sram_keeps_every_candidate_under_the_limit(tmp_path, fmnist_npz, tiny_space):
    free = run_search(_opts(tmp_path, fmnist_npz, tiny_space, "free"), trainer=fake_trainer,
                      evaluator_factory=fake_factory([]))
    cands = json.loads((tmp_path / "free" / "candidates.json").read_text())["candidates"]
    limit = sorted(c["costs"]["sram_bytes"] for c in cands)[len(cands) // 2]  # half the free search is too big
    assert free["best"]["sram_budget"] == 320 * 1024
    tight = run_search(_opts(tmp_path, fmnist_npz, tiny_space, "tight", max_sram=limit), trainer=fake_trainer,
                       evaluator_factory=fake_factory([]))
    front = json.loads((tmp_path / "tight" / "front.json").read_text())
    assert front["budgets"]["sram_bytes"] == limit == tight["best"]["sram_budget"]
    assert tight["best"]["sram_bytes"] <= limit
    assert all(c["costs"]["sram_bytes"] <= limit for c in front["front"])
    with pytest.raises(UserInputError, match="--max-sram .* more than stm32f746-disco's sram budget"):
        run_search(_opts(tmp_path, fmnist_npz, tiny_space, "huge", max_sram=10**9), trainer=fake_trainer,
                   evaluator_factory=fake_factory([]))
    assert not (tmp_path / "huge").exists()


def test_reused_supernet_is_not_trained_and_must_match_the_space(tmp_path, fmnist_npz, tiny_space):
    run_search(_opts(tmp_path, fmnist_npz, tiny_space, "first"), trainer=fake_trainer,
               evaluator_factory=fake_factory([]))
    trained: list = []

    def counting_trainer(*args):
        trained.append(args)
        return fake_trainer(*args)

    second = _opts(tmp_path, fmnist_npz, tiny_space, "second", supernet=tmp_path / "first")
    summary = run_search(second, trainer=counting_trainer, evaluator_factory=fake_factory([]))
    assert trained == [] and summary["evaluated"] > 0
    src = (tmp_path / "first" / "supernet" / "supernet.safetensors").read_bytes()
    assert (tmp_path / "second" / "supernet" / "supernet.safetensors").read_bytes() == src
    again = _opts(tmp_path, fmnist_npz, tiny_space, "second", supernet=tmp_path / "first" / "supernet")
    assert run_search(again, trainer=counting_trainer, evaluator_factory=fake_factory([]))["evaluated"] == \
        summary["evaluated"]  # the same supernet by another path resumes (nothing left to spend)
    with pytest.raises(UserInputError, match="different supernet"):  # resuming must reuse the same supernet
        run_search(_opts(tmp_path, fmnist_npz, tiny_space, "second"), trainer=fake_trainer,
                   evaluator_factory=fake_factory([]))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**TINY_SPACE, "depths": [1]}))
    with pytest.raises(UserInputError, match="trained for another search space"):
        run_search(_opts(tmp_path, fmnist_npz, other, "third", supernet=tmp_path / "first"),
                   trainer=fake_trainer, evaluator_factory=fake_factory([]))
    assert not (tmp_path / "third").exists()
    with pytest.raises(UserInputError, match="no supernet there"):
        run_search(_opts(tmp_path, fmnist_npz, tiny_space, "fourth", supernet=tmp_path / "nowhere"),
                   trainer=fake_trainer, evaluator_factory=fake_factory([]))
