"""Analytic multiply-accumulate (MAC) and parameter counts of a ViTSpec, per part.

MACs are per image and count the GEMM-like work only: patch embedding, every
linear (dense or low-rank), the two attention products (q k^T and attn v: 2 N^2 A
per block, A = heads * head_dim), token merging's similarity matrix and the head.
LayerNorm, softmax, GELU and adds are elementwise and not counted (as in the
literature's FLOP tables).
Block i's attention runs on the N tokens entering it; a block with merge_r = r > 0
then merges r tokens (ToMe, after the attention residual), so its MLP and every later
block see N - r. Merging costs (ceil(N/2) - ceil(P/2)) * (floor(N/2) - floor(P/2)) * head_dim MACs
for P protected prefix tokens: the cosine similarities of the A tokens that may merge with every
B token that may receive them (`merge_macs`).
The head of pool "cls_dist" (DeiT distillation) is one linear over the two normed prefix tokens,
2 * D * K MACs (class and distillation heads), with 2 * (D * K + K) classifier parameters.
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


def merge_macs(tokens: int, head_dim: int, prefix: int, r: int) -> int:
    """MACs of merging r > 0 of `tokens` tokens behind `prefix` protected ones:
    (ceil(N/2) - ceil(P/2)) * (floor(N/2) - floor(P/2)) * head_dim (0 if r == 0)."""
    if not r:
        return 0
    return ((tokens + 1) // 2 - (prefix + 1) // 2) * (tokens // 2 - prefix // 2) * head_dim


def block_counts(block: BlockSpec, dim: int, tokens: int, prefix: int = 0) -> tuple[int, int]:
    """(MACs, params) of one block of width `dim` entered by `tokens` tokens (`prefix` protected ones).

    Attention runs on `tokens` rows, the MLP on `tokens - block.merge_r`.
    """
    a, after = block.attn_dim, tokens - block.merge_r
    parts = [
        linear_counts(tokens, dim, 3 * a, block.rank("qkv")),
        linear_counts(tokens, a, dim, block.rank("proj")),
        linear_counts(after, dim, block.mlp_hidden, block.rank("fc1")),
        linear_counts(after, block.mlp_hidden, dim, block.rank("fc2")),
    ]
    macs = sum(m for m, _ in parts) + 2 * tokens * tokens * a
    macs += merge_macs(tokens, block.head_dim, prefix, block.merge_r)
    params = sum(p for _, p in parts) + 4 * dim  # two LayerNorms
    return macs, params


def count_parts(spec: ViTSpec) -> list[PartCounts]:
    """Counts for `embed`, `block0`..`blockN-1` and `head` (norm + classifier), in order."""
    d, c, p = spec.embed_dim, spec.in_channels, spec.patch_size
    n_tokens = spec.num_patches + spec.num_prefix
    embed_params = c * p * p * d + d + n_tokens * d + spec.num_prefix * d  # conv, positions, prefix tokens
    parts = [PartCounts("embed", spec.num_patches * c * p * p * d, embed_params)]
    for i, (blk, n) in enumerate(zip(spec.blocks, spec.tokens_per_block())):
        macs, params = block_counts(blk, d, n, spec.num_prefix)
        parts.append(PartCounts(f"block{i}", macs, params))
    heads = 2 if spec.pool == "cls_dist" else 1  # class (and distillation) classifiers
    k = spec.num_classes
    parts.append(PartCounts("head", heads * d * k, 2 * d + heads * (d * k + k)))
    return parts


def count_macs(spec: ViTSpec) -> int:
    """Total MACs per image."""
    return sum(pc.macs for pc in count_parts(spec))


def count_params(spec: ViTSpec) -> int:
    """Total number of parameters."""
    return sum(pc.params for pc in count_parts(spec))
