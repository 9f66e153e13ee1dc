"""attention: multi-head self-attention core, qkv [N, 3*H*hd] -> [N, H*hd], as a TVM-generated C kernel.

The kernel STREAMS query rows: for each head h and query row i, one row of N scores lives in the
arena scratch (N * 4 bytes, int32 or float32: the `scratch` trait), and is rewritten in place by
each step — scores, then exp values, then probabilities. Never an N x N buffer.

int8 (docs/integer-semantics.md "attention" and "Softmax"; bit-exact with `ops/attention.run_int8`):

    1  s_j = sum_t q_i[t] k_j[t]  (int32) into the row, m = max_j s_j       (m kept in a register)
    2  d_j = min(m - s_j, INT32_MAX);  i_j = min(rshift(d_j * M_s, 31 - shift_s), T - 1)
       e_j = score_lut[i_j] into the row, S = sum_j e_j                      (S kept in a register)
    3  R = ((255 << 40) + (S >> 1)) / S          one uint64 division per row
       p_j = min(rshift(e_j R, 40), 255) into the row
    4  out[i, h*hd + t] = requantize(sum_j p_j v_j[t], M_o, shift_o, zp_out)

score_multiplier/score_shift, out_multiplier/out_shift and zp_out are int arguments, `score_lut`
(int32 [T]) a constant pointer, so the layers of a model share one function per shape.
With the optional `size` input (token merging, proportional attention; int32 [N]) and the
constant `log_size` (int32 [S]), step 1 adds log_size[size_j - 1] to every score (sizes are
clamped to [1, S] so the table is never read outside; the reference rejects such sizes).
Schedules (both bit-exact):
  - "reference": steps 1-4 literally in int64;
  - "fast": the row max and sum live in registers, the rounding constants and 31 - shift_s are
    hoisted out of all loops, token loops are unrolled by 4 and head_dim loops fully (hd <= 64).
    Step 2 runs on 32-bit pieces: m - s_j as a wrapping uint32 difference (exact: 0 <= m - s_j <
    2^32; the INT32_MAX clamp is compiled out when hd 2^15 (+ 2^30 with sizes) < 2^31), a 32x32->64
    product with M_s, and when the right shift sn = 31 - shift_s is >= 32 (checked once per row)
    the index is the product's high word shifted by sn - 32 (no 64-bit shift). Step 3 multiplies
    e_j <= 2^F by R < 255 * 2^(40-F) as 32-bit numbers when F >= 16 (F = 20 for the default
    1024-token table; smaller F keeps R in 64 bits; F is part of the function name).
  Measured on QEMU mps2-an500 (Cortex-M7, gcc -O2, SysTick under -icount): steps 2-3 cost ~25
  emulated instructions per score element (~31 when sn < 32; reference schedule ~51) plus ~3 for
  the running max in step 1 (benchmarks/mcu_speed.py; no other library was measured).

float32 (the reference's steps up to summation order): s_j = (q . k_j) * scale (float32; scale
compiled in exactly) [+ logf(size_j), computed once per call into a second scratch row: 8 * N
bytes], e_j = expf(s_j - m), sum in double, p_j = e_j * (float)(1/sum), out = sum_j p_j v_j.

Not row-wise (every query row reads all keys and values), no in-place.

A target replaces the fast schedule's PrimFuncs through `AttentionHooks` (same parameters, same
C call; e.g. the cpu target's vector kernels, edgevit/targets/cpu/kernels/attention.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgevit.lower.ops.attention import scratch_bytes
from edgevit.backend.kernels.base import Arg, KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, const_arg, int_arg, kernel_func_name, tensor_arg
from edgevit.backend.kernels.tir import F32_HELPER, f32_const, tir_requantize, tir_rshift

RECIP_BITS = 40          # K of the spec: p = rshift(e * R, K)
UNROLL = 4               # token-loop unroll factor of the fast schedule
MAX_UNROLL_HD = 64       # head_dim loops are unrolled fully up to this size
NEG_INF_BITS = 0xFF800000
RECIP32_MIN_FRAC_BITS = 16  # 255 * 2^40 / 2^F < 2^32 from F = 16 on


@dataclass(frozen=True)
class AttentionHooks:
    """A target's PrimFunc builders for the fast schedule, with the generic functions' parameters:
    float_func(n, h, hd, scale, has_size) like `float_func`, int8_func(n, h, hd, table_size, frac_bits,
    n_log) like `int8_fast_func`; `facts` are added to the C function name; `helpers` replace the
    float kernel's micro-kernel headers."""

    float_func: Callable[[int, int, int, float, bool], Any]
    int8_func: Callable[[int, int, int, int, int, int], Any]
    facts: dict = field(default_factory=dict)
    helpers: tuple[str, ...] = ()


def _hd_loop(T, hd: int, fast: bool):
    """A new head_dim loop frame: fully unrolled in the fast schedule (hd <= 64), serial otherwise."""
    return T.unroll(hd) if fast and hd <= MAX_UNROLL_HD else T.serial(hd)


def size_bias(T, SIZE, LOG, j, n_log: int):
    """log_size[size_j - 1], size_j clamped to [1, S] (out-of-range sizes, an error in the reference,
    never read outside the table)."""
    return LOG[T.max(T.min(SIZE[j], n_log), 1) - 1]


def int8_prim(n: int, h: int, hd: int, table_size: int, n_log: int, body):
    """The int8 PrimFunc: (qkv, [size, ] score_lut, [log_size, ] out, row scratch, score_M, score_shift,
    out_M, out_shift, zp) calling the T.inline `body` (the size pointers only when n_log > 0)."""
    from tvm.script import tirx as T

    w, ow = 3 * h * hd, h * hd
    if n_log:
        @T.prim_func(private=True)
        def with_size(qkv: T.handle("int8"), size: T.handle("int32"), lut: T.handle("int32"),
                      log_size: T.handle("int32"), out: T.handle("int8"), row: T.handle("int32"), score_mult: T.int32,
                      score_shift: T.int32, out_mult: T.int32, out_shift: T.int32, zp: T.int32):
            QKV = T.decl_buffer((n * w,), "int8", data=qkv)
            SIZE = T.decl_buffer((n,), "int32", data=size)
            L = T.decl_buffer((table_size,), "int32", data=lut)
            LOG = T.decl_buffer((n_log,), "int32", data=log_size)
            O = T.decl_buffer((n * ow,), "int8", data=out)
            S = T.decl_buffer((n,), "int32", data=row)
            body(QKV, SIZE, L, LOG, O, S, score_mult, score_shift, out_mult, out_shift, zp)

        return with_size

    @T.prim_func(private=True)
    def func(qkv: T.handle("int8"), lut: T.handle("int32"), out: T.handle("int8"), row: T.handle("int32"),
             score_mult: T.int32, score_shift: T.int32, out_mult: T.int32, out_shift: T.int32, zp: T.int32):
        QKV = T.decl_buffer((n * w,), "int8", data=qkv)
        L = T.decl_buffer((table_size,), "int32", data=lut)
        O = T.decl_buffer((n * ow,), "int8", data=out)
        S = T.decl_buffer((n,), "int32", data=row)
        body(QKV, None, L, None, O, S, score_mult, score_shift, out_mult, out_shift, zp)

    return func


def int8_reference_func(n: int, h: int, hd: int, table_size: int, n_log: int = 0):
    """int8 PrimFunc (see `int8_prim`) doing steps 1-4 literally in int64."""
    from tvm.script import tirx as T

    w, ow = 3 * h * hd, h * hd
    has_size = n_log > 0

    def index(s, m, mult, shift):
        """min(rshift(min((int64)m - s, INT32_MAX) * M, 31 - shift), T - 1)."""
        d = T.min(T.Cast("int64", m) - T.Cast("int64", s), T.int64(0x7FFFFFFF))
        return T.Cast("int32", T.min(tir_rshift(d * T.Cast("int64", mult), T.int64(31) - T.Cast("int64", shift)),
                                     T.int64(table_size - 1)))

    @T.inline
    def body(QKV, SIZE, L, LOG, O, S, score_mult, score_shift, out_mult, out_shift, zp):
        mx = T.alloc_buffer((1,), "int32")
        tot = T.alloc_buffer((1,), "int32")
        acc = T.alloc_buffer((1,), "int32")
        rcp = T.alloc_buffer((1,), "int64")
        for hh in range(h):
            for i in range(n):
                mx[0] = T.int32(-2147483648)
                for j in range(n):
                    acc[0] = 0
                    for t in range(hd):
                        acc[0] = acc[0] + (T.Cast("int32", QKV[i * w + hh * hd + t])
                                           * T.Cast("int32", QKV[j * w + ow + hh * hd + t]))
                    if has_size:
                        acc[0] = acc[0] + size_bias(T, SIZE, LOG, j, n_log)
                    S[j] = acc[0]
                    mx[0] = T.max(mx[0], acc[0])
                tot[0] = 0
                for j in range(n):
                    S[j] = L[index(S[j], mx[0], score_mult, score_shift)]
                    tot[0] = tot[0] + S[j]
                rcp[0] = T.Cast("int64", T.truncdiv(T.shift_left(T.uint64(255), T.uint64(RECIP_BITS))
                                                    + T.Cast("uint64", T.shift_right(tot[0], 1)),
                                                    T.Cast("uint64", tot[0])))
                for j in range(n):
                    S[j] = T.Cast("int32", T.min(tir_rshift(T.Cast("int64", S[j]) * rcp[0], T.int64(RECIP_BITS)),
                                                 T.int64(255)))
                for t in range(hd):
                    acc[0] = 0
                    for j in range(n):
                        acc[0] = acc[0] + S[j] * T.Cast("int32", QKV[j * w + 2 * ow + hh * hd + t])
                    O[i * ow + hh * hd + t] = tir_requantize(acc[0], out_mult, out_shift, zp, "int8")

    return int8_prim(n, h, hd, table_size, n_log, body)


def int8_fast_func(n: int, h: int, hd: int, table_size: int, frac_bits: int = 20, n_log: int = 0):
    """int8 PrimFunc (see `int8_prim`): 32-bit softmax pieces, registers, unrolled loops.

    frac_bits: F of the score LUT (table[0] = 2^F); R = 255 * 2^40 / S fits a uint32 when F >= 16.
    n_log: length S of the log-size table (0: no `size` input).
    """
    from tvm.script import tirx as T

    w, ow = 3 * h * hd, h * hd
    has_size = n_log > 0
    main = n - n % UNROLL
    rcp_dt = "uint32" if frac_bits >= RECIP32_MIN_FRAC_BITS else "uint64"
    # |q.k| <= hd 2^14 and 0 <= log_size <= 2^30, so m - s < 2^31 (no INT32_MAX clamp) below this
    clamp_d = hd * (1 << 15) + (1 << 30 if n_log else 0) >= 1 << 31
    last = table_size - 1

    def hd_loop():
        return _hd_loop(T, hd, True)

    def dist(m, s):
        """d = min(m - s, INT32_MAX) as uint32 (m - s wraps exactly: 0 <= m - s < 2^32)."""
        d = T.Cast("uint32", m) - T.Cast("uint32", s)
        return T.min(d, T.uint32(0x7FFFFFFF)) if clamp_d else d

    @T.inline
    def body(QKV, SIZE, L, LOG, O, S, score_mult, score_shift, out_mult, out_shift, zp):
        mx = T.alloc_buffer((1,), "int32")
        tot = T.alloc_buffer((1,), "int32")
        acc = T.alloc_buffer((1,), "int32")
        rcp = T.alloc_buffer((1,), rcp_dt)
        mult = T.alloc_buffer((1,), "uint32")
        sn = T.alloc_buffer((1,), "uint64")
        shi = T.alloc_buffer((1,), "uint32")
        half = T.alloc_buffer((1,), "uint64")
        mult[0] = T.Cast("uint32", score_mult)
        sn[0] = T.Cast("uint64", 31 - score_shift)
        shi[0] = T.Cast("uint32", 31 - score_shift) - T.uint32(32)  # used only when sn >= 32
        half[0] = T.shift_left(T.uint64(1), sn[0] - T.uint64(1))

        @T.inline
        def score(hh, i, j):  # step 1 for head hh, query i, key j; the running max in a register
            acc[0] = 0
            for t in hd_loop():
                acc[0] = acc[0] + (T.Cast("int32", QKV[i * w + hh * hd + t])
                                   * T.Cast("int32", QKV[j * w + ow + hh * hd + t]))
            if has_size:
                acc[0] = acc[0] + size_bias(T, SIZE, LOG, j, n_log)
            S[j] = acc[0]
            mx[0] = T.max(mx[0], acc[0])

        @T.inline
        def exp_hi(j):  # step 2 when sn >= 32: the index is the high word of d*M + half, shifted by sn - 32
            S[j] = L[T.Cast("int32", T.min(T.shift_right(T.Cast("uint32", T.shift_right(
                T.Cast("uint64", dist(mx[0], S[j])) * T.Cast("uint64", mult[0]) + half[0], T.uint64(32))), shi[0]),
                T.uint32(last)))]
            tot[0] = tot[0] + S[j]

        @T.inline
        def exp_lo(j):  # step 2 when sn < 32: a full 64-bit shift
            S[j] = L[T.Cast("int32", T.min(T.shift_right(
                T.Cast("uint64", dist(mx[0], S[j])) * T.Cast("uint64", mult[0]) + half[0], sn[0]), T.uint64(last)))]
            tot[0] = tot[0] + S[j]

        @T.inline
        def prob(j):  # step 3: p = min((e R + 2^39) >> 40, 255), e <= 2^30 read as a uint32
            S[j] = T.Cast("int32", T.min(T.Cast("uint32", T.shift_right(
                T.Cast("uint64", T.Cast("uint32", S[j])) * T.Cast("uint64", rcp[0]) + T.uint64(1 << (RECIP_BITS - 1)),
                T.uint64(RECIP_BITS))), T.uint32(255)))

        @T.inline
        def pv(hh, t, j):  # step 4 accumulation for head hh, output channel t, key j
            acc[0] = acc[0] + S[j] * T.Cast("int32", QKV[j * w + 2 * ow + hh * hd + t])

        for hh in range(h):
            for i in range(n):
                mx[0] = T.int32(-2147483648)
                for j in range(n):
                    score(hh, i, j)
                tot[0] = 0
                if sn[0] >= T.uint64(32):
                    for jo in range(main // UNROLL):
                        for ji in T.unroll(UNROLL):
                            exp_hi(jo * UNROLL + ji)
                    for j in range(main, n):
                        exp_hi(j)
                else:
                    for jo in range(main // UNROLL):
                        for ji in T.unroll(UNROLL):
                            exp_lo(jo * UNROLL + ji)
                    for j in range(main, n):
                        exp_lo(j)
                rcp[0] = T.Cast(rcp_dt, T.truncdiv(T.shift_left(T.uint64(255), T.uint64(RECIP_BITS))
                                                   + T.Cast("uint64", T.shift_right(tot[0], 1)),
                                                   T.Cast("uint64", tot[0])))
                for jo in range(main // UNROLL):
                    for ji in T.unroll(UNROLL):
                        prob(jo * UNROLL + ji)
                for j in range(main, n):
                    prob(j)
                for t in range(hd):
                    acc[0] = 0
                    for jo in range(main // UNROLL):
                        for ji in T.unroll(UNROLL):
                            pv(hh, t, jo * UNROLL + ji)
                    for j in range(main, n):
                        pv(hh, t, j)
                    O[i * ow + hh * hd + t] = tir_requantize(acc[0], out_mult, out_shift, zp, "int8")

    return int8_prim(n, h, hd, table_size, n_log, body)


def float_func(n: int, h: int, hd: int, scale: float, fast: bool, has_size: bool = False):
    """float32 PrimFunc (qkv, [size, ] out, row scratch), one query row at a time; with `size`, the
    scratch holds log(size_j) after the row (computed once per call)."""
    from tvm.script import tirx as T

    w, ow = 3 * h * hd, h * hd

    def hd_loop():
        return _hd_loop(T, hd, fast)

    @T.inline
    def body(QKV, SIZE, O, S):
        mx = T.alloc_buffer((1,), "float32")
        acc = T.alloc_buffer((1,), "float32")
        tot = T.alloc_buffer((1,), "float64")
        inv = T.alloc_buffer((1,), "float32")
        if has_size:
            for j in range(n):
                S[n + j] = T.log(SIZE[j])
        for hh in range(h):
            for i in range(n):
                mx[0] = T.call_pure_extern("float32", "ev_f32_bits", T.uint32(NEG_INF_BITS))
                for j in range(n):
                    acc[0] = T.float32(0.0)
                    for t in hd_loop():
                        acc[0] = acc[0] + QKV[i * w + hh * hd + t] * QKV[j * w + ow + hh * hd + t]
                    if has_size:
                        S[j] = acc[0] * f32_const(scale) + S[n + j]
                    else:
                        S[j] = acc[0] * f32_const(scale)
                    mx[0] = T.max(mx[0], S[j])
                tot[0] = T.float64(0.0)
                for j in range(n):
                    S[j] = T.exp(S[j] - mx[0])
                    tot[0] = tot[0] + T.Cast("float64", S[j])
                inv[0] = T.Cast("float32", T.float64(1.0) / tot[0])
                for j in range(n):
                    S[j] = S[j] * inv[0]
                for t in range(hd):
                    acc[0] = T.float32(0.0)
                    for j in range(n):
                        acc[0] = acc[0] + S[j] * QKV[j * w + 2 * ow + hh * hd + t]
                    O[i * ow + hh * hd + t] = acc[0]

    if has_size:
        @T.prim_func(private=True)
        def with_size(qkv: T.handle("float32"), size: T.handle("float32"), out: T.handle("float32"),
                      row: T.handle("float32")):
            QKV = T.decl_buffer((n * w,), "float32", data=qkv)
            SIZE = T.decl_buffer((n,), "float32", data=size)
            O = T.decl_buffer((n * ow,), "float32", data=out)
            S = T.decl_buffer((2 * n,), "float32", data=row)
            body(QKV, SIZE, O, S)

        return with_size

    @T.prim_func(private=True)
    def func(qkv: T.handle("float32"), out: T.handle("float32"), row: T.handle("float32")):
        QKV = T.decl_buffer((n * w,), "float32", data=qkv)
        O = T.decl_buffer((n * ow,), "float32", data=out)
        S = T.decl_buffer((n,), "float32", data=row)
        body(QKV, None, O, S)

    return func


def generate(req: KernelRequest, hooks: AttentionHooks | None = None) -> KernelCode:
    """C for one `attention` kernel: qkv [N, 3*H*hd] (+ optional size [N]) -> [N, H*hd]; `hooks`: a
    target's PrimFuncs for the fast schedule (None: the generic ones)."""
    check_request(req, row_wise=False)
    x, size = req.in_infos[0], (req.in_infos[1] if len(req.in_infos) > 1 else None)
    (y,) = req.out_infos
    a = req.kernel.attrs
    n, h, hd = x.shape[0], int(a["heads"]), int(a["head_dim"])
    fast = req.schedule == "fast"
    hooks = hooks if fast else None
    facts = hooks.facts if hooks else {}
    scratch = scratch_bytes(req.kernel, list(req.in_infos), list(req.out_infos), req.rows)
    size_args = (tensor_arg(size.name, size.dtype),) if size is not None else ()
    if x.dtype == "float32":
        scale = float(np.float32(a["scale"]))
        args = (tensor_arg(x.name, x.dtype), *size_args, tensor_arg(y.name, y.dtype), Arg("scratch", None, "float*"))
        prim = (hooks.float_func(n, h, hd, scale, size is not None) if hooks
                else float_func(n, h, hd, scale, fast, size is not None))
        return KernelCode(kernel_func_name(req, heads=h, head_dim=hd, scale=scale.hex(), **facts), prim,
                          args, scratch_bytes=scratch, helpers=hooks.helpers if hooks else (F32_HELPER,))
    table = req.consts["score_lut"]
    frac_bits = int(table[0]).bit_length() - 1
    n_log = int(req.consts["log_size"].shape[0]) if size is not None else 0
    if hooks:
        prim = hooks.int8_func(n, h, hd, int(table.shape[0]), frac_bits, n_log)
    else:
        prim = (int8_fast_func(n, h, hd, int(table.shape[0]), frac_bits, n_log) if fast
                else int8_reference_func(n, h, hd, int(table.shape[0]), n_log))
    log_args = (const_arg("log_size", req.consts["log_size"]),) if size is not None else ()
    args = (tensor_arg(x.name, x.dtype), *size_args, const_arg("score_lut", table), *log_args,
            tensor_arg(y.name, y.dtype), Arg("scratch", None, "int32_t*"), int_arg(a["score_multiplier"]),
            int_arg(a["score_shift"]), int_arg(a["out_multiplier"]), int_arg(a["out_shift"]),
            int_arg(a["out_quant"]["zero_point"]))
    return KernelCode(kernel_func_name(req, heads=h, head_dim=hd, frac_bits=frac_bits, **facts), prim, args,
                      scratch_bytes=scratch)


KERNEL = KernelDef(op="attention", generate=generate, dtypes=("float32", "int8"))
