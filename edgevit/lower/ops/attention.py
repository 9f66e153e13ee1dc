"""attention: multi-head self-attention core, qkv [N, 3*H*hd] -> [N, H*hd].

Layout (as torch): qkv row i reshaped to [3, H, hd] gives q_i[h], k_i[h], v_i[h].
Semantics, defined PER QUERY ROW so a backend can stream rows and never hold N x N:
for each head h and query row i
    s_j   = (q_i[h] . k_j[h]) * scale            for j in 0..N-1
    p_j   = exp(s_j - max_j s_j) / sum_j exp(s_j - max_j s_j)
    out[i, h*hd : (h+1)*hd] = sum_j p_j * v_j[h]
Attrs: heads (H), head_dim (hd), scale (float > 0, normally 1/sqrt(hd)).
Future optional input `size` [N] (token sizes after token merging, for proportional
attention): s_j += log(size_j). Not implemented yet; a second input is rejected.
The float path computes the scores in float32 and the softmax normalisation in float64.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.ops import (OpDef, attr_float, attr_int, expect_attrs, expect_dtype, expect_rank, fail, out,
                               register_op)
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",)


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """qkv [N, 3*H*hd] float32 -> [N, H*hd]."""
    expect_attrs(kernel, ["heads", "head_dim", "scale"])
    h, hd = attr_int(kernel, "heads"), attr_int(kernel, "head_dim")
    attr_float(kernel, "scale")
    if len(in_infos) > 1:
        fail(kernel, f"the optional `size` input ({in_infos[1].name!r}) is not supported yet")
    qkv = in_infos[0]
    expect_rank(kernel, qkv, 2, "[N, 3*heads*head_dim]")
    expect_dtype(kernel, qkv, DTYPES)
    if qkv.shape[1] != 3 * h * hd:
        fail(kernel, f"input {qkv.name!r} has shape {list(qkv.shape)}; expected [N, {3 * h * hd}] "
                     f"(3 * heads {h} * head_dim {hd})")
    return [out(kernel, (qkv.shape[0], h * hd), qkv.dtype)]


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
    o = softmax(scores) @ v  # [B, H, N, hd]
    return [np.ascontiguousarray(o.transpose(0, 2, 1, 3)).reshape(b, n, h * hd)]


def macs(kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo]) -> int:
    """q k^T and p v: 2 * N * N * H * hd per image."""
    n = in_infos[0].shape[0]
    return 2 * n * n * out_infos[0].shape[1]


OP = register_op(OpDef(name="attention", infer=infer, run={"float32": run_float}, inputs=("qkv",),
                       optional_inputs=("size",), macs=macs, doc=__doc__))
