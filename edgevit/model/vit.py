"""The torch module built from a ViTSpec.

Parameter names follow timm's `VisionTransformer` (patch_embed.proj, cls_token,
pos_embed, blocks.N.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2, norm,
head) so that timm-format state_dicts load by name. A low-rank linear of rank r is
two linears, `<name>.a` (in -> r, no bias) and `<name>.b` (r -> out, with bias).

Semantics (the reference interpreter follows them): LayerNorm eps from the spec;
exact (erf) GELU; attention softmax(q k^T / sqrt(head_dim)) v per head; pooling
selects the class token or averages all tokens, then `norm`, then `head`.

DeiT distillation (spec.distill_token): a parameter `dist_token` [1, 1, D] follows the class
token (tokens [cls, dist, patches...]); with pool "cls_dist" a second classifier `head_dist`
reads the normed distillation token and the logits are (head(n[:, 0]) + head_dist(n[:, 1])) / 2
with n = norm(x[:, :2]) (DeiT's inference); with pool "cls" only `head` on the class token counts
(Hugging Face `DeiTForImageClassification`).

Token merging (ToMe, `merge_r` > 0 in a block's spec): after the block's attention
residual and before its MLP, `bipartite_merge` merges the r most similar token pairs
(cosine similarity of the attention keys averaged over heads; class token protected)
by size-weighted averaging; with a distillation token (2 prefix tokens) it is never a merge
destination and stays row 1 (ToMe's rule). Token sizes (how many patches a token stands for) flow
through the blocks, and every later attention adds log(size_j) to its scores
(proportional attention). The exact rules are the `token_merge` op's
(`edgevit/lower/ops/token_merge.py`); blocks take and return `(tokens, sizes)`.
The module carries `spec` and `preprocess` (input normalisation), so a model object
is everything needed to lower and deploy it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgevit.data.normalize import Normalization
from edgevit.model.spec import BlockSpec, ViTSpec


class LowRankLinear(nn.Module):
    """y = b(a(x)): in_features -> rank -> out_features; x [..., in] -> [..., out]."""

    def __init__(self, in_features: int, rank: int, out_features: int) -> None:
        super().__init__()
        self.a = nn.Linear(in_features, rank, bias=False)
        self.b = nn.Linear(rank, out_features)
        self.in_features, self.rank, self.out_features = in_features, rank, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The [out, in] weight a Linear or LowRankLinear applies (b.weight @ a.weight for a factorised one)."""
    if isinstance(module, LowRankLinear):
        return module.b.weight @ module.a.weight
    return module.weight


def linear_bias(module: nn.Module) -> torch.Tensor | None:
    """The output bias [out] of a Linear or LowRankLinear (None if it has none)."""
    return module.b.bias if isinstance(module, LowRankLinear) else module.bias


def make_linear(in_features: int, out_features: int, rank: int | None) -> nn.Module:
    """A dense nn.Linear, or a LowRankLinear when `rank` is given."""
    if rank is None:
        return nn.Linear(in_features, out_features)
    return LowRankLinear(in_features, rank, out_features)


class Attention(nn.Module):
    """Multi-head self-attention: x [B, N, D] (+ sizes [B, N]) -> ([B, N, D], keys [B, N, hd] or None).

    With token sizes, log(size_j) is added to every score of key j (proportional attention).
    The keys averaged over heads (the token-merging metric) are returned when the block merges.
    """

    def __init__(self, dim: int, block: BlockSpec) -> None:
        super().__init__()
        self.heads, self.head_dim = block.heads, block.head_dim
        self.scale = 1.0 / math.sqrt(block.head_dim)
        self.return_keys = block.merge_r > 0
        self.qkv = make_linear(dim, 3 * block.attn_dim, block.rank("qkv"))
        self.proj = make_linear(block.attn_dim, dim, block.rank("proj"))

    def forward(self, x: torch.Tensor, size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, N, hd]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if size is not None:
            attn = attn + size.log()[:, None, None, :]
        out = attn.softmax(dim=-1) @ v  # [B, H, N, hd]
        keys = k.double().mean(dim=1) if self.return_keys else None
        return self.proj(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)), keys


def merge_order(keys: torch.Tensor, r: int, protect: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ToMe bipartite soft matching on keys [B, N, hd] -> (src [B, r], dst [B, r], kept [B, Na - r]).

    Set A = even token positions, set B = odd ones; cosine similarity in float64; the first
    `protect` tokens (0, 1 or 2: class and distillation tokens) are never merged: protected A tokens
    (position 0) are never sources, protected B tokens (position 1) never destinations. Each A
    token's best B token is the most similar (ties: lowest index); the r A tokens with the highest
    best similarity (ties: lowest index) merge into their best B token (`src` -> `dst`, indices
    within A and B); `kept` are the other A tokens in ascending order. No gradient flows through
    the matching.
    """
    with torch.no_grad():
        metric = keys.double()
        norm = metric.norm(dim=-1, keepdim=True)
        metric = torch.where(norm > 0, metric / norm.clamp_min(1e-300), torch.zeros_like(metric))
        scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # [B, Na, Nb]
        scores[:, :, :protect // 2] = -math.inf  # a protected B token (the distillation token) receives nothing
        scores[:, :(protect + 1) // 2] = -math.inf
        node_max, node_idx = scores.max(dim=-1)
        order = torch.sort(node_max, dim=-1, descending=True, stable=True).indices
        src = order[:, :r]
        kept = order[:, r:].sort(dim=-1).values
        return src, node_idx.gather(1, src), kept


def bipartite_merge(x: torch.Tensor, keys: torch.Tensor, size: torch.Tensor | None, r: int,
                    protect: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge r token pairs: x [B, N, D], keys [B, N, hd], sizes [B, N] (None: ones) -> ([B, N-r, D], [B, N-r]).

    Output rows: the protected tokens in position order (class, distillation), the other unmerged
    A tokens (ascending position), then the other B tokens, each the size-weighted mean of itself
    and the A tokens merged into it (computed in float64); output sizes are the summed sizes.
    """
    b, n, d = x.shape
    src, dst, kept = merge_order(keys, r, protect)
    s = torch.ones(b, n, dtype=torch.float64, device=x.device) if size is None else size.double()
    xs = x.double() * s[..., None]
    xa, sa = xs[:, ::2], s[:, ::2]
    num = xs[:, 1::2].scatter_add(1, dst[..., None].expand(-1, -1, d), xa.gather(1, src[..., None].expand(-1, -1, d)))
    den = s[:, 1::2].scatter_add(1, dst, sa.gather(1, src))
    unmerged = x[:, ::2].gather(1, kept[..., None].expand(-1, -1, d))
    merged, ks = (num / den[..., None]).to(x.dtype), sa.gather(1, kept)
    pa, pb = (protect + 1) // 2, protect // 2  # protected A tokens (kept[:, :pa]) and B tokens
    tokens = torch.cat([unmerged[:, :pa], merged[:, :pb], unmerged[:, pa:], merged[:, pb:]], dim=1)
    sizes = torch.cat([ks[:, :pa], den[:, :pb], ks[:, pa:], den[:, pb:]], dim=1)
    return tokens, sizes.to(x.dtype)


class TokenMerge(nn.Module):
    """Token merging after a block's attention (no parameters): see `bipartite_merge`; r tokens fewer."""

    def __init__(self, r: int, protect: int) -> None:
        super().__init__()
        self.r, self.protect = r, protect

    def forward(self, x: torch.Tensor, keys: torch.Tensor,
                size: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return bipartite_merge(x, keys, size, self.r, self.protect)


class Mlp(nn.Module):
    """fc1 -> GELU (erf) -> fc2: [B, N, D] -> [B, N, D] through `hidden` channels."""

    def __init__(self, dim: int, block: BlockSpec) -> None:
        super().__init__()
        self.fc1 = make_linear(dim, block.mlp_hidden, block.rank("fc1"))
        self.act = nn.GELU()
        self.fc2 = make_linear(block.mlp_hidden, dim, block.rank("fc2"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), [token merging], then x + mlp(norm2(x)).

    forward(x [B, N, D], sizes [B, N] or None) -> (x [B, N - merge_r, D], sizes [B, N - merge_r] or None).
    """

    def __init__(self, dim: int, block: BlockSpec, eps: float, protect: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, block)
        self.merge = TokenMerge(block.merge_r, protect) if block.merge_r else None
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, block)

    def forward(self, x: torch.Tensor, size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, keys = self.attn(self.norm1(x), size)
        x = x + h
        if self.merge is not None:
            x, size = self.merge(x, keys, size)
        return x + self.mlp(self.norm2(x)), size


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided conv: [B, C, H, W] -> [B, (H/p)*(W/p), D]."""

    def __init__(self, spec: ViTSpec) -> None:
        super().__init__()
        self.proj = nn.Conv2d(spec.in_channels, spec.embed_dim, spec.patch_size, stride=spec.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """A ViT built from `spec`: images [B, C, H, W] (normalised) -> logits [B, classes]."""

    def __init__(self, spec: ViTSpec, preprocess: Normalization | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.preprocess = preprocess or Normalization(mean=(0.0,) * spec.in_channels, std=(1.0,) * spec.in_channels)
        d = spec.embed_dim
        self.patch_embed = PatchEmbed(spec)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if spec.has_cls_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if spec.distill_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.num_patches + spec.num_prefix, d))
        self.blocks = nn.ModuleList(Block(d, b, spec.norm_eps, spec.num_prefix) for b in spec.blocks)
        self.norm = nn.LayerNorm(d, eps=spec.norm_eps)
        self.head = nn.Linear(d, spec.num_classes)
        self.head_dist = nn.Linear(d, spec.num_classes) if spec.pool == "cls_dist" else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm-like init: trunc-normal(0.02) weights, zero biases, unit LayerNorms."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for token in (self.cls_token, self.dist_token):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens behind the prefix tokens (class, distillation), plus positions: [B, C, H, W] -> [B, N, D]."""
        t = self.patch_embed(x)
        prefix = [p for p in (self.cls_token, self.dist_token) if p is not None]
        if prefix:
            t = torch.cat([p.expand(t.shape[0], -1, -1) for p in prefix] + [t], dim=1)
        return t + self.pos_embed

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> [B, D]: the class token, or the mean over tokens; [B, 2, D] (class and
        distillation tokens) for pool "cls_dist"."""
        if self.spec.pool == "cls_dist":
            return x[:, :2]
        return x[:, 0] if self.spec.pool == "cls" else x.mean(dim=1)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled tokens (`pool`'s output) -> logits [B, K]: norm then head; for pool "cls_dist"
        (head(n[:, 0]) + head_dist(n[:, 1])) / 2 with n = norm(pooled) (DeiT's inference)."""
        n = self.norm(pooled)
        if self.spec.pool == "cls_dist":
            return (self.head(n[:, 0]) + self.head_dist(n[:, 1])) / 2
        return self.head(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, size = self.tokens(x), None
        for blk in self.blocks:
            t, size = blk(t, size)
        return self.classify(self.pool(t))

    def num_params(self) -> int:
        """Count of all parameters."""
        return sum(p.numel() for p in self.parameters())


def build_like(model: VisionTransformer, spec: ViTSpec,
               state: dict[str, torch.Tensor] | None = None) -> VisionTransformer:
    """A new model for `spec` with `model`'s preprocessing and `state` (default: model's own state_dict), in eval mode.

    Used by passes that edit the architecture: `state` must match `spec` key by key and shape by shape.
    """
    new = VisionTransformer(spec, model.preprocess)
    new.load_state_dict(model.state_dict() if state is None else state)
    return new.eval()


def build_model(spec: ViTSpec, preprocess: Normalization | None = None, seed: int | None = None) -> VisionTransformer:
    """A freshly initialised VisionTransformer for `spec` (seeded init if `seed` is given)."""
    if seed is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return VisionTransformer(spec, preprocess)
    return VisionTransformer(spec, preprocess)
