"""The weight-entangled supernet (AutoFormer-style) that NAS trains once and samples many times.

Parameters have the LARGEST shapes of a search space: embed dim E = max embed, `max_depth`
blocks, per block q, k and v of `max_heads * head_dim` rows each and an MLP of `max_mlp_hidden`.
A sub-network (any ViTSpec inside those shapes) uses leading slices: embed dims [:D], heads [:H]
(taken per q / k / v section, so the fused qkv weight is [3*H*hd, D] laid out as vit.py expects),
MLP hidden [:M], blocks [:depth]. The patch embedding depends on the patch size (one conv
[E, C, p, p] per patch size of the space) and the position embedding on the token grid (one
[1, grid**2 + prefix, E] per grid, shared by every (image size, patch size) with that grid); the
class token, norms and head are shared.

A sub-network runs vit.py's own `VisionTransformer` code: `subnet_state(spec)` builds the
sub-network's state dict from contiguous slices and `torch.func.functional_call` runs a template
module (built once per spec on the meta device) with it, so token merging, proportional attention
and pooling are vit.py's, and `extract(spec)` (the same slices copied into a real model) gives
bit-identical outputs: `extract(spec)(preprocess(resize(x))) == supernet(x, spec)`.

Low-rank specs (block `ranks`): training is dense (the sandwich sampler strips ranks). For a spec
with ranks, every factorised linear gets the balanced truncated SVD of its dense slice,
a = sqrt(S_r) V_r^T and b = U_r sqrt(S_r) (as `passes/lowrank.py` factorises), computed in
float64 and detached (no gradient reaches the dense weight through a factorised linear).

Training lives in `edgevit.nas.supernet_train` (`train_supernet` here forwards to it).
This module has no import-time side effects: NAS worker processes import it to evaluate subnets.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from edgevit.atomic_write import make_dir, write_file_atomically
from edgevit.data.normalize import Normalization
from edgevit.data.resize import resize_tensor
from edgevit.errors import CheckpointError, SpecError, UserInputError
from edgevit.model.spec import LINEARS, ViTSpec
from edgevit.model.vit import VisionTransformer

FORMAT = "edgevit-supernet"
WEIGHTS_FILE = "supernet.safetensors"
MODULES = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
TEMPLATE_CACHE = 256  # template modules kept (meta device: no storage, only Python objects)


@dataclass(frozen=True)
class SupernetConfig:
    """Hyper-parameters of supernet training (see `edgevit.nas.supernet_train.train_supernet`).

    Every step trains the sandwich: the space's largest and smallest spec plus `random_subnets`
    random ones, all dense (ranks stripped), each from the labels. With `distill` the smaller ones
    learn from the largest's soft labels instead once `distill_start` of the total steps are done.
    Off by default: on the short budgets NAS has it cost every subnet accuracy (Fashion-MNIST,
    default MCU space, 164 steps, val top-1 of the largest: lr 2e-3 52% -> 30% with distillation
    from 30% of the steps; lr 3e-3 57% -> 48% from 60%).
    `warmup_frac` of the total steps warm up linearly, then cosine to 0.
    `threads` (0 = torch's default), `checkpoint_every` and `timing_steps` do not change the
    result and may differ when resuming.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_frac: float = 0.05
    shift: int = 1
    flip: bool = False
    random_subnets: int = 2
    distill: bool = False
    distill_start: float = 0.5
    clip_grad: float = 1.0
    seed: int = 0
    threads: int = 0
    checkpoint_every: int = 200
    timing_steps: int = 10

    RUNTIME_FIELDS = ("threads", "checkpoint_every", "timing_steps")

    def check(self) -> None:
        """Raise UserInputError naming the first out-of-range setting."""
        positive = ("epochs", "batch_size", "checkpoint_every", "timing_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserInputError(f"supernet config: {name} must be >= 1 (got {getattr(self, name)})")
        if self.lr <= 0 or self.weight_decay < 0 or self.clip_grad <= 0:
            raise UserInputError("supernet config: lr and clip_grad must be > 0, weight_decay >= 0 "
                                 f"(got lr={self.lr}, weight_decay={self.weight_decay}, clip_grad={self.clip_grad})")
        for name in ("label_smoothing", "warmup_frac", "distill_start"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserInputError(f"supernet config: {name} must be in [0, 1) (got {getattr(self, name)})")
        if self.random_subnets < 0 or self.shift < 0 or self.threads < 0:
            raise UserInputError("supernet config: random_subnets, shift and threads must be >= 0")

    def identity(self) -> dict[str, Any]:
        """The fields that define a run (all but the runtime-only ones), for resume checks."""
        return {k: v for k, v in asdict(self).items() if k not in self.RUNTIME_FIELDS}


class SuperBlock(nn.Module):
    """One block's largest weights: norms [E], qkv [3*A, E] (q, k, v sections of A rows), proj [E, A],
    fc1 [M, E], fc2 [E, M]; A = max heads * head_dim, M = max MLP hidden."""

    def __init__(self, embed: int, attn: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed)
        self.qkv = nn.Linear(embed, 3 * attn)
        self.proj = nn.Linear(attn, embed)
        self.norm2 = nn.LayerNorm(embed)
        self.fc1 = nn.Linear(embed, hidden)
        self.fc2 = nn.Linear(hidden, embed)


def _grids(space) -> dict[int, int]:
    """{token grid: an image size using it} over every (image size, patch size) of the space."""
    out: dict[int, int] = {}
    for size in space.image_sizes:
        for p in space.patch_sizes:
            if size % p == 0:
                out.setdefault(size // p, size)
    return out


class Supernet(nn.Module):
    """The supernet of a SearchSpace: forward(images uint8 [B, C, H, W] at the dataset's size, spec) -> logits [B, K]."""

    def __init__(self, space, preprocess: Normalization, seed: int = 0) -> None:
        super().__init__()
        self.space, self.preprocess, self.seed = space, preprocess, seed
        self.embed, self.head_dim = space.max_embed, space.head_dim
        self.attn_dim, self.hidden = space.max_heads * space.head_dim, space.max_mlp_hidden
        self.prefix = 1 if space.pool == "cls" else 0
        e, c = self.embed, space.in_channels
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.patch_embeds = nn.ModuleDict({f"p{p}": nn.Conv2d(c, e, p, stride=p) for p in space.patch_sizes})
            self.pos_embeds = nn.ParameterDict({f"g{g}": nn.Parameter(torch.zeros(1, g * g + self.prefix, e))
                                                for g in sorted(_grids(space))})
            self.cls_token = nn.Parameter(torch.zeros(1, 1, e)) if self.prefix else None
            self.blocks = nn.ModuleList(SuperBlock(e, self.attn_dim, self.hidden) for _ in range(space.max_depth))
            self.norm = nn.LayerNorm(e)
            self.head = nn.Linear(e, space.num_classes)
            self._reset_parameters()
        self._templates: OrderedDict[ViTSpec, VisionTransformer] = OrderedDict()

    def _reset_parameters(self) -> None:
        """The init of vit.py: trunc-normal(0.02) linears, positions and class token; unit norms; torch's conv init."""
        for p in self.pos_embeds.values():
            nn.init.trunc_normal_(p, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ---- the sub-network ------------------------------------------------------------------
    def check_fits(self, spec: ViTSpec) -> None:
        """SpecError naming the field if `spec` does not fit inside the supernet's weights."""
        sp, where = self.space, spec.name or "spec"
        fixed = {"in_channels": sp.in_channels, "num_classes": sp.num_classes, "pool": sp.pool}
        for name, want in fixed.items():
            if getattr(spec, name) != want:
                raise SpecError(f"{where}: {name} is {getattr(spec, name)!r} but the supernet has {want!r}")
        if f"p{spec.patch_size}" not in self.patch_embeds:
            raise SpecError(f"{where}: patch_size {spec.patch_size} not in the supernet's {list(sp.patch_sizes)}")
        if f"g{spec.grid}" not in self.pos_embeds:
            raise SpecError(f"{where}: a {spec.grid}x{spec.grid} token grid (image_size {spec.image_size}) has no "
                            f"position embedding; grids: {sorted(_grids(sp))}")
        limits = (("embed_dim", spec.embed_dim, self.embed), ("depth", spec.depth, len(self.blocks)))
        for name, got, top in limits:
            if got > top:
                raise SpecError(f"{where}: {name} {got} exceeds the supernet's {top}")
        for i, b in enumerate(spec.blocks):
            if b.head_dim != self.head_dim:
                raise SpecError(f"{where}: blocks[{i}].head_dim is {b.head_dim}; the supernet's is {self.head_dim}")
            if b.attn_dim > self.attn_dim or b.mlp_hidden > self.hidden:
                raise SpecError(f"{where}: blocks[{i}] needs heads {b.heads} / mlp_hidden {b.mlp_hidden}; the "
                                f"supernet has at most {self.attn_dim // self.head_dim} / {self.hidden}")

    def subnet_state(self, spec: ViTSpec) -> dict[str, torch.Tensor]:
        """The sub-network's state dict (vit.py names and shapes, contiguous; slices keep their autograd link).

        Linears with a rank in the spec are factorised (truncated SVD of the dense slice, detached).
        """
        self.check_fits(spec)
        d = spec.embed_dim
        state = self._embedding_state(spec)
        for i, b in enumerate(spec.blocks):
            state.update(self._block_state(i, b.attn_dim, b.mlp_hidden, d))
            for name in LINEARS:
                if b.rank(name) is not None:
                    _factorise_in_place(state, f"blocks.{i}.{MODULES[name]}.", b.rank(name))
        state["norm.weight"], state["norm.bias"] = self.norm.weight[:d], self.norm.bias[:d]
        state["head.weight"], state["head.bias"] = self.head.weight[:, :d].contiguous(), self.head.bias
        return state

    def _embedding_state(self, spec: ViTSpec) -> dict[str, torch.Tensor]:
        d, conv = spec.embed_dim, self.patch_embeds[f"p{spec.patch_size}"]
        state = {"patch_embed.proj.weight": conv.weight[:d], "patch_embed.proj.bias": conv.bias[:d],
                 "pos_embed": self.pos_embeds[f"g{spec.grid}"][:, :, :d].contiguous()}
        if self.cls_token is not None:
            state["cls_token"] = self.cls_token[:, :, :d].contiguous()
        return state

    def _block_state(self, i: int, a: int, m: int, d: int) -> dict[str, torch.Tensor]:
        """Block i's dense slices: a = heads * head_dim, m = MLP hidden, d = embed dim."""
        blk, big = self.blocks[i], self.attn_dim
        qkv_w = blk.qkv.weight.view(3, big, self.embed)[:, :a, :d].reshape(3 * a, d).contiguous()
        qkv_b = blk.qkv.bias.view(3, big)[:, :a].reshape(3 * a).contiguous()
        p = f"blocks.{i}."
        return {
            p + "norm1.weight": blk.norm1.weight[:d], p + "norm1.bias": blk.norm1.bias[:d],
            p + "attn.qkv.weight": qkv_w, p + "attn.qkv.bias": qkv_b,
            p + "attn.proj.weight": blk.proj.weight[:d, :a].contiguous(), p + "attn.proj.bias": blk.proj.bias[:d],
            p + "norm2.weight": blk.norm2.weight[:d], p + "norm2.bias": blk.norm2.bias[:d],
            p + "mlp.fc1.weight": blk.fc1.weight[:m, :d].contiguous(), p + "mlp.fc1.bias": blk.fc1.bias[:m],
            p + "mlp.fc2.weight": blk.fc2.weight[:d, :m].contiguous(), p + "mlp.fc2.bias": blk.fc2.bias[:d],
        }

    def template(self, spec: ViTSpec) -> VisionTransformer:
        """A parameter-less (meta device) VisionTransformer for `spec`, cached, to run with functional_call."""
        key = replace(spec, name="")
        model = self._templates.get(key)
        if model is None:
            with torch.device("meta"):
                model = VisionTransformer(key, self.preprocess)
            self._templates[key] = model
            if len(self._templates) > TEMPLATE_CACHE:
                self._templates.popitem(last=False)
        else:
            self._templates.move_to_end(key)
        return model

    # ---- running ------------------------------------------------------------------------------
    def prepare(self, images_uint8: torch.Tensor, spec: ViTSpec) -> torch.Tensor:
        """uint8 [B, C, H, W] -> the sub-network's float input [B, C, s, s]: resized to spec.image_size, normalised."""
        return self.preprocess.apply_torch(resize_tensor(images_uint8, spec.image_size))

    def run(self, x: torch.Tensor, spec: ViTSpec, state: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Sub-network on prepared input x [B, C, s, s] -> logits [B, K]; `state` defaults to subnet_state(spec)."""
        return functional_call(self.template(spec), self.subnet_state(spec) if state is None else state, (x,),
                               strict=True)

    def forward(self, images_uint8: torch.Tensor, spec: ViTSpec) -> torch.Tensor:
        """Logits [B, K] of the sub-network `spec` for uint8 images [B, C, H, W] at the dataset's size."""
        return self.run(self.prepare(images_uint8, spec), spec)

    def extract(self, spec: ViTSpec) -> VisionTransformer:
        """A standalone eval-mode VisionTransformer for `spec` with the inherited weights and this preprocess."""
        from edgevit.model.checkpoint import model_from_state_dict

        with torch.no_grad():
            state = {k: v.detach().clone() for k, v in self.subnet_state(spec).items()}
        return model_from_state_dict(spec, state, self.preprocess, f"supernet slice for {spec.name or 'spec'}")

    # ---- in-memory transport (e.g. ray.put) ------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """Everything to rebuild this supernet, as plain data + CPU tensors (picklable, no file paths)."""
        return {"format": FORMAT, "space": self.space.to_dict(), "preprocess": self.preprocess.to_dict(),
                "seed": self.seed, "state": {k: v.detach().clone() for k, v in self.state_dict().items()}}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "Supernet":
        """Inverse of `to_payload` (eval mode)."""
        sn = cls(_space_from_dict(payload["space"]), Normalization.from_dict(payload["preprocess"]),
                 payload.get("seed", 0))
        sn.load_state_dict(payload["state"])
        return sn.eval()


def _space_from_dict(d: dict[str, Any]):
    from edgevit.nas.space import SearchSpace

    return SearchSpace.from_dict(d)


def svd_factors(w: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced truncated SVD of w [out, in] -> (a [rank, in], b [out, rank]) float32, b @ a ~= w.

    `passes.lowrank.balanced_factors` of the float64 SVD (the lowrank pass's factors); a rank beyond
    min(out, in) is padded with zero rows / columns.
    """
    from edgevit.passes.lowrank import balanced_factors

    u, s, vt = np.linalg.svd(w.detach().double().cpu().numpy(), full_matrices=False)
    r = min(rank, len(s))
    a = np.zeros((rank, w.shape[1]))
    b = np.zeros((w.shape[0], rank))
    a[:r], b[:, :r] = balanced_factors(u, s, vt, r)
    return torch.from_numpy(a).float(), torch.from_numpy(b).float()


def _factorise_in_place(state: dict[str, torch.Tensor], prefix: str, rank: int) -> None:
    """Replace state[prefix+'weight'/'bias'] by the LowRankLinear entries a.weight, b.weight, b.bias."""
    a, b = svd_factors(state.pop(prefix + "weight"), rank)
    state[prefix + "a.weight"], state[prefix + "b.weight"] = a, b
    state[prefix + "b.bias"] = state.pop(prefix + "bias")


def subnet_accuracy(supernet: Supernet, spec: ViTSpec, ds, limit: int | None = None, batch_size: int = 500) -> float:
    """Top-1 in [0, 1] of sub-network `spec` on the first `limit` images of `ds` (uint8 [N, C, H, W]); no grad."""
    n = len(ds) if limit is None else min(int(limit), len(ds))
    if n == 0:
        return 0.0
    was_training = supernet.training
    supernet.eval()
    correct = 0
    with torch.inference_mode():
        state = supernet.subnet_state(spec)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            x = supernet.prepare(torch.from_numpy(np.ascontiguousarray(ds.images[start:stop])), spec)
            pred = supernet.run(x, spec, state).argmax(1).numpy()
            correct += int((pred == ds.labels[start:stop]).sum())
    supernet.train(was_training)
    return correct / n


# ---- files ------------------------------------------------------------------------------------------
def save_supernet(supernet: Supernet, out: Path, info: dict[str, Any] | None = None) -> Path:
    """Write `out/supernet.safetensors` atomically (weights; metadata: space, preprocess, seed, info)."""
    from safetensors.torch import save_file

    out = Path(out)
    make_dir(out)
    meta = {"format": FORMAT, "space": json.dumps(supernet.space.to_dict()),
            "preprocess": json.dumps(supernet.preprocess.to_dict()), "seed": str(supernet.seed),
            "info": json.dumps(info or {}, sort_keys=True)}
    tensors = {k: v.detach().contiguous().clone() for k, v in supernet.state_dict().items()}
    return write_file_atomically(out / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def supernet_info(path: Path) -> dict[str, Any]:
    """The `info` metadata (step, history, ...) of a saved supernet (directory or .safetensors file)."""
    from edgevit.model.checkpoint import read_metadata

    return json.loads(read_metadata(weights_path(path)).get("info", "{}"))


def weights_path(path: Path) -> Path:
    """The weights file of a saved supernet: `path` itself or `path/supernet.safetensors`; CheckpointError if none."""
    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{path}: no supernet here (expected a directory with {WEIGHTS_FILE} or that file); "
                              "train one with `edgevit search`")
    return weights


def load_supernet(path: Path) -> Supernet:
    """Load a supernet written by `save_supernet` / `train_supernet` (directory or file), in eval mode."""
    from safetensors.torch import load_file

    from edgevit.model.checkpoint import read_metadata

    weights = weights_path(path)
    meta = read_metadata(weights)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: not an edgevit supernet (format {meta.get('format')!r})")
    try:
        payload = {"space": json.loads(meta["space"]), "preprocess": json.loads(meta["preprocess"]),
                   "seed": int(meta.get("seed", 0)), "state": load_file(str(weights))}
        return Supernet.from_payload(payload)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{weights}: damaged supernet checkpoint ({e}); delete it and train again") from None


def train_supernet(space, splits, out: Path, config: SupernetConfig | None = None,
                   time_budget_s: float | None = None,
                   progress: Callable[[int, int, float], None] | None = None) -> Supernet:
    """Train a supernet for `space` on `splits.train` (sandwich rule), checkpointed in `out`, resumable.

    See `edgevit.nas.supernet_train.train_supernet` for the details.
    """
    from edgevit.nas.supernet_train import train_supernet as _train

    return _train(space, splits, Path(out), config or SupernetConfig(), time_budget_s, progress)
