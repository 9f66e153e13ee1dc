"""Supernet training: the sandwich rule, in-place distillation, a time budget, checkpoints, resume.

Every step takes one batch (uint8 images at the dataset's size, random shift, no flip by default)
and trains several sub-networks on it, accumulating their gradients before one AdamW step:
the space's largest spec, its smallest and `random_subnets` random samples (the sandwich rule).
All are trained DENSE: sampled low-rank ratios are stripped (a factorised subnet inherits the
truncated SVD of its dense slices at evaluation), token merging (merge_r) is kept. The largest
learns from the labels (cross-entropy with label smoothing); with `distill` the others learn from
the largest's soft labels (in-place distillation) after the first `distill_start` of the steps, from
the labels before. Each loss is divided by the number of subnets.

Determinism: the batch order of epoch e comes from seed (seed, e), the augmentation and the
random subnets of step t from seeds derived from (seed, t), so a run is a pure function of
(space, data, config, step) and resuming from a checkpoint reproduces the uninterrupted run.

Run directory `out`: `supernet.safetensors` (weights + space + preprocess + info, see
`edgevit.nas.supernet.save_supernet`) and `supernet_state.pt` (optimizer, step, total steps,
history, the run's identity), both written atomically every `checkpoint_every` steps and at the end.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edgevit.atomic_write import make_dir, write_file_atomically
from edgevit.data import compute_normalization
from edgevit.data.dataset import ArrayDataset, DatasetSplits
from edgevit.errors import CheckpointError, UserInputError
from edgevit.model.spec import ViTSpec
from edgevit.model.train import augment, param_groups
from edgevit.nas.supernet import WEIGHTS_FILE, Supernet, SupernetConfig, save_supernet, supernet_info

STATE_FILE = "supernet_state.pt"
REPLAN_EVERY = 20  # steps between re-estimates of the total from the measured step time
TIMING_WINDOW = 100  # the step time is the mean over this many most recent steps
BUDGET_RESERVE_S = 2.0  # seconds of the budget kept for the final checkpoint


def dense(spec: ViTSpec) -> ViTSpec:
    """`spec` with every block's low-rank ranks removed (what the sandwich sampler trains)."""
    if not any(b.ranks for b in spec.blocks):
        return spec
    return spec.with_blocks([replace(b, ranks={}) for b in spec.blocks])


def sandwich_specs(space, n_random: int, rng: random.Random) -> list[ViTSpec]:
    """[largest, smallest, n_random samples], all dense; the largest first (the distillation teacher)."""
    specs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]
    return [dense(s) for s in specs]


def lr_factor(step: int, total: int, warmup_frac: float) -> float:
    """LR multiplier at `step` of `total`: linear warm-up over warmup_frac*total steps, then cosine to 0
    (the shape of `edgevit.model.train.make_scheduler`'s cosine schedule)."""
    warm = max(1, round(warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum(p * log_softmax(logits)): logits [B, K], target_probs [B, K]."""
    return -(target_probs * logits.log_softmax(dim=1)).sum(dim=1).mean()


def sandwich_step(sn: Supernet, opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
                  specs: list[ViTSpec], cfg: SupernetConfig, lr: float, distill: bool) -> list[float]:
    """One optimizer step over `specs` on uint8 images [B, C, H, W] and labels [B]; returns each subnet's loss.

    specs[0] learns from the labels; the others from its soft labels if `distill`, else from the labels.
    """
    opt.zero_grad(set_to_none=True)
    hard = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    teacher, losses = None, []
    for i, spec in enumerate(specs):
        logits = sn(images, spec)
        loss = hard(logits, labels) if teacher is None else soft_cross_entropy(logits, teacher)
        if i == 0 and distill:
            teacher = logits.detach().softmax(dim=1)
        (loss / len(specs)).backward()
        losses.append(loss.item())
    nn.utils.clip_grad_norm_(sn.parameters(), cfg.clip_grad)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    return losses


class BatchPlan:
    """Batches of `train` by global step: epoch = step // steps_per_epoch, seeded order per epoch."""

    def __init__(self, train: ArrayDataset, batch_size: int, seed: int) -> None:
        self.images, self.labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = math.ceil(len(train) / batch_size)
        self._epoch, self._order = -1, None

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images [b, C, H, W], labels [b]) of global step `step`."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            self._epoch, self._order = epoch, torch.randperm(len(self.labels), generator=gen)
        idx = self._order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.images[idx], self.labels[idx]


class StepClock:
    """Turns a time budget into a total step count. Times this session's steps (the first one is
    warm-up and not timed); after `timing_steps` timed steps and every REPLAN_EVERY steps after that,
    re-plans total = min(planned, step + steps that fit in the remaining budget) at the mean time of
    the last TIMING_WINDOW steps."""

    def __init__(self, deadline: float | None, planned: int, timing_steps: int) -> None:
        self.deadline, self.planned, self.timing_steps = deadline, planned, timing_steps
        self.ends: deque[float] = deque(maxlen=TIMING_WINDOW + 1)
        self.count, self.sec_per_step = 0, None

    def tick(self, step: int, total: int) -> int:
        """Call after every step (`step` steps done); returns the (possibly re-planned) total."""
        self.count += 1
        self.ends.append(time.monotonic())
        timed = self.count - 1
        if self.deadline is None or timed < self.timing_steps or (timed - self.timing_steps) % REPLAN_EVERY:
            return total
        self.sec_per_step = (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)
        fit = int((self.deadline - BUDGET_RESERVE_S - self.ends[-1]) / self.sec_per_step)
        return max(step, min(self.planned, step + fit))

    def out_of_time(self) -> bool:
        """True if the budget cannot take one more step."""
        if self.deadline is None:
            return False
        return time.monotonic() + (self.sec_per_step or 0.0) + BUDGET_RESERVE_S > self.deadline


def _identity(space, splits: DatasetSplits, cfg: SupernetConfig, norm) -> dict[str, Any]:
    """What must match to resume: space, config (minus runtime fields), data and preprocessing."""
    ident = {"space": space.to_dict(), "config": cfg.identity(), "preprocess": norm.to_dict(),
             "data": {"name": splits.name, "train_images": len(splits.train),
                      "image_shape": list(splits.train.image_shape)}}
    return json.loads(json.dumps(ident))


def _load_state(out: Path, ident: dict[str, Any]) -> dict | None:
    """The saved training state of `out` (None if there is none); CheckpointError if it is another run."""
    path = out / STATE_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("identity", {})
    differ = [k for k in ident if saved.get(k) != ident[k]]
    differ += [f"config.{k}" for k in ident["config"] if saved.get("config", {}).get(k) != ident["config"][k]]
    if differ:
        raise CheckpointError(f"{out}: holds a supernet run with different {', '.join(differ)}; "
                              "choose another output directory or delete it to start over")
    if not (out / WEIGHTS_FILE).is_file() or supernet_info(out).get("step") != state["step"]:
        raise CheckpointError(f"{out}: {WEIGHTS_FILE} does not match {STATE_FILE} (interrupted while "
                              "checkpointing?); delete the directory to start over")
    return state


def _save(out: Path, sn: Supernet, opt, step: int, total: int, history: list, ident: dict, stop: str) -> None:
    """Weights first, then the state file (each atomic); both carry `step` so a mismatch is detected."""
    info = {"step": step, "total_steps": total, "stopped": stop, "history": history[-20:]}
    save_supernet(sn, out, info)
    state = {"optimizer": opt.state_dict(), "step": step, "total": total, "history": history,
             "identity": ident, "stopped": stop, "rng": "derived from (config.seed, step); nothing to restore"}
    write_file_atomically(out / STATE_FILE, lambda tmp: torch.save(state, tmp))


def _check_data(space, splits: DatasetSplits) -> None:
    c, h, w = splits.train.image_shape
    if c != space.in_channels or splits.train.num_classes != space.num_classes:
        raise UserInputError(f"search space {space.name!r} is for {space.in_channels} channel(s) and "
                             f"{space.num_classes} classes but {splits.name} has {c} and {splits.train.num_classes}")
    if h != w or h < space.max_image_size:
        raise UserInputError(f"{splits.name}: images are {h}x{w} but the space {space.name!r} needs square images "
                             f"of at least {space.max_image_size}x{space.max_image_size} (resized down per spec)")


def train_supernet(space, splits: DatasetSplits, out: Path, config: SupernetConfig,
                   time_budget_s: float | None = None,
                   progress: Callable[[int, int, float], None] | None = None) -> Supernet:
    """Train the supernet of `space` on `splits.train` with the sandwich rule; returns it in eval mode.

    Stops after `config.epochs` epochs or when `time_budget_s` (seconds, this call) runs out. With a
    budget the total step count (which the warm-up + cosine schedule spans) starts as epochs * steps
    per epoch and is re-planned from the measured time per step: after `config.timing_steps` timed
    steps of this session and every REPLAN_EVERY steps after that, total = min(epochs * steps per
    epoch, steps done + remaining budget / mean seconds of the last TIMING_WINDOW steps), so the
    LR reaches ~0 when the budget ends (see StepClock). Checkpoints every `config.checkpoint_every` steps and at the end; a run directory
    holding the same run (space, data, config) is resumed from its last checkpoint (a finished run,
    stopped by epochs or budget, is loaded and returned as is), another run raises CheckpointError.
    `progress(step, total, loss_of_largest)` is called after every step. Preprocessing is the train
    split's normalisation.
    """
    config.check()
    start = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    _check_data(space, splits)
    norm = compute_normalization(splits.train)
    ident = _identity(space, splits, config, norm)
    make_dir(out)
    sn = Supernet(space, norm, seed=config.seed).train()
    opt = torch.optim.AdamW(param_groups(sn, config.weight_decay), lr=config.lr)
    plan = BatchPlan(splits.train, config.batch_size, config.seed)
    planned = config.epochs * plan.steps_per_epoch
    step, total, history = 0, planned, []
    state = _load_state(out, ident)
    if state is not None:
        from edgevit.nas.supernet import load_supernet

        sn.load_state_dict(load_supernet(out).state_dict())
        if state.get("stopped", "running") != "running":
            return sn.eval()  # a finished run: nothing to resume
        opt.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]
    deadline = None if time_budget_s is None else start + time_budget_s
    clock = StepClock(deadline, planned, config.timing_steps)
    window = []
    while step < total and not clock.out_of_time():
        losses = _train_step(sn, opt, space, plan, step, total, config)
        step += 1
        window.append(losses)
        total = clock.tick(step, total)
        if progress is not None:
            progress(step, total, losses[0])
        if step % config.checkpoint_every == 0 and step < total:
            history.append(_history_entry(step, window, start))
            window = []
            _save(out, sn, opt, step, total, history, ident, "running")
    if window:
        history.append(_history_entry(step, window, start))
    _save(out, sn, opt, step, total, history, ident, "epochs" if step >= planned else "time budget")
    return sn.eval()


def _train_step(sn: Supernet, opt, space, plan: BatchPlan, step: int, total: int, cfg: SupernetConfig) -> list[float]:
    """Global step `step`: its batch, augmentation and subnets (all seeded by step), one sandwich update."""
    images, labels = plan.batch(step)
    seed = cfg.seed * 1_000_003 + step
    images = augment(images, cfg.shift, cfg.flip, torch.Generator().manual_seed(seed))
    specs = sandwich_specs(space, cfg.random_subnets, random.Random(seed))
    distill = cfg.distill and step >= cfg.distill_start * total
    return sandwich_step(sn, opt, images, labels, specs, cfg, cfg.lr * lr_factor(step, total, cfg.warmup_frac), distill)


def _history_entry(step: int, window: list[list[float]], start: float) -> dict[str, Any]:
    """Mean losses of the largest and smallest subnet over the steps since the last entry."""
    n = max(1, len(window))
    return {"step": step, "loss_largest": round(sum(w[0] for w in window) / n, 4),
            "loss_smallest": round(sum(w[1] for w in window) / n, 4) if window and len(window[0]) > 1 else None,
            "session_seconds": round(time.monotonic() - start, 1)}
