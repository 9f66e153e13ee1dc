"""timm `VisionTransformer` state_dicts -> a ViTSpec and an edgevit state_dict.

The timm key layout (patch_embed.proj, cls_token, dist_token, pos_embed,
blocks.N.{norm1, attn.qkv, attn.proj, ls1, norm2, mlp.fc1, mlp.fc2, ls2}, norm | fc_norm,
head, head_dist) is also the canonical form the Hugging Face importer renames into. The spec
comes from the tensor shapes, except the head count (give it) and the LayerNorm eps (timm: 1e-6).

Variants that reduce exactly to a ViTSpec are converted, each with a note:
- no qkv bias (`qkv_bias=False`), no patch-embedding bias: zero biases;
- LayerScale (`ls1.gamma`, `ls2.gamma`): y = g * (W x + b) is folded into the preceding linear,
  W' = diag(g) W and b' = g * b (attn.proj for ls1, mlp.fc2 for ls2);
- position embeddings without the prefix slots (`no_embed_class=True`): timm adds them to the
  patch tokens only, which equals zero position embeddings on the class/distillation tokens;
- a distillation token (DeiT): with `head_dist`, pool "cls_dist" (DeiT's averaged heads); without
  it (Hugging Face `DeiTForImageClassification`), pool "cls" on the class token;
- no class token with average pooling (`fc_norm`): pool "mean" (timm normalises the mean).
Everything else is refused by `refuse_unsupported` / `_pooling` naming the real cause, and a key
no rule explains is refused by name: never a silent mis-import.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from edgevit.errors import CheckpointError
from edgevit.model.spec import BlockSpec, ViTSpec

TIMM_NORM_EPS = 1e-6

# key pattern -> what it means; checked before anything else so the real cause is named
UNSUPPORTED = (
    (r"^norm_pre\.", "a LayerNorm before the blocks (pre_norm / norm_pre)"),
    (r"^reg_token$", "register tokens (reg_tokens)"),
    (r"\.attn\.[qk]_norm\.", "q/k normalisation (qk_norm)"),
    (r"\.attn\.norm\.", "a LayerNorm inside attention (scale_attn_norm)"),
    (r"\.mlp\.norm\.", "a LayerNorm inside the MLP (scale_mlp_norm)"),
    (r"\.mlp\.(fc1_g|fc1_x|w12|w3)\.", "a gated MLP (SwiGLU)"),
    (r"^attn_pool\.", "attention pooling (global_pool='map')"),
    (r"^patch_embed\.norm\.", "a LayerNorm after the patch embedding (embed_norm_layer)"),
    (r"^patch_embed\.backbone\.", "a CNN stem (hybrid ViT)"),
    (r"\.attn\.(q_bias|v_bias|relative_position)",
     "BEiT/EVA-style attention (separate q/v biases, relative positions)"),
    (r"^rope\.|\.rope\.", "rotary position embeddings"),
)
HEADS_HINT = "ViT/DeiT-Tiny 3, -Small 6, -Base 12, -Large 16"


@dataclass
class Converted:
    """A converted checkpoint: the spec, the state_dict in edgevit's key names, and notes for the user."""

    spec: ViTSpec
    state: dict[str, torch.Tensor]
    notes: list[str] = field(default_factory=list)


def refuse_unsupported(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError for the first key that means a variant edgevit's ViT cannot express."""
    for pattern, what in UNSUPPORTED:
        for key in state:
            if re.search(pattern, key):
                raise CheckpointError(f"{source}: key {key!r} means {what}, which edgevit's ViT cannot express; "
                                      "such a model cannot be imported exactly")


def convert_timm_state(
    state: Mapping[str, torch.Tensor], *, heads: int | Sequence[int] | None, source: str = "state_dict",
    norm_eps: float = TIMM_NORM_EPS, global_pool: str | None = None, image_size: int | None = None,
    name: str = "", heads_option: str = "--heads N (Python: heads=N) or --config FILE (a JSON/YAML file with `heads`)",
) -> Converted:
    """Convert a timm-layout state_dict (tensors by name) into a spec + edgevit state_dict.

    heads: attention heads in every block, or one count per block (None: refused, naming `heads_option`,
    once every other check passed); global_pool and image_size: what a config said, checked against
    the weights. Raises CheckpointError naming the key.
    """
    state = {k: v.detach().to(torch.float32) for k, v in state.items()}
    refuse_unsupported(state, source)
    notes: list[str] = []
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}

    d, c, p = _patch_embed(state, out, used, notes, source)
    prefix, pool, distill = _pooling(state, global_pool, source)
    for key, new in (("cls_token", "cls_token"), ("dist_token", "dist_token")):
        if key in state:
            out[new] = state[key]
            used.add(key)
    grid = _pos_embed(state, out, used, notes, prefix, source)
    if image_size is not None and image_size != grid * p:
        raise CheckpointError(f"{source}: the config says image_size {image_size}, but the position embeddings "
                              f"cover a {grid} x {grid} grid of {p}-pixel patches ({grid * p} pixels); edgevit does "
                              "not interpolate position embeddings")
    depth = _depth(state, source)
    widths = [_block(state, out, used, i, notes, source) for i in range(depth)]  # (attention width, mlp hidden)
    _final_norm_and_heads(state, out, used, pool, source)
    leftover = sorted(set(state) - used)
    if leftover:
        raise CheckpointError(f"{source}: unexpected key {leftover[0]!r} (shape {tuple(state[leftover[0]].shape)}): "
                              "not part of a timm VisionTransformer edgevit can import"
                              + (f" ({len(leftover) - 1} more)" if len(leftover) > 1 else ""))
    if heads is None:
        raise CheckpointError(f"{source}: the head count (attention heads per block) cannot be inferred from tensor "
                              f"shapes (embed_dim {d}, attention width {widths[0][0]}); pass {heads_option} "
                              f"({HEADS_HINT})")
    per_block = [heads] * depth if isinstance(heads, int) else list(heads)
    if len(per_block) != depth:
        raise CheckpointError(f"{source}: the checkpoint has {depth} blocks but {len(per_block)} head counts "
                              "were given")
    blocks = []
    for i, (h, (width, hidden)) in enumerate(zip(per_block, widths)):
        if width % h:
            raise CheckpointError(f"{source}: blocks.{i}.attn.qkv has {3 * width} outputs: not 3 x {h} heads x a "
                                  "head size; check the head count")
        blocks.append(BlockSpec(heads=h, head_dim=width // h, mlp_hidden=hidden))
    _summarise_notes(notes)
    spec = ViTSpec(image_size=grid * p, in_channels=c, patch_size=p, embed_dim=d,
                   num_classes=out["head.weight"].shape[0], blocks=tuple(blocks), pool=pool, name=name,
                   norm_eps=norm_eps, distill_token=distill)
    return Converted(spec, out, notes)


def _need(state: Mapping[str, torch.Tensor], key: str, source: str, what: str = "") -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key!r}{what or ', needed to infer the architecture'}")
    return state[key]


def _patch_embed(state, out, used, notes, source) -> tuple[int, int, int]:
    w = _need(state, "patch_embed.proj.weight", source, " (the patch embedding convolution)")
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise CheckpointError(f"{source}: patch_embed.proj.weight has shape {tuple(w.shape)}; expected "
                              "[embed_dim, channels, patch, patch] (square patches)")
    d, c, p, _ = w.shape
    out["patch_embed.proj.weight"] = w
    used.add("patch_embed.proj.weight")
    if "patch_embed.proj.bias" in state:
        out["patch_embed.proj.bias"] = state["patch_embed.proj.bias"]
        used.add("patch_embed.proj.bias")
    else:
        out["patch_embed.proj.bias"] = torch.zeros(d)
        notes.append("the patch embedding has no bias: imported with a zero bias (exact)")
    return d, c, p


def _pooling(state, global_pool: str | None, source: str) -> tuple[int, str, bool]:
    """(prefix tokens, edgevit pool, distill_token) from the keys and what a config says of pooling."""
    has_cls, has_dist = "cls_token" in state, "dist_token" in state
    has_norm, has_fc_norm = "norm.weight" in state, "fc_norm.weight" in state
    if global_pool is not None and global_pool not in ("token", "avg"):
        raise CheckpointError(f"{source}: global_pool {global_pool!r} is not supported; edgevit pools the class "
                              "token ('token') or the mean of the tokens without a class token ('avg')")
    if has_dist and not has_cls:
        raise CheckpointError(f"{source}: a distillation token (dist_token) without a class token (cls_token)")
    if has_norm and has_fc_norm:
        raise CheckpointError(f"{source}: both norm and fc_norm: a LayerNorm before and after pooling, which "
                              "edgevit's ViT cannot express")
    if not has_norm and not has_fc_norm:
        raise CheckpointError(f"{source}: missing key 'norm.weight' (or 'fc_norm.weight'): edgevit's ViT needs a "
                              "final LayerNorm (timm final_norm=False cannot be expressed)")
    if has_cls and (has_fc_norm or global_pool == "avg"):
        raise CheckpointError(f"{source}: a class token with average pooling over the patch tokens "
                              f"({'fc_norm' if has_fc_norm else 'global_pool=avg'}): edgevit pools either the "
                              "class token or the mean of all tokens of a model without a class token, and "
                              "no exact reduction exists while the class token takes part in attention")
    if not has_cls and (has_norm or global_pool == "token"):
        raise CheckpointError(f"{source}: no class token (cls_token) but "
                              + ("token pooling (global_pool='token')" if global_pool == "token" else
                                 "a final 'norm' before pooling (timm pools token 0 with global_pool='token', or "
                                 "averages normalised tokens with fc_norm=False)")
                              + ": edgevit's mean pooling normalises the mean of the tokens (timm fc_norm)")
    if not has_cls:
        return 0, "mean", False
    if has_dist:
        return 2, ("cls_dist" if "head_dist.weight" in state else "cls"), True
    return 1, "cls", False


def _pos_embed(state, out, used, notes, prefix: int, source: str) -> int:
    pos = _need(state, "pos_embed", source, " (learned position embeddings; a model without them cannot be imported)")
    d = out["patch_embed.proj.weight"].shape[0]
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != d:
        raise CheckpointError(f"{source}: pos_embed has shape {tuple(pos.shape)}; expected [1, tokens, {d}]")
    n = pos.shape[1]
    grid = math.isqrt(n - prefix) if n >= prefix else 0
    if grid > 0 and grid * grid == n - prefix:
        out["pos_embed"] = pos
    elif prefix and math.isqrt(n) ** 2 == n:
        grid = math.isqrt(n)
        out["pos_embed"] = torch.cat([torch.zeros(1, prefix, d), pos], dim=1)
        notes.append(f"position embeddings without the {'class/distillation' if prefix == 2 else 'class'} token "
                     "slot (no_embed_class): imported with zero position embeddings on that slot (exact)")
    else:
        raise CheckpointError(f"{source}: pos_embed has {n} positions: not a square grid of patches plus "
                              f"{prefix} prefix token(s); edgevit needs square images")
    used.add("pos_embed")
    return grid


def _depth(state, source: str) -> int:
    found = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if not found:
        raise CheckpointError(f"{source}: no transformer blocks (no 'blocks.N.' keys)")
    if found != list(range(len(found))):
        missing = sorted(set(range(found[-1] + 1)) - set(found))
        raise CheckpointError(f"{source}: blocks are not numbered 0..{found[-1]}: no keys for block {missing[0]}")
    return len(found)


def _block(state, out, used, i: int, notes: list[str], source: str) -> tuple[int, int]:
    """Convert block i into `out`; returns (attention width, MLP hidden width)."""
    k = f"blocks.{i}."
    names = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
             "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")
    for name in names:
        out[k + name] = _need(state, k + name, source, " (every block needs it)")
        used.add(k + name)
    three_a = out[k + "attn.qkv.weight"].shape[0]
    if three_a % 3:
        raise CheckpointError(f"{source}: {k}attn.qkv has {three_a} outputs: not q, k and v of equal width")
    if k + "attn.qkv.bias" in state:
        out[k + "attn.qkv.bias"] = state[k + "attn.qkv.bias"]
        used.add(k + "attn.qkv.bias")
    else:
        out[k + "attn.qkv.bias"] = torch.zeros(three_a)
        notes.append(f"block {i}: no qkv bias (qkv_bias=False): imported with a zero bias (exact)")
    for ls, linear in (("ls1", "attn.proj"), ("ls2", "mlp.fc2")):
        gamma_key = f"{k}{ls}.gamma"
        if gamma_key in state:
            gamma = state[gamma_key].double()
            if gamma.shape != out[k + linear + ".bias"].shape:
                raise CheckpointError(f"{source}: {gamma_key} has shape {tuple(gamma.shape)}; expected "
                                      f"{tuple(out[k + linear + '.bias'].shape)}")
            out[k + linear + ".weight"] = (out[k + linear + ".weight"].double() * gamma[:, None]).float()
            out[k + linear + ".bias"] = (out[k + linear + ".bias"].double() * gamma).float()
            used.add(gamma_key)
            notes.append(f"block {i}: LayerScale {ls}.gamma folded into {linear} (weight rows and bias scaled)")
    return three_a // 3, out[k + "mlp.fc1.weight"].shape[0]


def _final_norm_and_heads(state, out, used, pool: str, source: str) -> None:
    norm = "norm" if "norm.weight" in state else "fc_norm"
    for part in ("weight", "bias"):
        out[f"norm.{part}"] = _need(state, f"{norm}.{part}", source, " (the final LayerNorm)")
        used.add(f"{norm}.{part}")
    heads = ("head", "head_dist") if pool == "cls_dist" else ("head",)
    for head in heads:
        for part in ("weight", "bias"):
            out[f"{head}.{part}"] = _need(state, f"{head}.{part}", source,
                                          " (the classifier; a model without a classification head "
                                          "(num_classes=0) cannot be imported)")
            used.add(f"{head}.{part}")


def _summarise_notes(notes: list[str]) -> None:
    """Merge the per-block notes that repeat in every block into one line each (in place)."""
    per_block: dict[str, list[str]] = {}
    rest = []
    for note in notes:
        m = re.match(r"block (\d+): (.*)", note)
        if m:
            per_block.setdefault(m.group(2), []).append(m.group(1))
        else:
            rest.append(note)
    notes[:] = rest + [f"{'block ' + idx[0] if len(idx) == 1 else 'blocks ' + ', '.join(idx)}: {what}"
                       for what, idx in per_block.items()]
