"""A calibrated token-merging schedule: which blocks merge how many tokens for a given MAC cut.

ToMe's constant and decreasing schedules merge in every block, yet the first blocks of a small ViT
are the most sensitive (on fmnist-small, merging 8 tokens in blocks 2-5 and none in blocks 0-1
costs less accuracy than r=3 everywhere for more MACs saved). `calibrated_schedule` finds a
per-block schedule greedily, still without training:

    start with r = 0 in every block; while MACs > MACs(unmerged) / mac_cut:
        for every block that can merge one more token, try r_i + 1 and measure how far the
        logits move from the unmerged model's on the calibration images (mean KL divergence);
        keep the step with the least added divergence per MAC saved.

Each trial is one forward pass over the calibration images (256 by default), so a 6-block model
needs a few hundred forwards (about a minute on 2 cores for fmnist-small). The result is a plain
list of r per block, reproducible with `tome(r=[...])`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F

from edgevit.data import ArrayDataset
from edgevit.model.counts import count_macs
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import VisionTransformer, build_like


def with_merge(spec: ViTSpec, rs: list[int]) -> ViTSpec:
    """`spec` with blocks[i].merge_r = rs[i]."""
    return spec.with_blocks([replace(b, merge_r=r) for b, r in zip(spec.blocks, rs)])


def grown(spec: ViTSpec, rs: list[int], block: int) -> list[int] | None:
    """`rs` with one more token merged in `block`, later blocks clamped to what they can still merge.

    Every block keeps r <= (N - prefix) // 2 of the N tokens entering it; None if `block` cannot grow.
    """
    trial, n = list(rs), spec.num_patches + spec.num_prefix
    trial[block] += 1
    for i, r in enumerate(trial):
        limit = (n - spec.num_prefix) // 2
        if r > limit:
            if i == block:
                return None
            trial[i] = limit
        n -= trial[i]
    return trial


def log_probs(model: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """Log-softmax of `model` on preprocessed images [N, C, H, W] -> [N, classes]."""
    with torch.inference_mode():
        return F.log_softmax(model(images), dim=1)


def divergence(model: VisionTransformer, spec: ViTSpec, images: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean KL(ref || merged) over the calibration images for `model`'s weights under `spec`."""
    merged = build_like(model, spec)
    return float(F.kl_div(log_probs(merged, images), ref, log_target=True, reduction="batchmean"))


def calibrated_schedule(model: VisionTransformer, calib: ArrayDataset, mac_cut: float,
                        say: Callable[[str], None] = lambda _: None) -> tuple[list[int], float]:
    """Greedy per-block merge counts reaching MACs(unmerged) / mac_cut; returns (rs, final divergence).

    `calib` holds uint8 images [N, C, H, W] at the model's input size. If no block can merge
    further before the cut is reached, returns the most merged schedule found (the caller notes it).
    """
    spec = with_merge(model.spec, [0] * model.spec.depth)
    images = model.preprocess.apply_torch(torch.from_numpy(calib.images))
    ref = log_probs(build_like(model, spec), images)
    target, rs, kl = count_macs(spec) / mac_cut, [0] * spec.depth, 0.0
    macs = count_macs(spec)
    while macs > target:
        best = None
        for i in range(spec.depth):
            trial = grown(spec, rs, i)
            trial_spec = None if trial is None else with_merge(spec, trial)
            saved = 0 if trial is None else macs - count_macs(trial_spec)
            if saved <= 0:
                continue
            d = divergence(model, trial_spec, images, ref)
            score = (max(d - kl, 0.0) / saved, -saved)  # ties (free steps): the larger saving
            if best is None or score < best[0]:
                best = (score, trial, d, count_macs(trial_spec))
        if best is None:
            break
        _, rs, kl, macs = best
        say(f"merge_r {rs}: MACs /{count_macs(spec) / macs:.3f}, KL {kl:.4f}")
    return rs, kl
