"""Train a ViT from a spec: AdamW, warm-up + cosine (or one-cycle), label smoothing,
random-shift and flip augmentation, a Rich progress bar, resumable per epoch.

The run directory holds the checkpoint (spec.yaml + model.safetensors, rewritten after
every epoch) and `train_state.pt` (optimizer, schedule, epoch, history) to resume from.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from edgevit import __version__
from edgevit.atomic_write import write_file_atomically
from edgevit.data import ArrayDataset, compute_normalization
from edgevit.data.resize import load_for_spec
from edgevit.errors import CheckpointError, UserInputError
from edgevit.model.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from edgevit.model.evaluate import accuracy
from edgevit.model.footprint import check_training_fits
from edgevit.model.progress import epoch_progress
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import VisionTransformer, build_model
from edgevit.validate import check_out, finite_number, int_in_range

STATE_FILE = "train_state.pt"
SCHEDULES = ("cosine", "onecycle")
MAX_EPOCHS = 100_000
MAX_LR = 10.0            # AdamW diverges far below; larger is a typo
MAX_SEED = 2**32 - 1     # seeds feed torch generators (seed * 1000 + epoch must fit 64 bits)
MAX_THREADS = 1024


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (recorded in the checkpoint's info)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    shift: int = 2
    flip: bool = True
    seed: int = 0
    threads: int = 0

    def check(self) -> None:
        """Raise UserInputError naming the option for an out-of-range setting (nan and inf included)."""
        if self.schedule not in SCHEDULES:
            raise UserInputError(f"--schedule must be one of {SCHEDULES} (got {self.schedule!r})")
        int_in_range(self.epochs, "--epochs", low=1, high=MAX_EPOCHS)
        int_in_range(self.batch_size, "--batch-size", low=1)
        finite_number(self.lr, "--lr", low=0, low_open=True, high=MAX_LR, hint="e.g. 2e-3")
        finite_number(self.weight_decay, "--weight-decay", low=0)
        finite_number(self.label_smoothing, "--label-smoothing", low=0, high=1, high_open=True)
        finite_number(self.warmup_epochs, "--warmup-epochs", low=0, high=MAX_EPOCHS)
        int_in_range(self.shift, "--shift", low=0)
        int_in_range(self.seed, "--seed", low=0, high=MAX_SEED)
        int_in_range(self.threads, "--threads", low=0, high=MAX_THREADS, hint="0 uses every core")

    def check_for(self, spec: ViTSpec, source: str) -> None:
        """UserInputError for settings that do not suit `spec`: a --shift of the image size or more."""
        if self.shift >= spec.image_size:
            raise UserInputError(f"--shift {self.shift}: must be smaller than the image size of {source} "
                                 f"({spec.image_size} px); a few pixels (default 2) is the usual augmentation")


def augment(images: torch.Tensor, shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to `shift` pixels (zero fill) and horizontal flip; [B,C,H,W] -> same."""
    b, _, h, w = images.shape
    out = images
    if shift:
        padded = nn.functional.pad(images, (shift, shift, shift, shift))
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, :]  # [B, 1, W]
        bidx = torch.arange(b)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2)  # [B, C, H, W]
    if flip:
        mask = torch.rand(b, generator=gen) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out.contiguous()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices/convs; none on biases, norms, class / distillation tokens and
    positions (`pos_embed`, or the supernet's per-grid `pos_embeds.g<grid>`)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim <= 1 or name in ("cls_token", "dist_token", "pos_embed") or name.startswith("pos_embeds.")
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step LR schedule: linear warm-up then cosine to 0, or torch's OneCycleLR."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _load_state(out: Path, spec: ViTSpec, cfg: TrainConfig, data: str) -> dict | None:
    state_path = out / STATE_FILE
    if not state_path.is_file():
        return None
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        saved = {"spec": state["spec"], "data": state["data"], **state["config"]}
    except Exception as e:  # a truncated or foreign file: any unpickling error
        raise CheckpointError(f"{state_path}: not a readable training state ({type(e).__name__}: {e}); pass "
                              "--no-resume to start over or choose another --out") from None
    wanted = {"spec": spec.to_yaml(), "data": data, **asdict(cfg)}
    differ = [k for k in wanted if saved.get(k) != wanted[k]]
    if differ:
        raise CheckpointError(
            f"{out}: holds a run with different {', '.join(differ)}; pass --no-resume to start over "
            "or choose another --out"
        )
    return state


def _save_state(out: Path, model, opt, sched, epoch: int, history: list, spec, cfg, data) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "epoch": epoch, "history": history, "spec": spec.to_yaml(), "config": asdict(cfg), "data": data}
    write_file_atomically(out / STATE_FILE, lambda tmp: torch.save(state, tmp))  # never a half-written state


def optimizer_step(model: nn.Module, opt: torch.optim.Optimizer, sched, loss: torch.Tensor) -> None:
    """One update from a scalar `loss`: backward, gradient norm clipped to 1.0, optimizer and schedule step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def train_epoch(model, opt, sched, loss_fn, train: ArrayDataset, cfg: TrainConfig, epoch: int, progress) -> tuple[float, float]:
    """One pass over `train` in seeded random order; returns (mean loss, train accuracy)."""
    model.train()
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    order = torch.randperm(len(train), generator=gen)
    images = torch.from_numpy(train.images)
    labels = torch.from_numpy(train.labels)
    loss_sum, correct, seen = 0.0, 0, 0
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        x = model.preprocess.apply_torch(augment(images[idx], cfg.shift, cfg.flip, gen))
        y = labels[idx]
        logits = model(x)
        loss = loss_fn(logits, y)
        if not math.isfinite(loss.item()):
            raise UserInputError(f"training diverged in epoch {epoch + 1}: the loss became {loss.item()} "
                                 f"(--lr {cfg.lr:g}); lower --lr. This epoch was not saved.")
        optimizer_step(model, opt, sched, loss)
        loss_sum += loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(idx)
        progress.advance(loss_sum / seen, correct / seen, len(idx))
    return loss_sum / seen, correct / seen


def train_model(spec_path: Path, data: str, out: Path, cfg: TrainConfig, init: Path | None = None,
                data_root: Path | None = None, resume: bool = True) -> dict:
    """Train the spec in `spec_path` on `data`; write a checkpoint to `out`; return final metrics.

    Checked before the data loads: the settings, `out` (a writable directory place), that the spec
    fits this machine's memory (model/footprint.py, exit 3); after: its fit at the real batch size."""
    cfg.check()
    check_out(out, "dir")
    spec = ViTSpec.load(spec_path)
    cfg.check_for(spec, str(spec_path))
    check_training_fits(spec, 1, str(spec_path))  # the parameters alone: before any data is read
    if init is not None and not Path(init).exists():
        raise CheckpointError(f"--init {init}: checkpoint not found")
    from edgevit.threads import apply_thread_policy

    apply_thread_policy(cfg.threads or None)  # torch: --threads, EDGEVIT_THREADS or all cores; BLAS: 1 thread
    splits = load_for_spec(data, spec, data_root, str(spec_path))  # resized down if the spec asks for it
    if spec.num_classes != len(splits.train.classes):
        raise UserInputError(f"{spec_path}: num_classes is {spec.num_classes} but {data} has {len(splits.train.classes)} classes")
    check_training_fits(spec, min(cfg.batch_size, len(splits.train)), str(spec_path))
    torch.manual_seed(cfg.seed)
    model = _initial_model(spec, init, compute_normalization(splits.train), cfg.seed)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps = math.ceil(len(splits.train) / cfg.batch_size)
    sched = make_scheduler(opt, cfg, steps)
    state = _load_state(out, spec, cfg, data) if resume else None  # OUT is created by the first save
    history, start_epoch = [], 0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], state["epoch"]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    t0 = time.time()
    with epoch_progress(cfg.epochs, steps * cfg.batch_size, start_epoch) as progress:
        for epoch in range(start_epoch, cfg.epochs):
            progress.start_epoch(epoch)
            loss, train_acc = train_epoch(model, opt, sched, loss_fn, splits.train, cfg, epoch, progress)
            val = accuracy(model, splits.val)
            history.append({"epoch": epoch + 1, "loss": round(loss, 4), "train_top1": round(train_acc, 4),
                            "val_top1": round(val, 4)})
            progress.end_epoch(epoch, loss, train_acc, val)
            _save_state(out, model, opt, sched, epoch + 1, history, spec, cfg, data)
            save_checkpoint(model, out, info={"history": history})
    test = accuracy(model, splits.test)
    info = {"recipe": {"data": data, **asdict(cfg)}, "history": history, "val_top1": history[-1]["val_top1"],
            "test_top1": round(test, 4), "train_seconds_this_session": round(time.time() - t0, 1),
            "edgevit": __version__}
    if init is not None:
        info["init"] = {"path": str(init), "info": checkpoint_info(init)}
    save_checkpoint(model, out, info=info)
    write_file_atomically(out / "metrics.json", json.dumps(info, indent=2) + "\n")
    return {"val_top1": history[-1]["val_top1"], "test_top1": test}


def _initial_model(spec: ViTSpec, init: Path | None, norm, seed: int) -> VisionTransformer:
    if init is None:
        return build_model(spec, norm, seed=seed)
    start = load_checkpoint(init)
    model = build_model(spec, start.preprocess, seed=seed)
    if start.spec != spec:
        raise CheckpointError(f"--init {init}: its spec differs from the spec being trained")
    model.load_state_dict(start.state_dict())
    return model

