"""The `prune` pass: importance kinds, non-uniform per-block results in the ViTSpec, weight surgery, recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgevit.data import ArrayDataset
from edgevit.errors import UserInputError
from edgevit.model.checkpoint import check_state_dict
from edgevit.model.counts import count_macs, count_params
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.model.vit import VisionTransformer, build_model
from edgevit.passes.prune import choose_removals, compute_importance, pruned_model, prune
from tests.lower.int8_helpers import randomise


def small_spec(ranks=None) -> ViTSpec:
    blocks = [BlockSpec(heads=4, head_dim=4, mlp_hidden=24, ranks=dict(ranks or {})) for _ in range(3)]
    return ViTSpec(image_size=8, in_channels=1, patch_size=2, embed_dim=12, num_classes=3, blocks=tuple(blocks),
                   name="p")


def synthetic(n: int = 96, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = (rng.integers(0, 60, (n, 1, 8, 8)) + 60 * labels[:, None, None, None]).astype(np.uint8)
    return ArrayDataset(images, labels, classes=["a", "b", "c"], name="synthetic")


def logits(model, x):
    with torch.no_grad():
        return model(x)


def silence_head(model: VisionTransformer, block: int, head: int) -> None:
    """Zero one head's proj columns: it then contributes nothing (and should be pruned first)."""
    hd = model.blocks[block].attn.head_dim
    with torch.no_grad():
        model.blocks[block].attn.proj.weight[:, head * hd:(head + 1) * hd] = 0


@pytest.mark.parametrize("importance", ["magnitude", "activation", "taylor"])
def test_a_silent_head_and_channel_score_lowest(importance):
    model = randomise(build_model(small_spec(), seed=1), 1)
    silence_head(model, 1, 2)
    with torch.no_grad():
        model.blocks[2].mlp.fc2.weight[:, 5] = 0
    imp = compute_importance(model, importance, synthetic())
    assert imp.heads[1][2] == min(float(h.min()) for h in imp.heads)
    assert imp.mlp[2][5] == min(float(m.min()) for m in imp.mlp)
    assert len(imp.blocks) == 3 and np.all(np.isfinite(imp.blocks))


def test_pruned_model_is_the_original_with_slices_removed():
    model = randomise(build_model(small_spec(), seed=2), 2)
    silence_head(model, 0, 1)
    with torch.no_grad():
        model.blocks[1].mlp.fc2.weight[:, [3, 7]] = 0
    cut = pruned_model(model, set(), [{1}, set(), set()], [set(), {3, 7}, set()])
    assert [b.heads for b in cut.spec.blocks] == [3, 4, 4] and [b.mlp_hidden for b in cut.spec.blocks] == [24, 22, 24]
    check_state_dict(VisionTransformer(cut.spec), cut.state_dict(), "pruned")
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(logits(cut, x), logits(model, x), rtol=1e-5, atol=1e-5)  # silent parts only


def test_low_rank_factors_are_sliced_too():
    model = randomise(build_model(small_spec({"qkv": 5, "proj": 3, "fc1": 4, "fc2": 6}), seed=3), 3)
    silence = model.blocks[0].attn.proj.a.weight
    with torch.no_grad():
        silence[:, 4:8] = 0  # head 1 of block 0 feeds nothing into proj
    cut = pruned_model(model, set(), [{1}, set(), set()], [set(), set(), set()])
    assert cut.spec.blocks[0].heads == 3 and cut.spec.blocks[0].ranks == model.spec.blocks[0].ranks
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(logits(cut, x), logits(model, x), rtol=1e-5, atol=1e-5)


def test_global_selection_is_non_uniform_and_keeps_one_per_block():
    scores = [np.array([5.0, 6.0, 7.0]), np.array([0.1, 0.2, 0.3]), np.array([1.0, 9.0])]
    assert choose_removals(scores, 0.375, "global") == [set(), {0, 1}, {0}]  # 3 of 8: not 0.3 (block 1 keeps one)
    assert choose_removals(scores, 0.9, "global") == [{0, 1}, {0, 1}, {0}]  # never the last one of a block
    assert choose_removals(scores, 0.34, "block") == [{0}, {0}, {0}]
    assert choose_removals(scores, 0.0, "global") == [set(), set(), set()]


def test_prune_pass_writes_the_spec_and_counts():
    model = randomise(build_model(small_spec(), seed=4), 4)
    data = synthetic()
    out, report = prune(model, data, heads=0.25, mlp=0.3, blocks=1, importance="taylor", calib=64)
    assert out.spec.depth == 2 and sum(b.heads for b in out.spec.blocks) == 8 - round(0.25 * 8)
    assert sum(b.mlp_hidden for b in out.spec.blocks) == 48 - round(0.3 * 48)
    check_state_dict(VisionTransformer(out.spec), out.state_dict(), "pruned")
    assert report.macs_after == count_macs(out.spec) < report.macs_before == count_macs(model.spec)
    assert report.params_after == count_params(out.spec) == out.num_params()
    assert len(report.details["removed_blocks"]) == 1 and report.details["heads"] == [b.heads for b in out.spec.blocks]
    assert model.spec == small_spec()  # input untouched


def test_finetune_recovers_with_distillation_and_returns_an_eval_model():
    model = randomise(build_model(small_spec(), seed=5), 5)
    data = synthetic(256)
    x = model.preprocess.apply_torch(torch.from_numpy(data.images))

    def kl_to_teacher(student) -> float:
        t, s = logits(model, x).log_softmax(1), logits(student, x).log_softmax(1)
        return float((t.exp() * (t - s)).sum(1).mean())

    plain, _ = prune(model, data, heads=0.5, mlp=0.5, importance="magnitude")
    tuned, report = prune(model, data, eval_data=data, heads=0.5, mlp=0.5, importance="magnitude", finetune=3, lr=2e-3)
    assert tuned.spec == plain.spec and not tuned.training
    assert kl_to_teacher(tuned) < 0.5 * kl_to_teacher(plain)  # measured: 0.04 vs 0.21
    assert report.top1_before is not None and report.top1_after is not None
    assert model.spec == small_spec()


def test_option_errors():
    model = build_model(small_spec(), seed=0)
    with pytest.raises(UserInputError, match=r"prune: heads is a fraction in \[0, 1\) \(got 1.0\)"):
        prune(model, None, heads=1.0, importance="magnitude")
    with pytest.raises(UserInputError, match="prune: blocks=3 would remove all 3 blocks"):
        prune(model, None, blocks=3, importance="magnitude")
    with pytest.raises(UserInputError, match="importance=taylor needs calibration images"):
        prune(model, None, heads=0.5)
    with pytest.raises(UserInputError, match="finetune needs training images"):
        prune(model, None, heads=0.5, importance="magnitude", finetune=1)
