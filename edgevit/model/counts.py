"""Analytic multiply-accumulate (MAC) and parameter counts of a ViTSpec, per part.

MACs are per image and count the GEMM-like work only: patch embedding, every
linear (dense or low-rank), the two attention products (q k^T and attn v: 2 N^2 A
per block, A = heads * head_dim) and the head. LayerNorm, softmax, GELU and adds
are elementwise and not counted (as in the literature's FLOP tables).
Block i runs on the tokens entering it (merging after block i shrinks block i+1).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevit.model.spec import BlockSpec, ViTSpec


@dataclass(frozen=True)
class PartCounts:
    """MACs (per image) and parameters of one part of the model."""

    name: str
    macs: int
    params: int


def linear_counts(tokens: int, fan_in: int, fan_out: int, rank: int | None) -> tuple[int, int]:
    """(MACs, params) of a linear over `tokens` rows, dense or factorised at `rank` (bias counted)."""
    if rank is None:
        return tokens * fan_in * fan_out, fan_in * fan_out + fan_out
    return tokens * rank * (fan_in + fan_out), rank * (fan_in + fan_out) + fan_out


def block_counts(block: BlockSpec, dim: int, tokens: int) -> tuple[int, int]:
    """(MACs, params) of one transformer block of width `dim` over `tokens` tokens."""
    a = block.attn_dim
    parts = [
        linear_counts(tokens, dim, 3 * a, block.rank("qkv")),
        linear_counts(tokens, a, dim, block.rank("proj")),
        linear_counts(tokens, dim, block.mlp_hidden, block.rank("fc1")),
        linear_counts(tokens, block.mlp_hidden, dim, block.rank("fc2")),
    ]
    macs = sum(m for m, _ in parts) + 2 * tokens * tokens * a
    params = sum(p for _, p in parts) + 4 * dim  # two LayerNorms
    return macs, params


def count_parts(spec: ViTSpec) -> list[PartCounts]:
    """Counts for `embed`, `block0`..`blockN-1` and `head` (norm + classifier), in order."""
    d, c, p = spec.embed_dim, spec.in_channels, spec.patch_size
    n_tokens = spec.num_patches + spec.num_prefix
    embed_params = c * p * p * d + d + n_tokens * d + (d if spec.pool == "cls" else 0)
    parts = [PartCounts("embed", spec.num_patches * c * p * p * d, embed_params)]
    for i, (blk, n) in enumerate(zip(spec.blocks, spec.tokens_per_block())):
        macs, params = block_counts(blk, d, n)
        parts.append(PartCounts(f"block{i}", macs, params))
    parts.append(PartCounts("head", d * spec.num_classes, 2 * d + d * spec.num_classes + spec.num_classes))
    return parts


def count_macs(spec: ViTSpec) -> int:
    """Total MACs per image."""
    return sum(pc.macs for pc in count_parts(spec))


def count_params(spec: ViTSpec) -> int:
    """Total number of parameters."""
    return sum(pc.params for pc in count_parts(spec))
