"""Supernet: slices == extracted standalone models (exactly), low-rank inheritance, sandwich training,
checkpoint/resume, and extracted models as normal checkpoints."""

from __future__ import annotations

import pickle
import random
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.data import compute_normalization
from edgevit.data.dataset import ArrayDataset, DatasetSplits
from edgevit.data.normalize import Normalization
from edgevit.data.resize import resize_dataset, resize_tensor
from edgevit.errors import CheckpointError, SpecError
from edgevit.model.checkpoint import load_checkpoint, save_checkpoint
from edgevit.model.evaluate import accuracy
from edgevit.nas.space import SearchSpace
from edgevit.nas.supernet import (Supernet, SupernetConfig, load_supernet, subnet_accuracy, supernet_info,
                                  train_supernet)
from edgevit.nas.supernet_train import STATE_FILE, dense

NORM = Normalization(mean=(0.4,), std=(0.25,))


def tiny_space(num_classes: int = 3) -> SearchSpace:
    """embed [16, 24], depth [1, 2], heads [1, 2] x 8, images [16, 12], patch 4, merge and low-rank choices."""
    return SearchSpace(in_channels=1, num_classes=num_classes, pool="cls", image_sizes=(16, 12), patch_sizes=(4,),
                       embed_dims=(16, 24), depths=(1, 2), heads=(1, 2), head_dim=8, mlp_ratios=(1.0, 2.0),
                       lowrank_ratios=(1.0, 0.5), merge_rs=(0, 2), name="tiny")


def perturbed_supernet(space: SearchSpace, seed: int = 0) -> Supernet:
    """A supernet whose every weight (norms and biases too) is random, so a wrong slice shows."""
    sn = Supernet(space, NORM, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sn.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return sn.eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on the busy 2-core machine two threads are many times slower for these tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return tiny_space()


@pytest.fixture(scope="module")
def supernet(space) -> Supernet:
    return perturbed_supernet(space)


def images(n: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 1, size, size), dtype=np.uint8))


def extracted_logits(model, x: torch.Tensor) -> torch.Tensor:
    return model(model.preprocess.apply_torch(resize_tensor(x, model.spec.image_size)))


def merged_lowrank_specs(space: SearchSpace):
    """Specs with token merging and low-rank blocks at both resolutions (asserted, so the test covers them)."""
    specs = [space.build(16, 4, 24, [(2, 2.0, 0.5, 2), (1, 1.0, 1.0, 2)]),
             space.build(12, 4, 16, [(1, 2.0, 0.5, 0), (2, 1.0, 0.5, 2)]),
             space.build(16, 4, 16, [(2, 1.0, 1.0, 2)])]
    assert any(b.merge_r for s in specs for b in s.blocks) and any(b.ranks for s in specs for b in s.blocks)
    return specs


# ---- slices == extracted model ------------------------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_subnet_equals_extracted_model_exactly(space, supernet, seed):
    spec = space.sample(random.Random(seed))
    x = images(5, seed=seed % 1000)
    with torch.no_grad():
        got = supernet(x, spec)
        want = extracted_logits(supernet.extract(spec), x)
    assert got.shape == (5, 3)
    assert torch.equal(got, want)


@pytest.mark.parametrize("index", range(3))
def test_merged_and_lowrank_subnets_equal_extracted_model_exactly(space, supernet, index):
    spec = merged_lowrank_specs(space)[index]
    x = images(7, seed=index)
    got = supernet(x, spec)  # with autograd on, as in training
    want = extracted_logits(supernet.extract(spec), x)
    assert torch.equal(got.detach(), want.detach())


def test_extracted_weights_are_the_leading_slices(space, supernet):
    """qkv keeps the first heads of each of the q, k, v sections; other linears leading rows / columns."""
    spec = space.build(12, 4, 16, [(1, 1.0, 1.0, 0), (2, 2.0, 1.0, 0)])
    state = supernet.extract(spec).state_dict()
    blk, big = supernet.blocks[0], supernet.attn_dim  # 16 = 2 heads x 8
    qkv = blk.qkv.weight.detach()
    want = torch.cat([qkv[0:8, :16], qkv[big:big + 8, :16], qkv[2 * big:2 * big + 8, :16]])
    assert torch.equal(state["blocks.0.attn.qkv.weight"], want)
    assert torch.equal(state["blocks.0.attn.qkv.bias"], torch.cat([blk.qkv.bias[i * big:i * big + 8] for i in range(3)]))
    assert torch.equal(state["blocks.0.attn.proj.weight"], blk.proj.weight[:16, :8])
    assert torch.equal(state["blocks.1.mlp.fc1.weight"], supernet.blocks[1].fc1.weight[:32, :16])
    assert torch.equal(state["blocks.1.mlp.fc2.weight"], supernet.blocks[1].fc2.weight[:16, :32])
    assert torch.equal(state["pos_embed"], supernet.pos_embeds["g3"][:, :, :16])
    assert torch.equal(state["patch_embed.proj.weight"], supernet.patch_embeds["p4"].weight[:16])
    assert torch.equal(state["head.weight"], supernet.head.weight[:, :16])


def test_largest_extracts_the_whole_supernet(space, supernet):
    state = supernet.extract(space.largest()).state_dict()
    for i, blk in enumerate(supernet.blocks):
        assert torch.equal(state[f"blocks.{i}.attn.qkv.weight"], blk.qkv.weight)
        assert torch.equal(state[f"blocks.{i}.mlp.fc1.weight"], blk.fc1.weight)


def test_lowrank_subnet_inherits_the_lowrank_pass_factorisation(space, supernet):
    """A ratio-0.5 spec extracted == the dense spec extracted, then passes.lowrank(ratio=0.5): same ranks and weights."""
    from edgevit.passes.lowrank import lowrank

    spec = space.build(16, 4, 24, [(2, 2.0, 0.5, 0), (2, 1.0, 0.5, 0)])
    assert all(b.ranks for b in spec.blocks)
    via_pass, _ = lowrank(supernet.extract(dense(spec)), ratio=0.5)
    direct = supernet.extract(spec)
    assert via_pass.spec.blocks == direct.spec.blocks
    a, b = via_pass.state_dict(), direct.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_spec_outside_the_supernet_is_a_spec_error(space, supernet):
    spec = space.largest()
    bad = spec.with_blocks([type(b)(heads=b.heads, head_dim=4, mlp_hidden=b.mlp_hidden) for b in spec.blocks])
    with pytest.raises(SpecError, match="head_dim"):
        supernet(images(), bad)
    wide = space.build(16, 4, 24, [(2, 2.0, 1.0, 0)])
    too_wide = wide.with_blocks([type(wide.blocks[0])(heads=2, head_dim=8, mlp_hidden=64)])
    with pytest.raises(SpecError, match="mlp_hidden"):
        supernet(images(), too_wide)


def test_subnet_accuracy_matches_the_extracted_model(space, supernet):
    rng = np.random.default_rng(1)
    ds = ArrayDataset(rng.integers(0, 256, (70, 1, 16, 16), dtype=np.uint8), rng.integers(0, 3, 70), ["a", "b", "c"])
    for spec in merged_lowrank_specs(space):
        model = supernet.extract(spec)
        want = accuracy(model, resize_dataset(ds, spec.image_size))
        assert subnet_accuracy(supernet, spec, ds, batch_size=32) == pytest.approx(want, abs=1e-12)
        assert subnet_accuracy(supernet, spec, ds, limit=10) == accuracy(model, resize_dataset(ds.take(10), spec.image_size))


def test_save_load_and_payload_round_trip(space, supernet, tmp_path):
    from edgevit.nas.supernet import save_supernet

    save_supernet(supernet, tmp_path, info={"step": 7})
    again = load_supernet(tmp_path)
    shipped = Supernet.from_payload(pickle.loads(pickle.dumps(supernet.to_payload())))
    spec = merged_lowrank_specs(space)[0]
    x = images()
    with torch.no_grad():
        ref = supernet(x, spec)
        assert torch.equal(again(x, spec), ref) and torch.equal(shipped(x, spec), ref)
    assert again.space == space and supernet_info(tmp_path)["step"] == 7
    with pytest.raises(CheckpointError, match="no supernet"):
        load_supernet(tmp_path / "missing")


# ---- extracted model = a normal checkpoint ---------------------------------------------------------
def test_extracted_model_round_trips_and_fine_tunes_from_init(tmp_path, synthetic_npz):
    from edgevit.model.train import TrainConfig, train_model

    space = tiny_space(num_classes=10)  # synthetic_npz: 28x28, 10 classes; train resizes down to 16 / 12
    sn = perturbed_supernet(space, seed=3)
    spec = merged_lowrank_specs(space)[1]
    model = sn.extract(spec)
    save_checkpoint(model, tmp_path / "sub")
    loaded = load_checkpoint(tmp_path / "sub")
    assert loaded.spec == spec and loaded.preprocess == NORM
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = images(4, size=28)
    with torch.no_grad():
        assert torch.equal(extracted_logits(loaded, x), sn(x, spec))
    metrics = train_model(tmp_path / "sub" / "spec.yaml", str(synthetic_npz), tmp_path / "ft",
                          TrainConfig(epochs=1, batch_size=64, seed=0), init=tmp_path / "sub")
    assert 0.0 <= metrics["test_top1"] <= 1.0
    assert load_checkpoint(tmp_path / "ft").spec == spec


# ---- training ----------------------------------------------------------------------------------------
def pattern_splits(n_train: int = 256, seed: int = 0) -> DatasetSplits:
    """3 learnable classes on 16x16: a bright band in the top, middle or bottom rows, plus noise."""
    def make(n: int, s: int) -> ArrayDataset:
        rng = np.random.default_rng(s)
        labels = rng.integers(0, 3, n)
        x = rng.integers(0, 90, (n, 1, 16, 16))
        for i, c in enumerate(labels):
            x[i, 0, 5 * c:5 * c + 5] += 150
        return ArrayDataset(x.clip(0, 255).astype(np.uint8), labels, ["top", "mid", "bottom"], f"pattern{s}")
    return DatasetSplits("pattern", make(n_train, seed), make(64, seed + 1), make(64, seed + 2))


def mean_loss(sn: Supernet, spec, ds: ArrayDataset) -> float:
    with torch.no_grad():
        logits = sn(torch.from_numpy(ds.images), spec)
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(ds.labels)))


def test_sandwich_steps_reduce_the_loss(space, tmp_path):
    splits = pattern_splits()
    cfg = SupernetConfig(epochs=6, batch_size=32, lr=3e-3, shift=0, seed=1)  # 48 steps
    start = Supernet(space, compute_normalization(splits.train), seed=cfg.seed).eval()
    seen = []
    trained = train_supernet(space, splits, tmp_path, cfg, progress=lambda s, t, loss: seen.append((s, t)))
    assert seen[-1] == (48, 48)
    for spec in (space.largest(), merged_lowrank_specs(space)[0]):
        before, after = mean_loss(start, spec, splits.val), mean_loss(trained, spec, splits.val)
        assert after < 0.6 * before, (spec.name, before, after)
        assert subnet_accuracy(trained, spec, splits.val) > 0.9
    # the smallest subnet learns slowest (its slices get a small share of every update), but it learns
    assert mean_loss(trained, space.smallest(), splits.val) < mean_loss(start, space.smallest(), splits.val)
    info = supernet_info(tmp_path)
    assert info["step"] == 48 and info["stopped"] == "epochs"


class Interrupt(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_run(space, tmp_path):
    splits = pattern_splits(96)
    cfg = SupernetConfig(epochs=3, batch_size=32, checkpoint_every=4, seed=2, distill=True, distill_start=0.3)  # 9 steps
    whole = train_supernet(space, splits, tmp_path / "whole", cfg)

    def stop_at_6(step, total, loss):
        if step == 6:
            raise Interrupt  # killed after the step-4 checkpoint

    with pytest.raises(Interrupt):
        train_supernet(space, splits, tmp_path / "cut", cfg, progress=stop_at_6)
    assert supernet_info(tmp_path / "cut")["step"] == 4
    steps = []
    resumed = train_supernet(space, splits, tmp_path / "cut", cfg, progress=lambda s, t, loss: steps.append(s))
    assert steps == [5, 6, 7, 8, 9]
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    # a finished run is returned as is; another config in the same directory is refused
    again = train_supernet(space, splits, tmp_path / "cut", cfg, progress=lambda *a: steps.append(-1))
    assert steps[-1] == 9 and torch.equal(again.head.weight, resumed.head.weight)
    with pytest.raises(CheckpointError, match="config.lr"):
        train_supernet(space, splits, tmp_path / "cut", SupernetConfig(epochs=3, batch_size=32, seed=2, distill=True, distill_start=0.3, lr=5e-3))


def test_inconsistent_checkpoint_is_refused(space, tmp_path):
    splits = pattern_splits(64)
    cfg = SupernetConfig(epochs=2, batch_size=32, checkpoint_every=1)

    def stop_at_2(step, total, loss):
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_supernet(space, splits, tmp_path, cfg, progress=stop_at_2)
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    state["step"] = 99
    torch.save(state, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError, match="does not match"):
        train_supernet(space, splits, tmp_path, cfg)


def test_time_budget_stops_early_with_a_planned_schedule(space, tmp_path):
    splits = pattern_splits(256)
    cfg = SupernetConfig(epochs=1000, batch_size=32, timing_steps=3)
    t0 = time.monotonic()
    train_supernet(space, splits, tmp_path, cfg, time_budget_s=6.0)
    elapsed = time.monotonic() - t0
    info = supernet_info(tmp_path)
    assert info["stopped"] == "time budget"
    assert 3 < info["step"] < 8000 and info["total_steps"] < 8000  # re-planned far below epochs * 8
    assert elapsed < 6.0 + 5.0  # a step of this space is milliseconds; slack for a loaded machine
