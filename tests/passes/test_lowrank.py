"""The `lowrank` pass: SVD ranks by ratio / energy, recorded in the ViTSpec, two factors per layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgevit.errors import UserInputError
from edgevit.lower import lower_float
from edgevit.lower.reference import run_program
from edgevit.model.checkpoint import check_state_dict
from edgevit.model.counts import count_params
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import VisionTransformer, build_model
from edgevit.passes.lowrank import choose_rank, lowrank
from edgevit.passes.pipeline import parse_pipeline
from tests.lower.int8_helpers import randomise


@pytest.fixture
def model():
    spec = ViTSpec.uniform(depth=2, heads=2, head_dim=8, mlp_hidden=48, image_size=8, in_channels=1, patch_size=2,
                           embed_dim=16, num_classes=3, name="l")
    return randomise(build_model(spec, seed=0), 0)


def test_choose_rank():
    s = np.array([4.0, 2.0, 1.0, 1.0])  # energies 16, 4, 1, 1 of 22
    assert choose_rank(s, 0.5, None) == 2 and choose_rank(s, 0.01, None) == 1 and choose_rank(s, 1.0, None) == 4
    assert choose_rank(s, None, 16 / 22) == 1 and choose_rank(s, None, 0.9) == 2 and choose_rank(s, None, 1.0) == 4
    assert choose_rank(np.zeros(3), None, 0.9) == 1


def test_ratio_sets_ranks_in_the_spec_and_the_weights(model):
    out, report = lowrank(model, None, ratio=0.5)
    for b in out.spec.blocks:  # qkv 16->48: r 8; proj 16->16 stays dense; fc1 16->48: 8; fc2 48->16: 8
        assert b.ranks == {"qkv": 8, "fc1": 8, "fc2": 8}
    check_state_dict(VisionTransformer(out.spec), out.state_dict(), "lowrank")
    assert report.params_after == count_params(out.spec) < report.params_before
    assert any("proj: kept dense" in n for n in report.notes)
    assert report.details["ranks"][0] == {"qkv": 8, "fc1": 8, "fc2": 8}
    assert model.spec.blocks[0].ranks == {}  # input untouched


def test_exact_low_rank_weights_are_recovered_by_energy(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for blk in model.blocks:  # make fc1 exactly rank 3
            blk.mlp.fc1.weight.copy_(torch.randn(48, 3, generator=g) @ torch.randn(3, 16, generator=g) * 0.3)
    out, _ = lowrank(model, None, energy=0.999999, layers=["fc1"])
    assert [b.ranks for b in out.spec.blocks] == [{"fc1": 3}, {"fc1": 3}]
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    program = lower_float(out)  # the factorised layer lowers as two linear kernels
    assert {"blocks.0.mlp.fc1.a", "blocks.0.mlp.fc1.b"} <= {k.name for k in program.kernels}
    np.testing.assert_allclose(run_program(program, {"image": x})["logits"], ref, rtol=1e-4, atol=1e-4)


def test_refactorising_only_lowers_ranks(model):
    once, _ = lowrank(model, None, ratio=0.25, layers="mlp")
    assert once.spec.blocks[0].ranks == {"fc1": 4, "fc2": 4}
    again, _ = lowrank(once, None, ratio=0.5, layers="mlp")  # would be 8 > 4: kept at 4, weights unchanged
    assert again.spec == once.spec
    for k, v in once.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    lower, _ = lowrank(once, None, ratio=0.125, layers=["fc2"])
    assert lower.spec.blocks[0].ranks == {"fc1": 4, "fc2": 2}


def test_errors():
    model = build_model(ViTSpec.uniform(depth=1, heads=1, head_dim=4, mlp_hidden=8, image_size=4, in_channels=1,
                                        patch_size=2, embed_dim=4, num_classes=2), seed=0)
    with pytest.raises(UserInputError, match="give exactly one of ratio or energy"):
        lowrank(model, None)
    with pytest.raises(UserInputError, match="give exactly one of ratio or energy"):
        lowrank(model, None, ratio=0.5, energy=0.9)
    with pytest.raises(UserInputError, match=r"lowrank: ratio must be in \(0, 1\] \(got 1.5\)"):
        lowrank(model, None, ratio=1.5)
    with pytest.raises(UserInputError, match="layers must be all or attn or mlp"):
        parse_pipeline("lowrank(ratio=0.5,layers=[qkv,conv])")
    assert parse_pipeline("lowrank(energy=0.9,layers=[qkv,fc1])")[0][1]["layers"] == ["qkv", "fc1"]
    assert math.isclose(parse_pipeline("lowrank(ratio=1)")[0][1]["ratio"], 1.0)
