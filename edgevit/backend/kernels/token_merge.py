"""token_merge: ToMe bipartite soft matching as a TVM-generated C kernel (two outputs).

tokens [N, D], qkv [N, 3*H*hd] (only the keys are read) (, size [N]) -> merged tokens [N - r, D] and
their sizes [N - r]; semantics: `edgevit/lower/ops/token_merge.py` and docs/integer-semantics.md
("token_merge"). A = even positions (Na = ceil(N/2)), B = odd positions (Nb = floor(N/2)).

The code runs in four passes and never builds the Na x Nb similarity matrix:

  1  unit keys of every B token into the scratch `ub` [Nb, hd];
  2  per A token a (a protected class token skipped): its unit key into the one-row scratch `ua`
     [hd], then one sweep over the B rows (a protected distillation token, B row 0, skipped) keeps
     best[a] (first maximum: ties to the lowest b) and score[a] in registers and stores them
     (`best`, `score` [Na]);
  3  r selection sweeps over `score`: the largest score, ties to the lowest a (= the reference's
     stable descending sort, first r), goes to `src`/`dst` [r] in rank order; its score becomes a
     sentinel below every similarity and its best -1 ("merged");
  4  output rows: the protected tokens (class, distillation) in position order, the other A tokens
     with best >= 0 in ascending position, then the other B tokens: a B token some src points at
     becomes the size-weighted mean of itself and its sources (sources summed in rank order, as the
     reference's scatter-add), the others are copied; sizes likewise.

Scratch (`scratch` trait; one arena buffer, sections 8-byte aligned): ua [hd] + ub [Nb*hd] unit
keys (int16 for integer programs, float64 for float ones), score [Na] (int32 / float64), best [Na],
src [r], dst [r] (int32): O(N * hd), about half the keys of the layer, never N x N.

Integer (tokens int8/int16, qkv int8 with zero point 0, sizes int32; bit-exact with `run_int8`):
    K[t] = sum_h k[h, t] (int32, recomputed for the norm and for u), n = sum_t K[t]^2 (int64),
    n == 0: u = 0, else s = (62 - bitlen(n)) >> 1, q = isqrt64(n << 2s), R = (2^61 + q/2) / q,
    u[t] = rounding_rshift(K[t] R, 47 - s) (int16); sim = sum_t ua[t] ub[t] (int32, |sim| < 2^29);
    merged y[d] = (2 num + den) / (2 den) + qmin with num = sum size_m (x_m[d] - qmin), den =
    sum size_m, in uint32 (num <= 2^14 * 65535: 2 num + den < 2^32); the divisor is max(den, 1) so
    that invalid sizes (rejected by the reference) cannot divide by zero. isqrt64/bitlen from
    micro/isqrt64.h.
float32 (sizes float32; the reference's float64 rules): u = mean_h k / |mean_h k| in double, sims
in double, weighted means num / den in double rounded to float once (den = float32 size out).

Schedules (both exact): "reference" plain loops; "fast" computes integer similarities with
`ev_dot_s16` and copies rows with `ev_copy_bytes` (micro/token_merge.h: SMLAD on two int16 pairs per
step on DSP cores, memcpy), and unrolls the float similarity loop fully (hd <= 64). Measured on QEMU
mps2-an500 (Cortex-M7, -O2): fmnist-tiny's first merge (N = 50, D = 64, 4 heads, hd = 16, r = 2)
~120k instructions, ~1.4 KB of code; the unit keys (isqrt64 and one 64-bit division per token) are
~60% of it. Not row-wise, no in-place (the output has fewer rows than the input; every output row
may read any input row).
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intmath import qrange
from edgevit.lower.ops.token_merge import SCRATCH_SECTIONS, protected_counts, scratch_bytes, scratch_layout
from edgevit.backend.kernels.base import Arg, KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, kernel_func_name, tensor_arg
from edgevit.backend.kernels.tir import tir_rshift

ISQRT_HELPER = "isqrt64"
UNIT_SHIFT = 47          # 61 - UNIT_BITS (14): u = rshift(K R, 47 - s)
MAX_UNROLL_HD = 64       # head_dim loops are unrolled fully up to this size (fast schedule)
MICRO_HELPER = "token_merge"  # micro/token_merge.h: ev_dot_s16 (SMLAD on DSP cores), ev_copy_bytes
INT_SENTINEL = -(1 << 31)  # below every integer similarity (|sim| < 2^29)
FLOAT_SENTINEL = -4.0      # below every cosine similarity (>= -1 - rounding)


# ---------------------------------------------------------------- TIR

def _views(T, scratch, layout: dict):
    """The scratch sections as buffers over the one scratch pointer (element offsets per dtype)."""
    return [T.decl_buffer((max(1, layout[s][2]),), layout[s][0], data=scratch, elem_offset=layout[s][1])
            for s in SCRATCH_SECTIONS]


def _merge_prim(n: int, d: int, w: int, r: int, x_dt: str, is_float: bool, has_size: bool, layout: dict, body):
    """PrimFunc (x, qkv, [size, ] y, y_size, scratch) calling the T.inline `body`."""
    from tvm.script import tirx as T

    qkv_dt, size_dt = ("float32", "float32") if is_float else ("int8", "int32")
    scratch_dt = "float64" if is_float else "int32"
    m = n - r
    if has_size:
        @T.prim_func(private=True)
        def with_size(x: T.handle(x_dt), qkv: T.handle(qkv_dt), size: T.handle(size_dt), y: T.handle(x_dt),
                      y_size: T.handle(size_dt), scratch: T.handle(scratch_dt)):
            X = T.decl_buffer((n * d,), x_dt, data=x)
            QKV = T.decl_buffer((n * w,), qkv_dt, data=qkv)
            SIZE = T.decl_buffer((n,), size_dt, data=size)
            Y = T.decl_buffer((m * d,), x_dt, data=y)
            YS = T.decl_buffer((m,), size_dt, data=y_size)
            UA, UB, SCORE, BEST, SRC, DST = _views(T, scratch, layout)
            body(X, QKV, SIZE, Y, YS, UA, UB, SCORE, BEST, SRC, DST)

        return with_size

    @T.prim_func(private=True)
    def func(x: T.handle(x_dt), qkv: T.handle(qkv_dt), y: T.handle(x_dt), y_size: T.handle(size_dt),
             scratch: T.handle(scratch_dt)):
        X = T.decl_buffer((n * d,), x_dt, data=x)
        QKV = T.decl_buffer((n * w,), qkv_dt, data=qkv)
        Y = T.decl_buffer((m * d,), x_dt, data=y)
        YS = T.decl_buffer((m,), size_dt, data=y_size)
        UA, UB, SCORE, BEST, SRC, DST = _views(T, scratch, layout)
        body(X, QKV, None, Y, YS, UA, UB, SCORE, BEST, SRC, DST)

    return func


def merge_func(n: int, d: int, heads: int, hd: int, r: int, protect: int, x_dt: str, has_size: bool, fast: bool):
    """PrimFunc (x, qkv, [size, ] y, y_size, scratch): the whole kernel for one shape (module doc).

    x [N*D] int8/int16/float32, qkv [N*3*H*hd] int8/float32, size [N] int32/float32 (optional),
    y [(N-r)*D], y_size [N-r], scratch as `scratch_layout`."""
    from tvm.script import tirx as T

    is_float = x_dt == "float32"
    layout, _ = scratch_layout(n, hd, r, is_float)
    w, kofs = 3 * heads * hd, heads * hd
    na, nb = (n + 1) // 2, n // 2
    pa, pb = protected_counts(protect)  # protected A tokens (class) and B tokens (distillation)
    qmin = 0 if is_float else qrange(x_dt)[0]
    acc_dt = "float64" if is_float else "int32"      # similarity and merge accumulators
    norm_dt, unit_dt = ("float64", "float64") if is_float else ("int64", "int16")
    size_dt = "float32" if is_float else "int32"
    sentinel = T.float64(FLOAT_SENTINEL) if is_float else T.int32(INT_SENTINEL)
    row_bytes = d * np.dtype(x_dt).itemsize

    def size_of(SIZE, j):
        """Token j's size: the input's, or 1."""
        return SIZE[j] if has_size else (T.float32(1.0) if is_float else T.int32(1))

    def weight(SIZE, j):
        """Token j's size in the accumulator type."""
        return T.Cast(acc_dt, size_of(SIZE, j))

    def hd_loop():
        return T.unroll(hd) if fast and hd <= MAX_UNROLL_HD else T.serial(hd)

    def key(QKV, j, h, t):
        """Key element t of head h of token j, widened for summing over heads."""
        return T.Cast("float64" if is_float else "int32", QKV[j * w + kofs + h * hd + t])

    @T.inline
    def body(X, QKV, SIZE, Y, YS, UA, UB, SCORE, BEST, SRC, DST):
        kt = T.alloc_buffer((1,), "float64" if is_float else "int32")
        nrm = T.alloc_buffer((1,), norm_dt)
        sh = T.alloc_buffer((1,), "int32")
        q = T.alloc_buffer((1,), "uint64")
        rcp = T.alloc_buffer((1,), "int64")
        acc = T.alloc_buffer((1,), acc_dt)
        mx = T.alloc_buffer((1,), acc_dt)
        idx = T.alloc_buffer((1,), "int32")
        row = T.alloc_buffer((1,), "int32")
        den = T.alloc_buffer((1,), acc_dt)
        cnt = T.alloc_buffer((1,), "int32")

        @T.inline
        def head_sum(j, t):  # kt = sum_h k_j[h, t]
            kt[0] = key(QKV, j, 0, t)
            for hh in range(1, heads):
                kt[0] = kt[0] + key(QKV, j, hh, t)

        @T.inline
        def unit_key(j, U, base):  # U[base + t] = unit key of token j (integer or float rules)
            nrm[0] = T.Cast(norm_dt, 0)
            for t in range(hd):
                head_sum(j, t)
                if is_float:
                    kt[0] = kt[0] / T.float64(heads)
                nrm[0] = nrm[0] + T.Cast(norm_dt, kt[0]) * T.Cast(norm_dt, kt[0])
            if nrm[0] == T.Cast(norm_dt, 0):
                for t in range(hd):
                    U[base + t] = T.Cast(unit_dt, 0)
            elif is_float:
                nrm[0] = T.sqrt(nrm[0])
                for t in range(hd):
                    head_sum(j, t)
                    U[base + t] = kt[0] / T.float64(heads) / nrm[0]
            else:
                sh[0] = T.shift_right(62 - T.call_extern("int32", "ev_bitlen64", T.Cast("uint64", nrm[0])), 1)
                q[0] = T.call_extern("uint64", "ev_isqrt64",
                                     T.shift_left(T.Cast("uint64", nrm[0]), T.Cast("uint64", 2 * sh[0])))
                rcp[0] = T.Cast("int64", T.truncdiv(T.shift_left(T.uint64(1), T.uint64(61))
                                                    + T.shift_right(q[0], T.uint64(1)), q[0]))
                for t in range(hd):
                    head_sum(j, t)
                    U[base + t] = T.Cast("int16", tir_rshift(T.Cast("int64", kt[0]) * rcp[0],
                                                             T.Cast("int64", UNIT_SHIFT - sh[0])))

        @T.inline
        def copy_row(src_row, dst_row):  # Y[dst_row] = X[src_row]
            if fast:
                T.evaluate(T.call_extern("void", "ev_copy_bytes", T.address_of(Y[dst_row * d]),
                                         T.address_of(X[src_row * d]), row_bytes))
            else:
                for c in range(d):
                    Y[dst_row * d + c] = X[src_row * d + c]

        @T.inline
        def merged_elem(b, c):  # weighted mean of column c of B token b's members (den, cnt set)
            if is_float:
                acc[0] = weight(SIZE, 2 * b + 1) * T.Cast("float64", X[(2 * b + 1) * d + c])
                for k in range(r):
                    if DST[k] == b:
                        acc[0] = acc[0] + weight(SIZE, 2 * SRC[k]) * T.Cast("float64", X[2 * SRC[k] * d + c])
                Y[(na - r + b) * d + c] = T.Cast("float32", acc[0] / den[0])
            else:
                acc[0] = weight(SIZE, 2 * b + 1) * (T.Cast("int32", X[(2 * b + 1) * d + c]) - qmin)
                for k in range(r):
                    if DST[k] == b:
                        acc[0] = acc[0] + weight(SIZE, 2 * SRC[k]) * (T.Cast("int32", X[2 * SRC[k] * d + c]) - qmin)
                Y[(na - r + b) * d + c] = T.Cast(x_dt, T.Cast("int32", T.truncdiv(
                    T.Cast("uint32", acc[0]) * T.uint32(2) + T.Cast("uint32", den[0]),
                    T.Cast("uint32", T.max(den[0], 1)) * T.uint32(2))) + qmin)

        # 1: unit keys of the B tokens
        for b in range(nb):
            unit_key(2 * b + 1, UB, b * hd)
        # 2: best B match and score of every mergeable A token
        for a in range(pa):
            BEST[a] = 0
            SCORE[a] = sentinel
        for a in range(pa, na):
            unit_key(2 * a, UA, 0)
            mx[0] = sentinel
            idx[0] = pb
            for b in range(pb, nb):
                if fast and not is_float:
                    acc[0] = T.call_extern("int32", "ev_dot_s16", T.address_of(UA[0]), T.address_of(UB[b * hd]), hd)
                else:
                    acc[0] = T.Cast(acc_dt, 0)
                    for t in hd_loop():
                        acc[0] = acc[0] + T.Cast(acc_dt, UA[t]) * T.Cast(acc_dt, UB[b * hd + t])
                if acc[0] > mx[0]:
                    mx[0] = acc[0]
                    idx[0] = b
            BEST[a] = idx[0]
            SCORE[a] = mx[0]
        # 3: the r best-scoring A tokens, in rank order
        for k in range(r):
            mx[0] = sentinel
            idx[0] = pa
            for a in range(pa, na):
                if SCORE[a] > mx[0]:
                    mx[0] = SCORE[a]
                    idx[0] = a
            SRC[k] = idx[0]
            DST[k] = BEST[idx[0]]
            SCORE[idx[0]] = sentinel
            BEST[idx[0]] = -1
        # 4: protected tokens, kept A tokens, then the B tokens (merged or copied)
        for a in range(pa):
            copy_row(2 * a, a)
            YS[a] = size_of(SIZE, 2 * a)
        for b in range(pb):
            copy_row(2 * b + 1, pa + b)
            YS[pa + b] = size_of(SIZE, 2 * b + 1)
        row[0] = pa + pb
        for a in range(pa, na):
            if BEST[a] >= 0:
                copy_row(2 * a, row[0])
                YS[row[0]] = size_of(SIZE, 2 * a)
                row[0] = row[0] + 1
        for b in range(pb, nb):
            den[0] = weight(SIZE, 2 * b + 1)
            cnt[0] = 0
            for k in range(r):
                if DST[k] == b:
                    den[0] = den[0] + weight(SIZE, 2 * SRC[k])
                    cnt[0] = cnt[0] + 1
            YS[na - r + b] = T.Cast(size_dt, den[0])
            if cnt[0] == 0:
                copy_row(2 * b + 1, na - r + b)
            else:
                for c in range(d):
                    merged_elem(b, c)

    return _merge_prim(n, d, w, r, x_dt, is_float, has_size, layout, body)


# ---------------------------------------------------------------- generator

def generate(req: KernelRequest) -> KernelCode:
    """C for one `token_merge` kernel: tokens [N, D], qkv [N, 3*H*hd] (, size [N]) -> [N - r, D], [N - r]."""
    check_request(req, row_wise=False)
    x, qkv = req.in_infos[0], req.in_infos[1]
    size = req.in_infos[2] if len(req.in_infos) > 2 else None
    y, ys = req.out_infos
    a = req.kernel.attrs
    n, d = x.shape
    heads, hd, protect = int(a["heads"]), int(a["head_dim"]), int(a.get("protect", 0))
    r = n - y.shape[0]
    is_float = x.dtype == "float32"
    prim = merge_func(n, d, heads, hd, r, protect, x.dtype, size is not None, req.schedule == "fast")
    args = (tensor_arg(x.name, x.dtype), tensor_arg(qkv.name, qkv.dtype),
            *((tensor_arg(size.name, size.dtype),) if size is not None else ()),
            tensor_arg(y.name, y.dtype), tensor_arg(ys.name, ys.dtype),
            Arg("scratch", None, "double*" if is_float else "int32_t*"))
    name = kernel_func_name(req, heads=heads, head_dim=hd, protect=protect)
    nbytes = scratch_bytes(req.kernel, list(req.in_infos), list(req.out_infos), req.rows)
    helpers = (() if is_float else (ISQRT_HELPER,)) + ((MICRO_HELPER,) if req.schedule == "fast" else ())
    return KernelCode(name, prim, args, scratch_bytes=nbytes, helpers=helpers)


KERNEL = KernelDef(op="token_merge", generate=generate, dtypes=("float32", "int8", "int16"))
