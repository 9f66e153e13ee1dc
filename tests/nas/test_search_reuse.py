"""`edgevit search --max-sram` (a tighter SRAM limit) and `--supernet` (reuse a trained supernet)."""

from __future__ import annotations

import json

import pytest
import yaml

from edgevit.errors import UserInputError
from edgevit.nas.reuse import limit_sram, parse_max_sram
from edgevit.nas.search import SearchOptions, run_search
from edgevit.profiles.profile import load_profile
from tests.nas.test_search_cli import TINY_SPACE, fake_factory, fake_trainer, fmnist_npz, tiny_space  # noqa: F401


def test_max_sram_parses_sizes_and_names_the_option():
    assert parse_max_sram("24KiB") == 24 * 1024 and parse_max_sram("24576") == 24576 and parse_max_sram(None) is None
    with pytest.raises(UserInputError, match="--max-sram 'lots'"):
        parse_max_sram("lots")


def test_limit_sram_lowers_only_the_sram_budget():
    p = load_profile("stm32f746-disco")
    q = limit_sram(p, 20_000)
    assert q.sram_bytes == 20_000 and q.flash_bytes == p.flash_bytes and p.sram_bytes == 320 * 1024
    assert limit_sram(p, None) is p
    with pytest.raises(UserInputError, match="more than stm32f746-disco's SRAM"):
        limit_sram(p, p.sram_bytes + 1)


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
