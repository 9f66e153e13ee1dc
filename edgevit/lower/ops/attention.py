"""attention: multi-head self-attention core, qkv [N, 3*H*hd] -> [N, H*hd].

Layout (as torch): qkv row i reshaped to [3, H, hd] gives q_i[h], k_i[h], v_i[h].
Semantics, defined PER QUERY ROW so a backend can stream rows and never hold N x N:
for each head h and query row i
    s_j   = (q_i[h] . k_j[h]) * scale            for j in 0..N-1
    p_j   = exp(s_j - max_j s_j) / sum_j exp(s_j - max_j s_j)
    out[i, h*hd : (h+1)*hd] = sum_j p_j * v_j[h]
Attrs: heads (H), head_dim (hd), scale (float > 0, normally 1/sqrt(hd)).
Optional input `size` [N] (token sizes after token merging, float32 / int32): proportional
attention, s_j += log(size_j) (float32) before the softmax, for every query row and head.
The float path computes the scores in float32 and the softmax normalisation in float64.

Integer kernel (qkv int8, symmetric: zero point 0; output int8; docs/integer-semantics.md
"attention"), per head h and query row i:
    s_j  = sum_t q_i[h, t] * k_j[h, t]                                     int32
    p    = softmax_from_scores(s, score_multiplier, score_shift, score_lut)  uint8, p = q/255
    acc  = sum_j p_j * v_j[h, t]                                           int32
    out  = requantize(acc, out_multiplier, out_shift, out zero point)      int8
Constant: score_lut int32 [T] (`intlut.make_score_lut`; one per Program, shared by every
layer; its first entry 2^F fixes the longest row 2^(30-F)). Attrs: heads, head_dim,
score_multiplier/score_shift (score_scale / step, score_scale = s_qkv^2 / sqrt(hd)),
out_multiplier/out_shift (s_qkv / (255 s_out)), out_quant.
With the `size` input (int32 [N], every size in [1, S]) the constant `log_size` int32 [S] holds
log(k) in score-accumulator units, log_size[k-1] = round_half_up(log(k) / score_scale)
(log_size[0] = 0, entries in [0, 2^30], checked with hd * 128 * 128 + max entry < 2^31), and
    s_j  = sum_t q_i[h, t] * k_j[h, t] + log_size[size_j - 1]              int32 (no overflow)
before the same softmax.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intlut import SOFTMAX_RECIP_BITS, softmax_from_scores
from edgevit.lower.intmath import requantize
from edgevit.lower.ops import (OpDef, attr_float, attr_int, expect_attrs, expect_const, expect_dtype, expect_rank,
                               fail, out, register_op)
from edgevit.lower.ops.intcommon import exact_matmul, expect_roles, expect_zero_point, multiplier_attrs, out_quant
from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import Kernel, ProgramError, TensorInfo

DTYPES = ("float32", "int8")
INT_ATTRS = ("heads", "head_dim", "score_multiplier", "score_shift", "out_multiplier", "out_shift", "out_quant")


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """qkv [N, 3*H*hd] float32 or int8 -> [N, H*hd]."""
    is_int = bool(in_infos) and in_infos[0].dtype != "float32"
    expect_attrs(kernel, INT_ATTRS if is_int else ["heads", "head_dim", "scale"])
    h, hd = attr_int(kernel, "heads"), attr_int(kernel, "head_dim")
    qkv = in_infos[0]
    expect_rank(kernel, qkv, 2, "[N, 3*heads*head_dim]")
    expect_dtype(kernel, qkv, DTYPES)
    if qkv.shape[1] != 3 * h * hd:
        fail(kernel, f"input {qkv.name!r} has shape {list(qkv.shape)}; expected [N, {3 * h * hd}] "
                     f"(3 * heads {h} * head_dim {hd})")
    has_size = len(in_infos) > 1
    if has_size:
        check_size_input(kernel, in_infos[1], qkv.shape[0], "int32" if is_int else "float32")
    if not is_int:
        attr_float(kernel, "scale")
        expect_roles(kernel, consts, [], kind="float32")
        return [out(kernel, (qkv.shape[0], h * hd), qkv.dtype)]
    expect_zero_point(kernel, qkv, 0, "the integer attention kernel (symmetric q, k, v)")
    expect_roles(kernel, consts, ["score_lut", "log_size"] if has_size else ["score_lut"])
    score_lut(kernel, consts["score_lut"], qkv.shape[0])
    if has_size:
        log_size_table(kernel, consts["log_size"], hd)
    multiplier_attrs(kernel, "score_")
    multiplier_attrs(kernel, "out_")
    dtype, quant = out_quant(kernel, ("int8",))
    return [out(kernel, (qkv.shape[0], h * hd), dtype, quant)]


def score_lut(kernel: Kernel, table: np.ndarray, n: int) -> dict:
    """Check the score LUT (int32 [T], table[0] = 2^F, table[T-1] = 0, N <= 2^(30-F)) -> intlut's lut dict."""
    expect_const(kernel, {"score_lut": table}, "score_lut", table.shape, ("int32",))
    t0 = int(table[0]) if table.ndim == 1 and table.size >= 2 else 0
    if t0 < 1 or t0 & (t0 - 1) or t0 > 1 << 30 or table[-1] != 0 or table.min() < 0:
        fail(kernel, f"constant {kernel.consts.get('score_lut')!r}: a score LUT is int32 [T >= 2] with "
                     "table[0] = 2^F, entries >= 0 and table[T-1] = 0 (intlut.make_score_lut)")
    max_len = 1 << (30 - (t0.bit_length() - 1))
    if n > max_len:
        fail(kernel, f"{n} tokens exceed the score LUT's maximum row length {max_len}")
    return {"table": table, "table_size": int(table.size), "max_len": max_len, "recip_bits": SOFTMAX_RECIP_BITS}


def check_size_input(kernel: Kernel, size: TensorInfo, n: int, dtype: str) -> None:
    """The optional token sizes: [N] of `dtype` (float32 for float kernels, int32 for integer ones)."""
    expect_dtype(kernel, size, (dtype,), "input (size)")
    if size.shape != (n,):
        fail(kernel, f"input {size.name!r} has shape {list(size.shape)}; expected [{n}] (one size per token)")


def log_size_table(kernel: Kernel, table: np.ndarray, head_dim: int) -> np.ndarray:
    """Check the log-size table: int32 [S], table[0] = 0, entries in [0, 2^30], no int32 overflow of s + bias."""
    expect_const(kernel, {"log_size": table}, "log_size", table.shape, ("int32",))
    ok = table.ndim == 1 and table.size >= 1 and table[0] == 0 and table.min() >= 0 and table.max() <= 1 << 30
    if not ok or head_dim * 128 * 128 + int(table.max(initial=0)) >= 1 << 31:
        fail(kernel, f"constant {kernel.consts.get('log_size')!r}: a log-size table is int32 [S >= 1] with "
                     "table[0] = 0, entries in [0, 2^30] and head_dim * 2^14 + max entry < 2^31")
    return table


def size_bias(kernel: Kernel, size: np.ndarray, table: np.ndarray) -> np.ndarray:
    """int32 sizes [B, N] (each in [1, S]) -> the score bias table[size - 1] [B, 1, N] int32."""
    if size.size and (size.min() < 1 or size.max() > table.size):
        raise ProgramError(f"kernel {kernel.name!r} (attention): token sizes must be in [1, {table.size}] "
                           f"(the log-size table's length); got [{size.min()}, {size.max()}]")
    return table[size.astype(np.int64) - 1][:, None, :]


def softmax(s: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of float32 scores, in place: float32 exp, float64 sum, float32 out."""
    s = np.subtract(s, s.max(axis=-1, keepdims=True), out=s)
    np.exp(s, out=s)
    s *= (1.0 / s.sum(axis=-1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return s


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, 3*H*hd] float32 -> [B, N, H*hd] float32 (all rows at once; same math as per row)."""
    qkv = inputs[0]
    b, n, _ = qkv.shape
    h, hd = int(kernel.attrs["heads"]), int(kernel.attrs["head_dim"])
    qkv = qkv.reshape(b, n, 3, h, hd).transpose(2, 0, 3, 1, 4)  # [3, B, H, N, hd]
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = q @ k.transpose(0, 1, 3, 2)  # [B, H, N, N]
    scores *= np.float32(kernel.attrs["scale"])
    if len(inputs) > 1:
        scores += np.log(inputs[1].astype(np.float32))[:, None, None, :]
    o = softmax(scores) @ v  # [B, H, N, hd]
    return [np.ascontiguousarray(o.transpose(0, 2, 1, 3)).reshape(b, n, h * hd)]


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, 3*H*hd] int8 -> [B, N, H*hd] int8; all query rows of one head at a time (same as per row)."""
    qkv = inputs[0]
    b, n, _ = qkv.shape
    a = kernel.attrs
    h, hd = int(a["heads"]), int(a["head_dim"])
    lut = score_lut(kernel, consts["score_lut"], n)
    qkv = qkv.reshape(b, n, 3, h, hd)
    bias = size_bias(kernel, inputs[1], consts["log_size"]) if len(inputs) > 1 else None
    acc = np.empty((b, n, h, hd), dtype=np.int32 if n * 255 * 128 < 1 << 31 else np.int64)
    for head in range(h):
        q, k, v = qkv[:, :, 0, head], qkv[:, :, 1, head], qkv[:, :, 2, head]  # [B, N, hd] each
        scores = exact_matmul(q, np.ascontiguousarray(k.transpose(0, 2, 1)), hd * 128 * 128)  # [B, N, N]
        if bias is not None:
            scores += bias
        p = softmax_from_scores(scores, a["score_multiplier"], a["score_shift"], lut)  # uint8
        acc[:, :, head] = exact_matmul(p, v, n * 255 * 128)
    y = requantize(acc.reshape(b, n, h * hd), a["out_multiplier"], a["out_shift"], a["out_quant"]["zero_point"])
    return [y]


def macs(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo]) -> int:
    """q k^T and p v: 2 * N * N * H * hd per image."""
    n = in_infos[0].shape[0]
    return 2 * n * n * out_infos[0].shape[1]


def scratch_bytes(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo], rows: int | None) -> int:
    """Working memory of the streamed kernel (one query row at a time): one row of N int32 (or float32)
    scores/exp values/probabilities, 4 * N bytes; a float kernel with the `size` input also keeps
    log(size_j) for the whole call: 8 * N bytes. Not row-wise, no in-place."""
    n = in_infos[0].shape[0]
    return 8 * n if len(in_infos) > 1 and in_infos[0].dtype == "float32" else 4 * n


OP = register_op(OpDef(name="attention", infer=infer, run={"float32": run_float, "int8": run_int8},
                       inputs=("qkv",), optional_inputs=("size",), optional_consts=("score_lut", "log_size"), macs=macs,
                       traits=PlanTraits(scratch=scratch_bytes), doc=__doc__))
