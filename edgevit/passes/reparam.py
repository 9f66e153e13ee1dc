"""Function-preserving and weight-side edits the quant pass makes to the float model.

- `reparam_layernorms` (after RepQ-ViT): post-LayerNorm activations vary wildly between
  channels, which per-tensor quantization handles badly. Each LayerNorm output channel c is
  re-expressed as y_c = (x_c - delta_c) / r_c: the LayerNorm affine absorbs it
  (gamma_c / r_c, (beta_c - delta_c) / r_c) and the next linear undoes it exactly (weight
  columns times r_c, bias plus W delta; for a low-rank linear the `.a` columns and the `.b`
  bias). delta_c centres every channel's calibrated range on 0 and
  r_c = (width_c / mean width)^alpha equalises the widths (alpha 1 = RepQ-ViT; smaller alpha
  leaves more of the variation in the activations and less in the weight columns).
- `clip_weights`: per output channel, the clipping of |w| minimising the input-weighted
  quantization error sum_k E[x_k^2] (w_k - Q(w_k))^2 (used for 4-bit weights; the int8
  lowering then takes scale = max|w| / qmax of the clipped row), optionally followed by
  GPTQ rounding (`gptq`).
- `correct_biases`: adds (W - Q) E[x] to each bias so that weight clipping and rounding do not
  shift the mean output (bias correction, Nagel et al. 2019).

A DeiT-distilled model with pool "cls_dist" has two classifiers after the final LayerNorm (`head`
on the class token, `head_dist` on the distillation token); the Program applies them as ONE
folded linear `head.weight` = [W_head | W_head_dist] / 2 on `normed.flat` [1, 2D]
(`edgevit.lower.from_model.fold_distilled_head`). Re-parameterisation folds the final
LayerNorm's channel affine into both; the weight edits see the folded linear (`FoldedHead`) and
write back into both heads exactly (halves doubled), so the int8 lowering's fold recovers the
edited weight bit for bit.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from edgevit.lower.from_model import fold_distilled_head
from edgevit.model.vit import LowRankLinear, VisionTransformer
from edgevit.passes.calibrate import TensorStats, fake_quant_weight
from edgevit.passes.gptq import gptq_rows, row_scales

CLIP_GRID = np.linspace(0.4, 1.0, 31)
MIN_WIDTH = 1e-6


class FoldedHead:
    """The folded classifier of a pool "cls_dist" model as one linear view: `weight` [K, 2D] =
    [W_head | W_head_dist] / 2 and `bias` [K] = (b_head + b_head_dist) / 2 (fresh tensors);
    `set_weight` / `set_bias` write an edited folded linear back into both heads."""

    def __init__(self, head: nn.Linear, head_dist: nn.Linear) -> None:
        self.head, self.head_dist = head, head_dist

    @property
    def weight(self) -> torch.Tensor:
        w, _ = fold_distilled_head(self.head.weight, self.head.bias, self.head_dist.weight, self.head_dist.bias)
        return torch.from_numpy(w)

    @property
    def bias(self) -> torch.Tensor:
        _, b = fold_distilled_head(self.head.weight, self.head.bias, self.head_dist.weight, self.head_dist.bias)
        return torch.from_numpy(b)

    @torch.no_grad()
    def set_weight(self, w: torch.Tensor) -> None:
        """W_head = 2 w[:, :D], W_head_dist = 2 w[:, D:] (exact)."""
        d = self.head.in_features
        self.head.weight.copy_(w[:, :d] * 2)
        self.head_dist.weight.copy_(w[:, d:] * 2)

    @torch.no_grad()
    def set_bias(self, b: torch.Tensor) -> None:
        """Shift both biases by (b - current folded bias): their average becomes b."""
        delta = b.double() - self.bias.double()
        self.head.bias.copy_((self.head.bias.double() + delta).float())
        self.head_dist.bias.copy_((self.head_dist.bias.double() + delta).float())


@torch.no_grad()
def set_weight(lin, w: torch.Tensor) -> None:
    """Write weight `w` [M, K] into an nn.Linear or a FoldedHead."""
    if isinstance(lin, FoldedHead):
        lin.set_weight(w)
    else:
        lin.weight.copy_(w)


@torch.no_grad()
def set_bias(lin, b: torch.Tensor) -> None:
    """Write bias `b` [M] into an nn.Linear or a FoldedHead."""
    if isinstance(lin, FoldedHead):
        lin.set_bias(b)
    else:
        lin.bias.copy_(b)


def classifier_heads(model: VisionTransformer) -> tuple[nn.Linear, ...]:
    """The linears reading the final LayerNorm: (head,), or (head, head_dist) for pool "cls_dist"."""
    return (model.head, model.head_dist) if model.spec.pool == "cls_dist" else (model.head,)


def ln_linear_pairs(model: VisionTransformer) -> Iterator[tuple[nn.LayerNorm, tuple[nn.Module, ...], str]]:
    """(LayerNorm, the linears reading its output, the output tensor's Program name) for every LayerNorm."""
    for i, blk in enumerate(model.blocks):
        yield blk.norm1, (blk.attn.qkv,), f"t{i}.ln1"
        yield blk.norm2, (blk.mlp.fc1,), f"t{i}.ln2"
    yield model.norm, classifier_heads(model), "normed"


def linear_inputs(model: VisionTransformer) -> Iterator[tuple[str, nn.Linear, str]]:
    """(weight constant name, nn.Linear, Program name of its input tensor) for every dense linear.

    For pool "cls_dist" the classifier is the FoldedHead `head.weight` reading `normed.flat`."""
    for i, blk in enumerate(model.blocks):
        p, t = f"blocks.{i}", f"t{i}"
        for prefix, mod, x, out in ((f"{p}.attn.qkv", blk.attn.qkv, f"{t}.ln1", f"{t}.qkv"),
                                    (f"{p}.attn.proj", blk.attn.proj, f"{t}.attn", f"{t}.proj"),
                                    (f"{p}.mlp.fc1", blk.mlp.fc1, f"{t}.ln2", f"{t}.fc1"),
                                    (f"{p}.mlp.fc2", blk.mlp.fc2, f"{t}.gelu", f"{t}.fc2")):
            if isinstance(mod, LowRankLinear):
                yield f"{prefix}.a.weight", mod.a, x
                yield f"{prefix}.b.weight", mod.b, f"{out}.a"
            else:
                yield f"{prefix}.weight", mod, x
    if model.spec.pool == "cls_dist":
        yield "head.weight", FoldedHead(model.head, model.head_dist), "normed.flat"
    else:
        yield "head.weight", model.head, "normed"


def channel_factors(ch_min: np.ndarray, ch_max: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(r, delta) per channel: centre each range [min_c, max_c] on 0 and scale its width by 1/r_c."""
    width = np.maximum(ch_max - ch_min, MIN_WIDTH).astype(np.float64)
    r = (width / width.mean()) ** float(alpha)
    return r, (ch_max + ch_min).astype(np.float64) / 2.0


@torch.no_grad()
def fold_channel_affine(ln: nn.LayerNorm, linears: tuple[nn.Module, ...], r: np.ndarray, delta: np.ndarray) -> None:
    """In place: LayerNorm output y_c -> (y_c - delta_c) / r_c, undone inside every linear reading it (exact in reals)."""
    r_t = torch.as_tensor(r, dtype=torch.float64)
    d_t = torch.as_tensor(delta, dtype=torch.float64)
    for linear in linears:
        undo_channel_affine(linear, r_t, d_t)
    ln.bias.copy_(((ln.bias.double() - d_t) / r_t).float())
    ln.weight.copy_((ln.weight.double() / r_t).float())


@torch.no_grad()
def undo_channel_affine(linear: nn.Module, r_t: torch.Tensor, d_t: torch.Tensor) -> None:
    """In place: `linear` applied to (y - delta) / r gives what it gave on y (columns times r, bias plus W delta)."""
    first = linear.a if isinstance(linear, LowRankLinear) else linear
    last = linear.b if isinstance(linear, LowRankLinear) else linear
    w_first = first.weight.double()
    shift = w_first @ d_t  # the constant the removed delta contributed after the first factor
    if isinstance(linear, LowRankLinear):
        shift = last.weight.double() @ shift
    if last.bias is None:
        raise ValueError("re-parameterisation needs a bias on the linear after a LayerNorm")
    last.bias.copy_((last.bias.double() + shift).float())
    first.weight.copy_((w_first * r_t[None, :]).float())


def reparam_layernorms(model: VisionTransformer, stats: dict[str, TensorStats], alpha: float = 1.0) -> list[str]:
    """Re-parameterise every LayerNorm -> linear pair of `model` in place from calibration stats.

    Returns the names of the re-parameterised LayerNorm output tensors.
    """
    done = []
    for ln, linears, tensor in ln_linear_pairs(model):
        s = stats[tensor]
        r, delta = channel_factors(s.ch_min, s.ch_max, alpha)
        fold_channel_affine(ln, linears, r, delta)
        done.append(tensor)
    return done


def clip_rows(w: np.ndarray, bits: int, importance: np.ndarray | None = None) -> np.ndarray:
    """Clip each row of w [M, K] to the +-c (c on a grid of max|w_row|) minimising weighted rounding error."""
    qmax = (1 << (bits - 1)) - 1
    imp = np.ones(w.shape[1]) if importance is None else np.maximum(importance, 1e-12)
    amax = np.maximum(np.abs(w).max(axis=1), 1e-12).astype(np.float64)  # [M]
    scales = CLIP_GRID[:, None] * amax[None, :] / qmax  # [G, M]
    w64 = w.astype(np.float64)[None]  # [1, M, K]
    q = np.clip(np.floor(w64 / scales[..., None] + 0.5), -qmax, qmax) * scales[..., None]
    err = ((q - w64) ** 2) @ imp  # [G, M]
    clip = CLIP_GRID[np.argmin(err, axis=0)] * amax  # [M]
    return np.clip(w, -clip[:, None], clip[:, None]).astype(np.float32)


@torch.no_grad()
def clip_weights(model: VisionTransformer, bits_of, stats: dict[str, TensorStats], only_bits: int = 4,
                 gptq: bool = False) -> list[str]:
    """Round the rows of every `only_bits`-bit linear weight better than the lowering's plain rounding.

    In place: each row is clipped to its error-optimal range; with `gptq` (needs Gram matrices in
    `stats`) the clipped rows are then quantized with GPTQ error feedback and left on their grid.
    Returns the weight names edited.
    """
    done = []
    for name, lin, x in linear_inputs(model):
        if bits_of(name) != only_bits:
            continue
        s = stats.get(x)
        imp = None if s is None else s.ch_sq / max(s.rows, 1)
        w = clip_rows(lin.weight.detach().numpy(), only_bits, imp)
        if gptq and s is not None and s.gram is not None:
            w = gptq_rows(w, s.gram / max(s.rows, 1), row_scales(w, only_bits), only_bits)
        set_weight(lin, torch.from_numpy(w))
        done.append(name)
    return done


def weight_snapshot(model: VisionTransformer) -> dict[str, np.ndarray]:
    """Copies of every linear weight (name -> float32 [M, K])."""
    return {name: lin.weight.detach().numpy().copy() for name, lin, _ in linear_inputs(model)}


@torch.no_grad()
def correct_biases(model: VisionTransformer, bits_of, stats: dict[str, TensorStats],
                   original: dict[str, np.ndarray] | None = None) -> list[str]:
    """bias += (W - Q) E[x] for every linear with a bias (in place); returns their weight names.

    W is the weight before any clipping / GPTQ (`original`, default: the current weight) and Q
    the weight the int8 lowering will use (the current weight on its per-row grid).
    """
    done = []
    for name, lin, x in linear_inputs(model):
        if lin.bias is None or x not in stats:
            continue
        cur = lin.weight.detach().numpy()
        w = (original or {}).get(name, cur).astype(np.float64)
        dw = w - fake_quant_weight(cur, bits_of(name)).astype(np.float64)
        set_bias(lin, torch.from_numpy((lin.bias.detach().numpy() + dw @ stats[x].ch_mean).astype(np.float32)))
        done.append(name)
    return done
