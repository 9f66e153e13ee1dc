"""token_merge: ToMe bipartite soft matching; merges r token pairs after a block's attention.

Inputs: `tokens` [N, D] (the residual stream after the attention residual), `qkv` [N, 3*H*hd]
(the same block's attention input: only the keys, the middle third, are read) and optional
`size` [N] (tokens' sizes; absent = all 1). Outputs: merged tokens [N - r, D] and sizes [N - r].
Attrs: r (>= 1), heads, head_dim, protect (0, 1 or 2: the first `protect` tokens, the class token
and a DeiT distillation token, never merge). Constraint: r <= (N - protect) // 2.

Semantics (float and integer alike, per image):
1. Metric: per token j, the keys summed over heads K_j[t] = sum_h k_j[h, t] (the float path takes
   the mean; cosine similarity does not care), normalised to unit length: u_j = K_j / |K_j|
   (u_j = 0 when K_j = 0).
2. Sets: A = even positions 0, 2, 4, ... (Na = ceil(N/2)), B = odd positions (Nb = floor(N/2)).
   sim[a, b] = u_a . u_b. Protected: the first pa = ceil(protect/2) A tokens (token 0) and the first
   pb = floor(protect/2) B tokens (token 1) (ToMe's rule for class and distillation tokens).
3. Each unprotected A token a finds best[a] = argmax over unprotected b of sim[a, b], ties to the
   lowest b, and score[a] = sim[a, best[a]]. Unprotected A tokens are ranked by score descending,
   ties to the lowest a; the first r ("src") merge into their best B token; the others are "kept".
4. Output rows: the protected tokens in position order (class token row 0, distillation token row
   1), the other kept A tokens in ascending position, then the other B tokens in ascending position.
   A B token with merged sources becomes the size-weighted mean of itself and its sources; its size
   is the sum of their sizes. Kept A tokens and B tokens without sources are copied with their sizes.
   (protect <= 1: the kept A tokens, then every B token.)

Float path (float32 in and out, sizes float32): metric, similarities and the weighted means are
computed in float64 (mean of the keys over heads, then u = K / |K|); the means are rounded to
float32 once. The torch model (`edgevit.model.vit.bipartite_merge`) computes the same.

Integer path (tokens int8 or int16, qkv int8 with zero point 0, sizes int32; output tokens keep the
input's dtype and quantization: a weighted mean of codes is the code of the weighted mean):
    K_j[t] = sum_h k_j[h, t]                                   int32
    n_j    = sum_t K_j[t]^2                                    int64
    n_j == 0: u_j = 0; else
      s = (62 - bitlen(n_j)) >> 1;  q = isqrt64(n_j << 2s)    q in [2^30, 2^31)
      R = ((1 << 61) + (q >> 1)) / q                           uint64 division, R in (2^30, 2^31]
      u_j[t] = rounding_rshift(K_j[t] * R, 47 - s)             ~ 2^14 K_j[t] / |K_j|, fits int16
    sim[a, b] = sum_t u_a[t] * u_b[t]                          int32 (|sim| < 2^29), exact compares
    merged code of a B token with members m (itself and its sources), v_m = x_m - qmin >= 0:
      num = sum_m size_m * v_m;  den = sum_m size_m            int32 (sizes sum <= 2^14)
      y   = (2 * num + den) / (2 * den) + qmin                 unsigned division: round half up
Sizes must be >= 1 and sum to at most 2^14 per image (checked by the reference).
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intmath import bit_length, isqrt64, qrange, rounding_rshift
from edgevit.lower.ops import (OpDef, attr_int, expect_attrs, expect_dtype, expect_rank, fail, out,
                               register_op)
from edgevit.lower.ops.intcommon import INT_DTYPES, exact_matmul, expect_roles, expect_zero_point
from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import Kernel, ProgramError, TensorInfo

ATTRS = ("r", "heads", "head_dim", "protect")
UNIT_BITS = 14  # integer unit vectors have length ~2^14
MAX_TOTAL_SIZE = 1 << 14  # sizes of one image sum to at most this (int32 weighted sums)
INT_SENTINEL = -(1 << 62)  # the protected token's score: below every integer similarity
MAX_PROTECT = 2  # class and distillation tokens
SCRATCH_SECTIONS = ("ua", "ub", "score", "best", "src", "dst")  # the streamed kernel's working memory


# ---------------------------------------------------------------- validation

def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """tokens [N, D], qkv [N, 3*H*hd] (, size [N]) -> tokens [N - r, D] (dtype, quant kept), sizes [N - r]."""
    expect_attrs(kernel, ATTRS)
    expect_roles(kernel, consts, [], kind="token_merge")
    r, h, hd = attr_int(kernel, "r", 1), attr_int(kernel, "heads"), attr_int(kernel, "head_dim")
    protect = attr_int(kernel, "protect", 0)
    if protect > MAX_PROTECT:
        fail(kernel, f"attr 'protect' must be 0, 1 or 2 (got {protect})")
    tokens, qkv = in_infos[0], in_infos[1]
    expect_rank(kernel, tokens, 2, "[N, D]")
    expect_rank(kernel, qkv, 2, "[N, 3*heads*head_dim]")
    is_int = tokens.dtype != "float32"
    expect_dtype(kernel, tokens, ("float32",) + INT_DTYPES)
    expect_dtype(kernel, qkv, ("int8",) if is_int else ("float32",), "input (qkv)")
    n = tokens.shape[0]
    if qkv.shape != (n, 3 * h * hd):
        fail(kernel, f"input {qkv.name!r} has shape {list(qkv.shape)}; expected [{n}, {3 * h * hd}] "
                     f"(the {n} tokens' qkv: 3 * heads {h} * head_dim {hd})")
    if is_int:
        expect_zero_point(kernel, qkv, 0, "the integer token_merge kernel (symmetric keys)")
    size_dtype = "int32" if is_int else "float32"
    if len(in_infos) > 2:
        size = in_infos[2]
        expect_dtype(kernel, size, (size_dtype,), "input (size)")
        if size.shape != (n,):
            fail(kernel, f"input {size.name!r} has shape {list(size.shape)}; expected [{n}] (one size per token)")
    if r > (n - protect) // 2:
        fail(kernel, f"r = {r} exceeds (N - protect) // 2 = {(n - protect) // 2} for N = {n} tokens")
    return [out(kernel, (n - r, tokens.shape[1]), tokens.dtype, tokens.quant),
            out(kernel, (n - r,), size_dtype, index=1)]


# ---------------------------------------------------------------- matching (shared)

def protected_counts(protect: int) -> tuple[int, int]:
    """(pa, pb): protected tokens in set A (position 0) and in set B (position 1)."""
    return (protect + 1) // 2, protect // 2


def match(sim: np.ndarray, r: int, protect: int, sentinel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sim [B, Na, Nb] -> (src [B, r], dst [B, r], kept [B, Na - r]) indices within A / B (rule 3)."""
    pa, pb = protected_counts(protect)
    if pb:
        sim = sim.copy()
        sim[:, :, :pb] = sentinel  # a protected B token receives no source
    best = sim.argmax(axis=-1)  # first maximum: ties to the lowest b
    score = np.take_along_axis(sim, best[..., None], axis=-1)[..., 0]
    score[:, :pa] = sentinel
    order = np.argsort(-score, axis=-1, kind="stable")  # descending score, ties to the lowest a
    src = order[:, :r]
    return src, np.take_along_axis(best, src, axis=-1), np.sort(order[:, r:], axis=-1)


def scatter_sum(base: np.ndarray, dst: np.ndarray, values: np.ndarray) -> np.ndarray:
    """base [B, Nb, ...] plus values [B, r, ...] added at rows dst [B, r] (in place on `base`; returned)."""
    b, nb = base.shape[:2]
    flat = base.reshape(b * nb, *base.shape[2:])
    np.add.at(flat, (dst + np.arange(b)[:, None] * nb).ravel(), values.reshape(-1, *values.shape[2:]))
    return base


def take_rows(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x [B, M, ...] rows idx [B, K] -> [B, K, ...]."""
    return np.take_along_axis(x, idx.reshape(*idx.shape, *([1] * (x.ndim - 2))), axis=1)


def keys(qkv: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
    """The key part of qkv [B, N, 3*H*hd] -> [B, N, H, hd] (a view)."""
    b, n, _ = qkv.shape
    return qkv.reshape(b, n, 3, heads, head_dim)[:, :, 1]


def output_rows(kept_a: np.ndarray, b_rows: np.ndarray, protect: int) -> np.ndarray:
    """Rule 4's order: kept A rows [B, Na - r, ...] (protected first) and B rows [B, Nb, ...] ->
    protected A, protected B, other kept A, other B rows."""
    pa, pb = protected_counts(protect)
    return np.concatenate([kept_a[:, :pa], b_rows[:, :pb], kept_a[:, pa:], b_rows[:, pb:]], axis=1)


def sizes_or_ones(inputs: list[np.ndarray], shape: tuple[int, int], dtype) -> np.ndarray:
    """The optional size input [B, N], or ones."""
    return inputs[2] if len(inputs) > 2 else np.ones(shape, dtype=dtype)


# ---------------------------------------------------------------- float

def unit_keys_float(qkv: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
    """[B, N, 3*H*hd] float32 -> unit vectors of the keys' mean over heads [B, N, hd] float64."""
    k = keys(qkv, heads, head_dim).astype(np.float64).mean(axis=2)
    norm = np.sqrt((k * k).sum(axis=-1, keepdims=True))
    return np.divide(k, norm, out=np.zeros_like(k), where=norm > 0)


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] float32, [B, N, 3*H*hd] (, [B, N]) -> [B, N - r, D] float32, sizes [B, N - r] float32."""
    x, a = inputs[0], kernel.attrs
    u = unit_keys_float(inputs[1], int(a["heads"]), int(a["head_dim"]))
    sim = u[:, ::2] @ u[:, 1::2].transpose(0, 2, 1)
    src, dst, kept = match(sim, int(a["r"]), int(a["protect"]), -np.inf)
    s = sizes_or_ones(inputs, x.shape[:2], np.float32).astype(np.float64)
    xs = x.astype(np.float64) * s[..., None]
    num = scatter_sum(xs[:, 1::2].copy(), dst, take_rows(xs[:, ::2], src))
    den = scatter_sum(s[:, 1::2].copy(), dst, take_rows(s[:, ::2], src))
    merged = (num / den[..., None]).astype(np.float32)
    protect = int(a["protect"])
    tokens = output_rows(take_rows(x[:, ::2], kept), merged, protect)
    sizes = output_rows(take_rows(s[:, ::2], kept), den, protect).astype(np.float32)
    return [tokens, sizes]


# ---------------------------------------------------------------- integer

def unit_keys_int(qkv: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
    """[B, N, 3*H*hd] int8 -> integer unit vectors u [B, N, hd] int64 (|u| ~ 2^14; see the module doc)."""
    k = keys(qkv, heads, head_dim).astype(np.int64).sum(axis=2)  # [B, N, hd]
    n = np.einsum("bnt,bnt->bn", k, k)[..., None]
    zero = n == 0
    n = np.where(zero, 1, n)
    s = (62 - bit_length(n)) >> 1
    q = isqrt64(n << (2 * s))
    r = ((1 << 61) + (q >> 1)) // q
    u = rounding_rshift(k * r, 61 - UNIT_BITS - s)
    return np.where(zero, 0, u)


def weighted_mean_codes(v: np.ndarray, s: np.ndarray, dst: np.ndarray, src: np.ndarray):
    """Offset codes v [B, N, D] (>= 0), sizes s [B, N] -> (B-token codes [B, Nb, D], sizes [B, Nb]) int64."""
    vs = v * s[..., None]
    num = scatter_sum(vs[:, 1::2].copy(), dst, take_rows(vs[:, ::2], src))
    den = scatter_sum(s[:, 1::2].copy(), dst, take_rows(s[:, ::2], src))
    return (2 * num + den[..., None]) // (2 * den[..., None]), den


def check_sizes(kernel: Kernel, s: np.ndarray) -> None:
    """Sizes must be >= 1 and sum to at most MAX_TOTAL_SIZE per image (int32 weighted sums)."""
    if s.size and (s.min() < 1 or s.sum(axis=1).max() > MAX_TOTAL_SIZE):
        raise ProgramError(f"kernel {kernel.name!r} (token_merge): token sizes must be >= 1 and sum to at "
                           f"most {MAX_TOTAL_SIZE} per image (got min {s.min()}, largest sum {s.sum(axis=1).max()})")


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] int8/int16, [B, N, 3*H*hd] int8 (, [B, N] int32) -> [B, N - r, D] same dtype, [B, N - r] int32."""
    x, a = inputs[0], kernel.attrs
    u = unit_keys_int(inputs[1], int(a["heads"]), int(a["head_dim"]))
    bound = u.shape[-1] * ((1 << UNIT_BITS) + 2) ** 2
    sim = exact_matmul(u[:, ::2], np.ascontiguousarray(u[:, 1::2].transpose(0, 2, 1)), bound).astype(np.int64)
    src, dst, kept = match(sim, int(a["r"]), int(a["protect"]), INT_SENTINEL)
    s = sizes_or_ones(inputs, x.shape[:2], np.int32).astype(np.int64)
    check_sizes(kernel, s)
    qmin = qrange(x.dtype)[0]
    merged, den = weighted_mean_codes(x.astype(np.int64) - qmin, s, dst, src)
    protect = int(a["protect"])
    tokens = output_rows(take_rows(x[:, ::2], kept), (merged + qmin).astype(x.dtype), protect)
    sizes = output_rows(take_rows(s[:, ::2], kept), den, protect).astype(np.int32)
    return [tokens, sizes]


def macs(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo]) -> int:
    """The similarity matrix of the unprotected A and B tokens: (ceil(N/2) - pa) * (floor(N/2) - pb) * head_dim."""
    n = in_infos[0].shape[0]
    pa, pb = protected_counts(int(kernel.attrs["protect"]))
    return ((n + 1) // 2 - pa) * (n // 2 - pb) * int(kernel.attrs["head_dim"])


# ---------------------------------------------------------------- working memory of the kernel

def scratch_layout(n: int, head_dim: int, r: int, is_float: bool) -> tuple[dict[str, tuple[str, int, int]], int]:
    """Sections of the streamed kernel's scratch for N tokens: the unit key of one A token `ua` [hd] and
    of every B token `ub` [N//2, hd] (int16; float programs float64), per A token (ceil(N/2)) a score
    (int32; float64) and best match (int32), the r source/destination pairs (int32). Returns
    name -> (dtype, element offset in that dtype, elements), each section starting at an 8-byte
    aligned byte offset, and the total bytes."""
    na, nb = (n + 1) // 2, n // 2
    unit, score = ("float64", "float64") if is_float else ("int16", "int32")
    sizes = {"ua": (unit, head_dim), "ub": (unit, nb * head_dim), "score": (score, na), "best": ("int32", na),
             "src": ("int32", r), "dst": ("int32", r)}
    layout, offset = {}, 0
    for name in SCRATCH_SECTIONS:
        dtype, count = sizes[name]
        item = np.dtype(dtype).itemsize
        layout[name] = (dtype, offset // item, count)
        offset += -(-count * item // 8) * 8
    return layout, offset


def scratch_bytes(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo], rows: int | None) -> int:
    """Bytes of the sections of `scratch_layout` (int8 program, N = 50, hd = 16, r = 2: 1,056 bytes).
    token_merge mixes rows (not row-wise) and writes fewer rows than it reads (no in-place)."""
    n = in_infos[0].shape[0]
    return scratch_layout(n, int(kernel.attrs["head_dim"]), n - out_infos[0].shape[0],
                          in_infos[0].dtype == "float32")[1]


OP = register_op(OpDef(name="token_merge", infer=infer,
                       run={"float32": run_float, "int8": run_int8, "int16": run_int8},
                       inputs=("tokens", "qkv"), optional_inputs=("size",), macs=macs, num_outputs=2,
                       traits=PlanTraits(scratch=scratch_bytes), doc=__doc__))
