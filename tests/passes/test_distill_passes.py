"""The passes on DeiT-distilled models: quantization (re-parameterisation and weight edits through
the folded classifier), token merging (class and distillation tokens protected), pruning and
low-rank factorisation keep the distillation token and head, and the results lower."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from edgevit.data import ArrayDataset
from edgevit.lower import lower_float, lower_int8
from edgevit.lower.from_model import classifier
from edgevit.lower.from_quantized import quantize_weight
from edgevit.lower.reference import run_program
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from edgevit.passes.calibrate import collect_stats
from edgevit.passes.pipeline import run_pipeline
from edgevit.passes.reparam import FoldedHead, clip_weights, correct_biases, linear_inputs, reparam_layernorms
from tests.lower.int8_helpers import randomise


def deit_model(pool: str = "cls_dist", seed: int = 0, image_size: int = 8):
    spec = ViTSpec.uniform(depth=2, heads=2, head_dim=4, mlp_hidden=16, image_size=image_size, in_channels=1,
                           patch_size=2, embed_dim=8, num_classes=3, pool=pool, distill_token=True)
    return randomise(build_model(spec, seed=seed), seed)


def data(n: int = 48, seed: int = 0, size: int = 8) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 1, size, size), dtype=np.uint8), rng.integers(0, 3, n),
                        classes=["a", "b", "c"], name="synthetic")


def logits(model, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(model.preprocess.apply_torch(torch.from_numpy(images)))


# ---------------------------------------------------------------- the folded classifier

def test_folded_head_view_writes_back_exactly() -> None:
    model = deit_model()
    view = FoldedHead(model.head, model.head_dist)
    np.testing.assert_array_equal(view.weight.numpy(), classifier(model).weight)
    w = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    view.set_weight(w)
    assert torch.equal(view.weight, w) and torch.equal(model.head.weight, 2 * w[:, :8])
    b = torch.tensor([0.5, -1.0, 2.0])
    diff = model.head.bias - model.head_dist.bias
    view.set_bias(b)
    torch.testing.assert_close(view.bias, b)
    torch.testing.assert_close(model.head.bias - model.head_dist.bias, diff)  # both heads moved alike
    names = [(n, type(lin).__name__, x) for n, lin, x in linear_inputs(model)]
    assert names[-1] == ("head.weight", "FoldedHead", "normed.flat")
    assert [n for n, _, _ in linear_inputs(deit_model("cls"))][-1] == "head.weight"


def test_reparam_folds_the_final_norm_into_both_heads() -> None:
    model = deit_model(seed=2)
    images = data().images
    before = logits(model, images)
    stats = collect_stats(lower_float(model, fuse_gelu=False), images, model.preprocess)
    head_dist = model.head_dist.weight.clone()
    assert "normed" in reparam_layernorms(model, stats, alpha=1.0)
    assert not torch.equal(model.head_dist.weight, head_dist)
    torch.testing.assert_close(logits(model, images), before, rtol=1e-5, atol=1e-5)


def test_weight_edits_of_the_folded_head_survive_lowering() -> None:
    """4-bit clipping of the folded classifier leaves it on its 4-bit grid; the lowering's fold of the
    two edited heads recovers that grid (halves doubled then halved: exact); bias correction moves
    the folded bias as planned."""
    model = deit_model(seed=3)
    images = data().images
    stats = collect_stats(lower_float(model, fuse_gelu=False), images, model.preprocess, gram=True)
    bits = lambda n: 4 if n == "head.weight" else 8  # noqa: E731
    original = classifier(model).weight.copy()
    assert clip_weights(model, bits, stats, gptq=True) == ["head.weight"]
    folded = classifier(model).weight
    assert not np.array_equal(folded, original)
    wq, s = quantize_weight(folded, 4)
    np.testing.assert_allclose(wq * s[:, None], folded, rtol=0, atol=1e-6 * np.abs(folded).max())
    bias = classifier(model).bias.copy()
    correct_biases(model, bits, stats, {"head.weight": original})
    x_mean = stats["normed.flat"].ch_mean
    want = bias + (original.astype(np.float64) - wq * s[:, None]) @ x_mean
    np.testing.assert_allclose(classifier(model).bias, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pipeline", ["quant(w=8,a=8,calib=48)", "quant(w=4,calib=48,residual=int16)",
                                      "quant(w=mixed,flash_kb=7.8,calib=48)"])
def test_quant_pass_on_a_distilled_model(pipeline) -> None:
    model = deit_model(seed=4)
    calib = data()
    qmodel, (report,) = run_pipeline(model, pipeline, calib, eval_data=data(64, 1))
    assert report.details["weight_bits"]["head.weight"] == qmodel.config.bits_of("head.weight")
    if "w=4" in pipeline:
        assert qmodel.config.bits_of("head.weight") == 8 and qmodel.config.bits_of("blocks.0.attn.qkv.weight") == 4
    program = lower_int8(qmodel)
    program.validate()
    assert program.tensors["normed.flat"].shape == (1, 16)
    assert report.top1_after is not None and abs(report.top1_after - report.top1_before) <= 0.25


# ---------------------------------------------------------------- structural passes

def test_token_merging_protects_both_prefix_tokens() -> None:
    model = deit_model(seed=5, image_size=6)  # 9 patches + 2 prefix tokens = 11 tokens, 9 of them mergeable
    merged, (report,) = run_pipeline(model, "tome(r=5)", data(size=6))
    assert [b.merge_r for b in merged.spec.blocks] == [4, 2]  # (11 - 2) // 2, then (7 - 2) // 2: clamped
    assert merged.spec.tokens_per_block() == [11, 7, 5]
    assert sum("clamp" in n for n in report.notes) == 2, report.notes
    assert merged.blocks[0].merge.protect == 2
    x = np.random.default_rng(0).standard_normal((4, 1, 6, 6)).astype(np.float32)
    program = lower_float(merged)
    assert [k.attrs["protect"] for k in program.kernels if k.op == "token_merge"] == [2, 2]
    with torch.no_grad():
        ref = merged(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_program(program, {"image": x})["logits"], ref, rtol=1e-5, atol=1e-5)


def test_prune_and_lowrank_keep_the_distillation_token_and_head() -> None:
    model = deit_model(seed=6)
    out, _ = run_pipeline(model, "prune(heads=0.5,mlp=0.5,importance=magnitude),lowrank(ratio=0.5)", data())
    assert out.spec.distill_token and out.spec.pool == "cls_dist"
    assert [b.heads for b in out.spec.blocks] == [1, 1] and all(b.ranks for b in out.spec.blocks)
    for key in ("cls_token", "dist_token", "pos_embed", "head.weight", "head_dist.weight", "head_dist.bias"):
        assert torch.equal(out.state_dict()[key], model.state_dict()[key]), key
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = out(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_program(lower_float(out), {"image": x})["logits"], ref, rtol=1e-5, atol=1e-5)


def test_prune_finetune_trains_the_distilled_model() -> None:
    model = deit_model(seed=7)
    out, _ = run_pipeline(model, "prune(mlp=0.5,importance=activation,finetune=1,calib=48)", data())
    assert not torch.equal(out.dist_token, model.dist_token)  # the distillation token is a trained parameter
    assert not torch.equal(out.head_dist.weight, model.head_dist.weight)


def test_a_spec_with_merging_keeps_two_protected_tokens_after_prune() -> None:
    model = deit_model(seed=8)
    spec = model.spec.with_blocks([replace(model.spec.blocks[0], merge_r=4), model.spec.blocks[1]])
    merged = build_model(spec)
    merged.load_state_dict(model.state_dict())
    out, _ = run_pipeline(merged.eval(), "prune(blocks=1,importance=magnitude)", data())
    assert out.spec.depth == 1 and out.spec.num_prefix == 2
