"""The `prune` pass: structured pruning of attention heads, MLP hidden channels and whole blocks.

`prune(heads=0.25,mlp=0.3)` removes 25% of all heads and 30% of all MLP channels; `blocks=1` also
removes the least important block. Importance (option `importance`):

- `magnitude` (data-free): a head scores |W_q,h| |W_k,h| + |W_v,h| |W_proj,h| (Frobenius norms of its
  slices), an MLP channel |fc1 row| |fc2 column|, a block the sum of its scores;
- `activation` (calibration images): a head scores E|proj_h(out_h)|^2, the energy it writes into
  the residual stream, an MLP channel E[g_c^2] |fc2 column|^2, a block E|branches| / E|x|, how much
  it changes the residual stream;
- `taylor` (calibration images and labels): first-order Taylor (Molchanov et al. 2019): a mask
  m = 1 on each head / channel / block branch, importance = mean over batches of (dL/dm)^2.

With `scope=global` (default) heads and channels are ranked across all blocks, so blocks lose
different amounts (non-uniform); `scope=block` removes the same fraction in every block. Every
block keeps at least one head and one channel. The result is a new model whose ViTSpec records
each block's heads and mlp_hidden (low-rank factors are sliced; merge_r kept, a removed block's
merging dropped). `finetune=N` then trains N epochs on the calibration split with distillation
from the unpruned model (0.5 cross-entropy + 0.5 KL at temperature 2; the `train` augmentation).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edgevit.data import ArrayDataset, calibration_subset
from edgevit.errors import UserInputError
from edgevit.model.spec import BlockSpec
from edgevit.model.train import TrainConfig, augment, make_scheduler, optimizer_step, param_groups
from edgevit.model.vit import VisionTransformer, build_like, dense_weight
from edgevit.passes.options import Option
from edgevit.passes.registry import PassReport, register_pass, structural_report

IMPORTANCES = ("taylor", "activation", "magnitude")
BATCH = 64
KD_TEMPERATURE, KD_WEIGHT = 2.0, 0.5

OPTIONS = {
    "heads": Option((float,), 0.0, minimum=0.0, doc="fraction of all attention heads to remove, in [0, 1)"),
    "mlp": Option((float,), 0.0, minimum=0.0, doc="fraction of all MLP hidden channels to remove, in [0, 1)"),
    "blocks": Option((int,), 0, minimum=0, doc="number of whole blocks to remove"),
    "importance": Option((str,), "taylor", IMPORTANCES, doc="taylor (gradients), activation or magnitude (weights)"),
    "scope": Option((str,), "global", ("global", "block"),
                    doc="global: rank across blocks (non-uniform); block: the same fraction in every block"),
    "calib": Option((int,), 256, minimum=1, doc="calibration images for taylor / activation importance"),
    "finetune": Option((int,), 0, minimum=0, doc="recovery epochs with distillation from the unpruned model"),
    "lr": Option((float,), 1e-3, minimum=0.0, doc="peak learning rate of the recovery fine-tune"),
}


@dataclass
class Importance:
    """Scores per block: heads [H_i], MLP channels [hidden_i], and one per block (higher = keep)."""

    heads: list[np.ndarray]
    mlp: list[np.ndarray]
    blocks: np.ndarray


# ---------------------------------------------------------------- importance

def head_slices(w: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """qkv weight [3*H*hd, D] -> [3, H, hd*D] (per part and head)."""
    return w.reshape(3, heads, head_dim * w.shape[1])


@torch.no_grad()
def magnitude_importance(model: VisionTransformer) -> Importance:
    """Data-free scores from weight norms (module docstring)."""
    heads, mlp = [], []
    for blk in model.blocks:
        h, hd = blk.attn.heads, blk.attn.head_dim
        qkv = head_slices(dense_weight(blk.attn.qkv).double(), h, hd).norm(dim=-1)  # [3, H]
        proj = dense_weight(blk.attn.proj).double().reshape(-1, h, hd).norm(dim=(0, 2))  # [H]
        heads.append((qkv[0] * qkv[1] + qkv[2] * proj).numpy())
        fc1 = dense_weight(blk.mlp.fc1).double().norm(dim=1)
        fc2 = dense_weight(blk.mlp.fc2).double().norm(dim=0)
        mlp.append((fc1 * fc2).numpy())
    return Importance(heads, mlp, np.array([h.sum() + m.sum() for h, m in zip(heads, mlp)]))


def batches(data: ArrayDataset, preprocess) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(normalised images, labels) in batches of BATCH."""
    out = []
    for start in range(0, len(data), BATCH):
        x = preprocess.apply_torch(torch.from_numpy(data.images[start:start + BATCH]))
        out.append((x, torch.from_numpy(data.labels[start:start + BATCH]).long()))
    return out


@torch.no_grad()
def activation_importance(model: VisionTransformer, data: ArrayDataset) -> Importance:
    """Scores from the energy each head / channel / block writes into the residual stream (module docstring)."""
    depth = len(model.blocks)
    heads = [np.zeros(b.attn.heads) for b in model.blocks]
    mlp = [np.zeros(b.mlp.fc2.in_features) for b in model.blocks]
    branch, resid = np.zeros(depth), np.zeros(depth)
    hooks = []
    for i, blk in enumerate(model.blocks):
        wp = dense_weight(blk.attn.proj).double()  # [D, A]
        w2 = dense_weight(blk.mlp.fc2).double().pow(2).sum(dim=0)  # [hidden]
        h, hd = blk.attn.heads, blk.attn.head_dim

        def on_proj(m, inp, i=i, wp=wp, h=h, hd=hd):
            x = inp[0].double().reshape(*inp[0].shape[:-1], h, hd)
            y = torch.einsum("bnht,dht->bnhd", x, wp.reshape(-1, h, hd))
            heads[i] += y.pow(2).sum(dim=(0, 1, 3)).numpy()

        def on_fc2(m, inp, i=i, w2=w2):
            mlp[i] += (inp[0].double().pow(2).sum(dim=(0, 1)) * w2).numpy()

        def on_branch(m, inp, out, i=i):
            branch[i] += out.double().norm(dim=-1).mean(dim=1).sum().item()

        def on_block(m, inp, out, i=i):
            resid[i] += inp[0].double().norm(dim=-1).mean(dim=1).sum().item()

        hooks += [blk.attn.proj.register_forward_pre_hook(on_proj), blk.mlp.fc2.register_forward_pre_hook(on_fc2),
                  blk.attn.proj.register_forward_hook(on_branch), blk.mlp.fc2.register_forward_hook(on_branch),
                  blk.register_forward_hook(on_block)]
    try:
        for x, _ in batches(data, model.preprocess):
            model(x)
    finally:
        for hk in hooks:
            hk.remove()
    return Importance(heads, mlp, branch / np.maximum(resid, 1e-12))


def taylor_importance(model: VisionTransformer, data: ArrayDataset) -> Importance:
    """Mean over batches of (dL/dm)^2 for masks on heads, channels and block branches (module docstring)."""
    masks, hooks = [], []
    for blk in model.blocks:
        mh = torch.ones(blk.attn.heads, requires_grad=True)
        mc = torch.ones(blk.mlp.fc2.in_features, requires_grad=True)
        mb = torch.ones(1, requires_grad=True)
        hd = blk.attn.head_dim
        hooks += [blk.attn.proj.register_forward_pre_hook(
                      lambda m, inp, mh=mh, hd=hd: (inp[0] * mh.repeat_interleave(hd),)),
                  blk.mlp.fc2.register_forward_pre_hook(lambda m, inp, mc=mc: (inp[0] * mc,)),
                  blk.attn.proj.register_forward_hook(lambda m, inp, out, mb=mb: out * mb),
                  blk.mlp.fc2.register_forward_hook(lambda m, inp, out, mb=mb: out * mb)]
        masks.append((mh, mc, mb))
    flat = [m for trio in masks for m in trio]
    sums = [torch.zeros_like(m, dtype=torch.float64) for m in flat]
    loss_fn, steps = nn.CrossEntropyLoss(), 0
    try:
        for x, y in batches(data, model.preprocess):
            grads = torch.autograd.grad(loss_fn(model(x), y), flat)
            for acc, g in zip(sums, grads):
                acc += g.double().pow(2)
            steps += 1
    finally:
        for hk in hooks:
            hk.remove()
    scores = [(acc / max(steps, 1)).numpy() for acc in sums]
    return Importance(scores[0::3], scores[1::3], np.array([s[0] for s in scores[2::3]]))


def compute_importance(model: VisionTransformer, kind: str, data: ArrayDataset | None) -> Importance:
    """Importance of every head, channel and block of `model` by `kind` (run in eval mode; model left unchanged)."""
    if kind != "magnitude" and (data is None or not len(data)):
        raise UserInputError(f"prune: importance={kind} needs calibration images; "
                             "use importance=magnitude without data")
    was_training = model.training
    model.eval()
    try:
        if kind == "magnitude":
            return magnitude_importance(model)
        return activation_importance(model, data) if kind == "activation" else taylor_importance(model, data)
    finally:
        model.train(was_training)


# ---------------------------------------------------------------- selection

def choose_removals(scores: list[np.ndarray], fraction: float, scope: str) -> list[set[int]]:
    """Indices to remove per block: the lowest scores (ties: lowest block, then index), >= 1 kept per block."""
    if fraction <= 0:
        return [set() for _ in scores]
    if scope == "block":
        out = []
        for s in scores:
            k = min(len(s) - 1, int(round(fraction * len(s))))
            out.append(set(np.argsort(s, kind="stable")[:k].tolist()))
        return out
    total = sum(len(s) for s in scores)
    k = int(round(fraction * total))
    ranked = sorted((float(v), b, j) for b, s in enumerate(scores) for j, v in enumerate(s))
    removed, left = [set() for _ in scores], [len(s) for s in scores]
    for _, b, j in ranked:
        if k == 0:
            break
        if left[b] > 1:
            removed[b].add(j)
            left[b] -= 1
            k -= 1
    return removed


def keep_index(n: int, removed: set[int]) -> torch.Tensor:
    """Ascending indices of range(n) not in `removed`."""
    return torch.tensor([j for j in range(n) if j not in removed], dtype=torch.long)


# ---------------------------------------------------------------- surgery

def block_rules(heads: torch.Tensor, channels: torch.Tensor, spec: BlockSpec) -> dict[str, tuple[int, torch.Tensor]]:
    """state_dict key suffix -> (dim, kept indices) for one block keeping `heads` and MLP `channels`."""
    hd, a = spec.head_dim, spec.attn_dim
    cols = (heads[:, None] * hd + torch.arange(hd)[None]).reshape(-1)
    rows = torch.cat([part * a + cols for part in range(3)])
    rules = {}
    for suffix in ("attn.qkv.weight", "attn.qkv.bias", "attn.qkv.b.weight", "attn.qkv.b.bias"):
        rules[suffix] = (0, rows)
    for suffix in ("mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc1.b.weight", "mlp.fc1.b.bias"):
        rules[suffix] = (0, channels)
    rules.update({"attn.proj.weight": (1, cols), "attn.proj.a.weight": (1, cols),
                  "mlp.fc2.weight": (1, channels), "mlp.fc2.a.weight": (1, channels)})
    return rules


def pruned_model(model: VisionTransformer, drop_blocks: set[int], drop_heads: list[set[int]],
                 drop_channels: list[set[int]]) -> VisionTransformer:
    """A new model without the given blocks / heads / channels (indices into `model`'s blocks)."""
    spec, state = model.spec, model.state_dict()
    kept = [i for i in range(spec.depth) if i not in drop_blocks]
    new_state = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    blocks = []
    for new_i, old_i in enumerate(kept):
        b = spec.blocks[old_i]
        hk, ck = keep_index(b.heads, drop_heads[old_i]), keep_index(b.mlp_hidden, drop_channels[old_i])
        rules = block_rules(hk, ck, b)
        prefix = f"blocks.{old_i}."
        for key, value in state.items():
            if key.startswith(prefix):
                suffix = key[len(prefix):]
                if suffix in rules:
                    value = value.index_select(rules[suffix][0], rules[suffix][1])
                new_state[f"blocks.{new_i}.{suffix}"] = value.clone()
        blocks.append(replace(b, heads=len(hk), mlp_hidden=len(ck)))
    return build_like(model, spec.with_blocks(blocks), new_state)


# ---------------------------------------------------------------- recovery fine-tune

def distill(student: VisionTransformer, teacher: VisionTransformer, data: ArrayDataset, epochs: int, lr: float,
            progress: Callable[[str], None]) -> VisionTransformer:
    """Train `student` in place for `epochs` on `data` (images [N, C, H, W] uint8, labels [N]).

    Loss: 0.5 cross-entropy (label smoothing 0.1) + 0.5 T^2 KL(teacher || student) at temperature T = 2.
    """
    cfg = TrainConfig(epochs=epochs, lr=lr, warmup_epochs=0.1)
    opt = torch.optim.AdamW(param_groups(student, cfg.weight_decay), lr=lr)
    steps = math.ceil(len(data) / cfg.batch_size)
    sched = make_scheduler(opt, cfg, steps)
    ce, t = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), KD_TEMPERATURE
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels).long()
    teacher.eval()
    for epoch in range(epochs):
        student.train()
        gen = torch.Generator().manual_seed(epoch)
        order, total = torch.randperm(len(data), generator=gen), 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            x = student.preprocess.apply_torch(augment(images[idx], cfg.shift, cfg.flip, gen))
            with torch.no_grad():
                soft = (teacher(x) / t).log_softmax(dim=1)
            logits = student(x)
            kd = nn.functional.kl_div((logits / t).log_softmax(dim=1), soft, log_target=True, reduction="batchmean")
            loss = (1 - KD_WEIGHT) * ce(logits, labels[idx]) + KD_WEIGHT * t * t * kd
            optimizer_step(student, opt, sched, loss)
            total += loss.item() * len(idx)
        progress(f"recovery epoch {epoch + 1}/{epochs}: loss {total / len(data):.4f}")
    return student.eval()


# ---------------------------------------------------------------- the pass

def check_options(opts: dict[str, Any], depth: int) -> None:
    """Typed checks plus the ranges Option cannot express (fractions below 1, at least one block left)."""
    for name, value in opts.items():
        OPTIONS[name].check("prune", name, value)
    for name in ("heads", "mlp"):
        if not 0.0 <= opts[name] < 1.0:
            raise UserInputError(f"prune: {name} is a fraction in [0, 1) (got {opts[name]})")
    if opts["blocks"] >= depth:
        raise UserInputError(f"prune: blocks={opts['blocks']} would remove all {depth} blocks; at most {depth - 1}")


def prune(model: VisionTransformer, calib_data: ArrayDataset | None = None, /, eval_data: Any = None,
          progress: Callable[[str], None] | None = None, heads: float = 0.0, mlp: float = 0.0, blocks: int = 0,
          importance: str = "taylor", scope: str = "global", calib: int = 256, finetune: int = 0,
          lr: float = 1e-3) -> tuple[VisionTransformer, PassReport]:
    """Prune `model` (not modified) -> (pruned model, PassReport with the per-block result in details).

    `calib_data` is the calibration split (ArrayDataset): `calib` images of it score taylor /
    activation importance; `finetune` trains on the whole split.
    """
    opts = dict(heads=heads, mlp=mlp, blocks=blocks, importance=importance, scope=scope, calib=calib,
                finetune=finetune, lr=lr)
    check_options(opts, model.spec.depth)
    say = progress or (lambda msg: None)
    has_data = calib_data is not None and len(calib_data) > 0
    data = calibration_subset(calib_data, calib) if has_data and importance != "magnitude" else None
    say(f"scoring heads, channels and blocks ({importance})")
    imp = compute_importance(model, importance, data)
    drop_blocks = set(np.argsort(imp.blocks, kind="stable")[:blocks].tolist())
    kept = [i for i in range(model.spec.depth) if i not in drop_blocks]
    drop_heads = dict(zip(kept, choose_removals([imp.heads[i] for i in kept], heads, scope)))
    drop_channels = dict(zip(kept, choose_removals([imp.mlp[i] for i in kept], mlp, scope)))
    full = lambda d: [d.get(i, set()) for i in range(model.spec.depth)]  # noqa: E731
    result = pruned_model(model, drop_blocks, full(drop_heads), full(drop_channels))
    notes = [f"removed blocks {sorted(drop_blocks)}" if drop_blocks else "no block removed",
             "per block (heads, mlp_hidden): " + ", ".join(f"({b.heads}, {b.mlp_hidden})" for b in result.spec.blocks)]
    if finetune:
        if not has_data:
            raise UserInputError("prune: finetune needs training images (the pipeline's calibration split)")
        say(f"recovery fine-tune, {finetune} epoch(s) on {len(calib_data)} images")
        result = distill(result, copy.deepcopy(model).eval(), calib_data, finetune, lr, say)
    details = {"removed_blocks": sorted(drop_blocks), "heads": [b.heads for b in result.spec.blocks],
               "mlp_hidden": [b.mlp_hidden for b in result.spec.blocks]}
    return result, structural_report("prune", opts, model, result, eval_data, notes, details)


register_pass("prune", prune, OPTIONS, doc=__doc__.splitlines()[0])
