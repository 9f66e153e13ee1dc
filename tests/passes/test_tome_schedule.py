"""`tome(mac_cut=X)`: the calibrated per-block schedule reaches the cut, spends free merges first, clamps
later blocks, and misuse gives clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.data import ArrayDataset
from edgevit.errors import UserInputError
from edgevit.model.counts import count_macs
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from edgevit.passes.pipeline import run_pipeline
from edgevit.passes.token_merge import token_merge
from edgevit.passes.tome_schedule import calibrated_schedule, grown
from tests.lower.int8_helpers import randomise


@pytest.fixture
def model():
    spec = ViTSpec.uniform(depth=3, heads=2, head_dim=4, mlp_hidden=16, image_size=12, in_channels=1,
                           patch_size=2, embed_dim=8, num_classes=3, name="t")  # 36 patches + cls
    return randomise(build_model(spec, seed=0), 0).eval()


@pytest.fixture
def calib():
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (32, 1, 12, 12), dtype=np.uint8), rng.integers(0, 3, 32),
                        classes=["a", "b", "c"], name="syn")


def test_grown_clamps_later_blocks_and_stops_at_the_limit(model):
    spec = model.spec  # 37 tokens enter block 0: it can merge up to 18
    assert grown(spec, [0, 0, 0], 1) == [0, 1, 0]
    assert grown(spec, [17, 0, 0], 0) == [18, 0, 0]
    assert grown(spec, [18, 0, 0], 0) is None
    assert grown(spec, [8, 0, 14], 0) == [9, 0, 13]  # 28 tokens reach block 2: at most 13 there


@pytest.mark.parametrize("cut", [1.15, 1.4])
def test_the_schedule_reaches_the_cut(model, calib, cut):
    rs, kl = calibrated_schedule(model, calib, cut)
    merged, report = token_merge(model, calib, mac_cut=cut, calib=32)
    assert [b.merge_r for b in merged.spec.blocks] == rs
    assert count_macs(model.spec) / count_macs(merged.spec) >= cut and kl >= 0.0
    assert report.options == {"mac_cut": cut, "calib": 32}
    assert any(f"tome(r=[{','.join(map(str, rs))}])" in n for n in report.notes)


def test_free_merges_come_first(calib):
    """With a class-token head, merging after the last block's attention cannot change the logits
    (a wide MLP, so one merged token saves more MACs than the matching costs)."""
    spec = ViTSpec.uniform(depth=3, heads=2, head_dim=8, mlp_hidden=256, image_size=12, in_channels=1,
                           patch_size=2, embed_dim=16, num_classes=3, name="w")
    model, steps = randomise(build_model(spec, seed=0), 0).eval(), []
    rs, kl = calibrated_schedule(model, calib, 1.02, steps.append)
    assert rs[:-1] == [0, 0] and rs[-1] > 0 and kl == pytest.approx(0.0, abs=1e-9)
    assert steps and steps[0].startswith("merge_r [0, 0, 1]")


def test_a_cut_beyond_reach_returns_the_most_merged_schedule(model, calib):
    rs, _ = calibrated_schedule(model, calib, 50.0)
    assert all(grown(model.spec, rs, i) is None for i in range(3))


def test_misuse_is_named(model, calib):
    with pytest.raises(UserInputError, match="either mac_cut .* or r/schedule"):
        run_pipeline(model, "tome(mac_cut=1.3,r=2)", calib)
    with pytest.raises(UserInputError, match="mac_cut=1.0 must be above 1"):
        run_pipeline(model, "tome(mac_cut=1)", calib)
    with pytest.raises(UserInputError, match="mac_cut needs calibration images"):
        run_pipeline(model, "tome(mac_cut=1.3)", None)
