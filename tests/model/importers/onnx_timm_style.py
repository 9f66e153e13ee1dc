"""A timm-style VisionTransformer written out for the ONNX importer tests (timm is not installed).

It follows timm's `VisionTransformer` forward (fused qkv, `q * scale` then `q @ k.transpose`, or
`F.scaled_dot_product_attention`; class token or average pooling with `fc_norm`) and has switches
for what the importer must handle or refuse: patch embedding by a linear on reshaped pixels,
[B*H, N, d] batching with `bmm`, q/k/v split by `chunk` on the channels, no qkv bias, LayerScale,
positions on the patches only (`no_embed_class`), tanh GELU, ReLU, BatchNorm, an extra op in a block.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class TokenBatchNorm(nn.Module):
    """BatchNorm1d over the channels of [B, N, D] tokens (not a LayerNorm: must be refused)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class TimmAttention(nn.Module):
    """timm's Attention: fused qkv; style "timm" (q * scale, q @ k^T), "sdpa", "bmm" ([B*H, N, d]) or
    "chunk" (q, k, v sliced from the qkv channels before the heads are split, scale after q @ k^T)."""

    def __init__(self, dim: int, heads: int, style: str, qkv_bias: bool, extra_op: bool) -> None:
        super().__init__()
        self.heads, self.head_dim, self.style, self.extra_op = heads, dim // heads, style, extra_op
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        if self.style == "chunk":
            q, k, v = (t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        else:
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
        if self.style == "chunk":
            x = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
        elif self.style == "sdpa":
            x = F.scaled_dot_product_attention(q, k, v)
        elif self.style == "bmm":
            q, k, v = (t.reshape(b * self.heads, n, self.head_dim) for t in (q, k, v))
            attn = torch.bmm(q, k.transpose(1, 2)) / (self.head_dim**0.5)
            x = torch.bmm(attn.softmax(dim=-1), v).reshape(b, self.heads, n, self.head_dim)
        else:
            q = q * self.scale
            attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
            x = attn @ v
        x = x.transpose(1, 2).reshape(b, n, c)
        if self.extra_op:
            x = torch.tanh(x)
        return self.proj(x)


class TimmBlock(nn.Module):
    """timm's pre-norm Block."""

    def __init__(self, dim: int, heads: int, hidden: int, *, style: str, qkv_bias: bool, act: str, norm: str,
                 extra_op: bool, layer_scale: bool) -> None:
        super().__init__()
        self.ls1 = nn.Parameter(torch.full((dim,), 0.5)) if layer_scale else None
        self.ls2 = nn.Parameter(torch.full((dim,), 0.5)) if layer_scale else None
        make_norm = (lambda: nn.LayerNorm(dim, eps=1e-6)) if norm == "ln" else (lambda: TokenBatchNorm(dim))
        self.norm1 = make_norm()
        self.attn = TimmAttention(dim, heads, style, qkv_bias, extra_op)
        self.norm2 = make_norm()
        activation = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"), "relu": nn.ReLU()}[act]
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), activation, nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ls1 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.ls1 * self.attn(self.norm1(x))  # timm's LayerScale
        return x + self.ls2 * self.mlp(self.norm2(x))


class TimmStyleViT(nn.Module):
    """timm's VisionTransformer forward: patch_embed, cls token + pos_embed, blocks, norm / fc_norm, head."""

    def __init__(self, *, image: int = 16, patch: int = 4, chans: int = 3, dim: int = 24, depth: int = 2,
                 heads: int = 3, hidden: int = 48, classes: int = 7, pool: str = "token", patch_mode: str = "conv",
                 style: str = "timm", qkv_bias: bool = True, act: str = "gelu", norm: str = "ln",
                 extra_op: bool = False, layer_scale: bool = False, no_embed_class: bool = False) -> None:
        super().__init__()
        self.patch, self.pool, self.patch_mode, self.no_embed_class = patch, pool, patch_mode, no_embed_class
        grid = image // patch
        if patch_mode == "conv":
            self.proj = nn.Conv2d(chans, dim, patch, stride=patch)
        else:
            self.proj = nn.Linear(chans * patch * patch, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if pool == "token" else None
        prefix = int(pool == "token" and not no_embed_class)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + prefix, dim) * 0.02)
        self.blocks = nn.Sequential(*[TimmBlock(dim, heads, hidden, style=style, qkv_bias=qkv_bias, act=act,
                                                norm=norm, extra_op=extra_op, layer_scale=layer_scale)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6) if pool == "token" else nn.Identity()
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6) if pool == "avg" else nn.Identity()
        self.head = nn.Linear(dim, classes)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        if self.patch_mode == "conv":
            return self.proj(x).flatten(2).transpose(1, 2)
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # patches of (py, px, c)
        return self.proj(x.reshape(b, (h // p) * (w // p), p * p * c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patchify(x)
        if self.no_embed_class:  # timm's no_embed_class: positions for the patches only
            x = x + self.pos_embed
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if not self.no_embed_class:
            x = x + self.pos_embed
        x = self.blocks(x)
        x = self.norm(x)
        x = x[:, 0] if self.pool == "token" else x.mean(dim=1)
        return self.head(self.fc_norm(x))


def randomize(model: nn.Module, seed: int = 0, std: float = 0.1) -> nn.Module:
    """Perturb every parameter (and BatchNorm statistics) so nothing is a trivial 0/1; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(1 + torch.rand(m.running_var.shape, generator=g))
    return model.eval()


def export(model: nn.Module, path: Path, image: int = 16, chans: int = 3, opset: int = 17,
           dynamic_size: bool = False) -> Path:
    """torch.onnx.export (legacy exporter) with a dynamic batch (and optionally dynamic H, W)."""
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, chans, image, image),), str(path), opset_version=opset,
                          dynamo=False, input_names=["pixels"], output_names=["logits"],
                          dynamic_axes={"pixels": axes, "logits": {0: "batch"}})
    return path
