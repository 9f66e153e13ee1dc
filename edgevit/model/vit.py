"""The torch module built from a ViTSpec.

Parameter names follow timm's `VisionTransformer` (patch_embed.proj, cls_token,
pos_embed, blocks.N.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2, norm,
head) so that timm-format state_dicts load by name. A low-rank linear of rank r is
two linears, `<name>.a` (in -> r, no bias) and `<name>.b` (r -> out, with bias).

Semantics (the reference interpreter follows them): LayerNorm eps from the spec;
exact (erf) GELU; attention softmax(q k^T / sqrt(head_dim)) v per head; pooling
selects the class token or averages all tokens, then `norm`, then `head`.
The module carries `spec` and `preprocess` (input normalisation), so a model object
is everything needed to lower and deploy it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgevit.data.normalize import Normalization
from edgevit.errors import SpecError
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


def make_linear(in_features: int, out_features: int, rank: int | None) -> nn.Module:
    """A dense nn.Linear, or a LowRankLinear when `rank` is given."""
    if rank is None:
        return nn.Linear(in_features, out_features)
    return LowRankLinear(in_features, rank, out_features)


class Attention(nn.Module):
    """Multi-head self-attention: x [B, N, D] -> [B, N, D], heads x head_dim wide inside."""

    def __init__(self, dim: int, block: BlockSpec) -> None:
        super().__init__()
        self.heads, self.head_dim = block.heads, block.head_dim
        self.scale = 1.0 / math.sqrt(block.head_dim)
        self.qkv = make_linear(dim, 3 * block.attn_dim, block.rank("qkv"))
        self.proj = make_linear(block.attn_dim, dim, block.rank("proj"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, N, hd]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        out = attn.softmax(dim=-1) @ v  # [B, H, N, hd]
        return self.proj(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


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
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); [B,N,D]."""

    def __init__(self, dim: int, block: BlockSpec, eps: float) -> None:
        super().__init__()
        if block.merge_r:
            raise SpecError(
                "merge_r > 0: token merging is not implemented in the torch model yet "
                "(it arrives with the `tome` pass); set merge_r to 0"
            )
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, block)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


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
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if spec.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.num_patches + spec.num_prefix, d))
        self.blocks = nn.ModuleList(Block(d, b, spec.norm_eps) for b in spec.blocks)
        self.norm = nn.LayerNorm(d, eps=spec.norm_eps)
        self.head = nn.Linear(d, spec.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm-like init: trunc-normal(0.02) weights, zero biases, unit LayerNorms."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with class token and positions: [B, C, H, W] -> [B, N, D]."""
        t = self.patch_embed(x)
        if self.cls_token is not None:
            t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return t + self.pos_embed

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> [B, D]: the class token, or the mean over tokens."""
        return x[:, 0] if self.spec.pool == "cls" else x.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokens(x)
        for blk in self.blocks:
            t = blk(t)
        return self.head(self.norm(self.pool(t)))

    def num_params(self) -> int:
        """Count of all parameters."""
        return sum(p.numel() for p in self.parameters())


def build_model(spec: ViTSpec, preprocess: Normalization | None = None, seed: int | None = None) -> VisionTransformer:
    """A freshly initialised VisionTransformer for `spec` (seeded init if `seed` is given)."""
    if seed is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return VisionTransformer(spec, preprocess)
    return VisionTransformer(spec, preprocess)
