"""The `tome` pass: schedules recorded in the ViTSpec, clamping, identity at r = 0, MAC reduction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgevit.errors import UserInputError
from edgevit.model.counts import count_macs
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from edgevit.passes.pipeline import parse_pipeline, run_pipeline
from edgevit.passes.token_merge import requested_schedule, token_merge


@pytest.fixture
def model():
    spec = ViTSpec.uniform(depth=4, heads=2, head_dim=4, mlp_hidden=16, image_size=12, in_channels=1,
                           patch_size=2, embed_dim=8, num_classes=3, name="t")  # 36 patches + cls
    return build_model(spec, seed=0).eval()


def test_schedules():
    assert requested_schedule(4, 4, "constant") == [4, 4, 4, 4]
    assert requested_schedule(4, 8, "decreasing") == [12, 9, 6, 4]  # ToMe's parse_r with inflection -0.5
    assert requested_schedule(1, 8, "decreasing") == [8]
    assert requested_schedule(3, [5, 0, 2], "constant") == [5, 0, 2]
    with pytest.raises(UserInputError, match="r lists 2 values but the model has 3 blocks"):
        requested_schedule(3, [1, 2], "constant")
    with pytest.raises(UserInputError, match="schedule applies to an integer r"):
        requested_schedule(2, [1, 2], "decreasing")


def test_tome_records_the_schedule_and_cuts_macs(model):
    merged, report = token_merge(model, None, r=[6, 4, 2, 0])
    assert [b.merge_r for b in merged.spec.blocks] == [6, 4, 2, 0]
    assert merged.spec.tokens_per_block() == [37, 31, 27, 25, 25]
    assert report.macs_before == count_macs(model.spec) and report.macs_after == count_macs(merged.spec)
    assert report.macs_after < report.macs_before and report.params_after == report.params_before
    assert report.details["merge_r"] == [6, 4, 2, 0]
    assert [b.merge_r for b in model.spec.blocks] == [0, 0, 0, 0]  # input untouched
    x = torch.randn(3, 1, 12, 12)
    with torch.no_grad():
        assert merged(x).shape == (3, 3)


def test_r_is_clamped_to_what_a_block_can_merge(model):
    merged, report = token_merge(model, None, r=20)
    assert [b.merge_r for b in merged.spec.blocks] == [18, 9, 4, 2]
    assert merged.spec.tokens_per_block()[-1] == 4
    assert any("block 0: r 20 clamped to 18" in n for n in report.notes)


def test_r_zero_is_the_identity(model):
    same, report = token_merge(model, None, r=0)
    assert same.spec == model.spec and report.macs_after == report.macs_before
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(same(x), model(x))
    merged, _ = token_merge(model, None, r=4)
    undone, _ = token_merge(merged, None, r=0)  # a later tome replaces the schedule
    assert undone.spec == model.spec


def test_pipeline_strings_and_errors(model):
    assert parse_pipeline("tome(r=[3,2,1,0])")[0][1] == {"r": [3, 2, 1, 0], "schedule": "constant",
                                                              "mac_cut": 0.0, "calib": 256}
    assert parse_pipeline("tome(r=4,schedule=decreasing)")[0][1] == {"r": 4, "schedule": "decreasing",
                                                                      "mac_cut": 0.0, "calib": 256}
    for text, needle in [("tome(r=-1)", "tome: r must be an integer >= 0"), ("tome(r=[1,x])", "tome: r must be"),
                         ("tome(schedule=linear)", "schedule must be one of constant, decreasing"),
                         ("tome(r=[])", "tome: r must be")]:
        with pytest.raises(UserInputError, match=needle.replace("[", r"\[")):
            parse_pipeline(text)
    out, [report] = run_pipeline(model, "tome(r=[3,2,1,0])", calib=None)
    assert [b.merge_r for b in out.spec.blocks] == [3, 2, 1, 0] and report.name == "tome"


ZOO = Path(__file__).resolve().parents[2] / "models" / "fmnist-tiny"


@pytest.mark.skipif(not (ZOO / "model.safetensors").exists(), reason="zoo model not trained")
def test_eval_with_tome_reports_the_merged_macs():
    from edgevit.passes.evaluate import evaluate_checkpoint

    base = evaluate_checkpoint(ZOO, "fashion-mnist", limit=200)
    merged = evaluate_checkpoint(ZOO, "fashion-mnist", limit=200, passes="tome(r=8)")
    assert base["macs"] / merged["macs"] > 1.4  # 50 tokens -> 42, 34, 26, 18 after the blocks
    assert merged["reports"][0]["details"]["tokens"] == [50, 42, 34, 26, 18]
    assert merged["top1"] >= base["top1"] - 0.05  # training-free; measured -0.8 pt on 2000 test images
