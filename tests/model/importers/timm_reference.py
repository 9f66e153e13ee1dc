"""A small stand-in for timm's `VisionTransformer` (timm is not installable here).

Written from timm's documented semantics, with timm's parameter names, so that its `state_dict()`
has the timm key layout of the variants the importer handles or refuses: qkv_bias, LayerScale
(init_values), class_token, no_embed_class, reg_tokens, pre_norm (norm_pre, bias-less patch
embedding), qk_norm, global_pool ('token' / 'avg'), fc_norm, distilled (DeiT: dist_token + head_dist,
heads averaged at inference). LayerNorm eps 1e-6, exact GELU, as timm.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def layer_norm(dim: int) -> nn.LayerNorm:
    """timm's ViT LayerNorm (eps 1e-6)."""
    return nn.LayerNorm(dim, eps=1e-6)


class LayerScale(nn.Module):
    """x * gamma, per channel."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Fused qkv, optional per-head q/k LayerNorm, softmax(q k^T / sqrt(hd)) v, proj."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = layer_norm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = layer_norm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = (q @ k.transpose(-2, -1) / self.head_dim ** 0.5).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, heads: int, hidden: int, qkv_bias: bool, qk_norm: bool,
                 init_values: float | None) -> None:
        super().__init__()
        self.norm1, self.norm2 = layer_norm(dim), layer_norm(dim)
        self.attn = Attention(dim, heads, qkv_bias, qk_norm)
        self.mlp = Mlp(dim, hidden)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Strided conv over non-overlapping patches, flattened to tokens."""

    def __init__(self, patch: int, chans: int, dim: int, bias: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, patch, stride=patch, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimmViT(nn.Module):
    """timm's VisionTransformer (and VisionTransformerDistilled with distilled=True), small-model subset."""

    def __init__(self, *, img_size: int = 16, patch_size: int = 4, in_chans: int = 3, num_classes: int = 7,
                 global_pool: str = "token", embed_dim: int = 32, depth: int = 2, num_heads: int = 4,
                 mlp_ratio: float = 2.0, qkv_bias: bool = True, qk_norm: bool = False,
                 init_values: float | None = None, class_token: bool = True, no_embed_class: bool = False,
                 reg_tokens: int = 0, pre_norm: bool = False, fc_norm: bool | None = None,
                 distilled: bool = False, patch_bias: bool | None = None) -> None:
        super().__init__()
        self.global_pool, self.no_embed_class, self.distilled = global_pool, no_embed_class, distilled
        self.num_prefix_tokens = int(class_token) + int(distilled) + reg_tokens
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim,
                                      bias=not pre_norm if patch_bias is None else patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        embed_len = grid * grid + (0 if no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, embed_dim))
        self.norm_pre = layer_norm(embed_dim) if pre_norm else nn.Identity()
        hidden = int(embed_dim * mlp_ratio)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, hidden, qkv_bias, qk_norm, init_values)
                                      for _ in range(depth)])
        use_fc_norm = global_pool == "avg" if fc_norm is None else fc_norm
        self.norm = layer_norm(embed_dim) if not use_fc_norm else nn.Identity()
        self.fc_norm = layer_norm(embed_dim) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes)
        self.head_dist = nn.Linear(embed_dim, num_classes) if distilled else None

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        prefix = [t.expand(len(x), -1, -1) for t in (self.cls_token, self.dist_token, self.reg_token) if t is not None]
        if self.no_embed_class:
            return torch.cat(prefix + [x + self.pos_embed], dim=1)
        return torch.cat(prefix + [x], dim=1) + self.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(self.norm_pre(self._pos_embed(self.patch_embed(x)))))
        if self.distilled:
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        x = x[:, self.num_prefix_tokens:].mean(1) if self.global_pool == "avg" else x[:, 0]
        return self.head(self.fc_norm(x))


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter seeded random values of a size that makes layouts matter (norm weights near 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            is_norm_weight = name.endswith("weight") and p.ndim == 1
            p.copy_(1 + 0.2 * noise if is_norm_weight or name.endswith("gamma") else 0.2 * noise)
    return module.eval()


def assert_logits_close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-4) -> None:
    """Logits agree within `rtol` relative to the largest reference logit (and elementwise rtol)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = float(want.abs().max())
    assert scale > 1e-3, "reference logits too small to tell layouts apart"
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale)
