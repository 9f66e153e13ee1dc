"""layernorm on the cpu target: the generic kernel's arithmetic (edgevit/backend/kernels/layernorm.py)
vectorized over each row's D features, rows in a parallel loop when the kernel is large.

Per row, with `lanes` 32-bit lanes per vector (AVX-512 16, AVX2 8, NEON/SSE 4; vector_isa.lanes32):

- float32: the sum and the sum of squared deviations accumulate in `lanes` float64 lanes (then
  across lanes and over the D % lanes tail), mean and 1/sqrt(var + eps) as the reference, the
  output (x - mean) * inv * gamma + beta in float32 vectors (within float rounding of the reference);
- int8 / int16 (bit-exact, docs/integer-semantics.md "LayerNorm", as the generic fast schedule):
  S = sum x and Q = sum x^2 in vector lanes (int32; int64 lanes for int16 input), W = (D (D Q - S^2)
  << F) + E, s = min((62 - bitlen(W)) >> 1, 30 - F/2) with bitlen from count-leading-zeros, q =
  isqrt(W << 2s) as a float64 square root corrected exactly in integers (as intmath.isqrt64: the
  root is unique, W << 2s < 2^62), R = (2^61 + q/2) / q (one uint64 division), then per feature in
  vector lanes U = rshift(c R, 31 - F/2 - s) with c = D x - S, and y = clamp(rshift(U G + B, n) +
  zp) where rshift by n >= 40 is taken as the high 32 bits of U G + B + 2^(n-1) shifted right by
  n - 32 (floor shifts compose). R is used as min(R, 2^31): R > 2^31 only when V = 0, and then
  every c is 0, so U is the same.

No micro-kernel helpers (no ev_isqrt64 / ev_bitlen64 calls). In place on input 0 is safe as in the
generic kernel: a row's statistics are read before its outputs are written, each output vector after
its inputs. The "reference" schedule is the generic one.
"""

from __future__ import annotations

from typing import Sequence

from edgevit.backend.kernels import layernorm as generic
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.tir import tir_clamp, tir_half
from edgevit.targets.cpu.kernels.vector_isa import lanes32

PARALLEL_MIN_ELEMS = 1 << 15  # rows x D below this run on one thread
ROW_BLOCK = 8  # integer kernels: the statistics of 8 rows, then their outputs (the rows' scalar steps overlap)


def _parallel(rows: int, d: int) -> bool:
    """Whether the rows loop is a parallel loop."""
    return rows > 1 and rows * d >= PARALLEL_MIN_ELEMS


def float_func(rows: int, d: int, eps: float, isa: Sequence[str]):
    """PrimFunc (x, gamma, beta, y): float32 LayerNorm per row, vectorized (module docstring)."""
    from tvm import tirx
    from tvm.script import tirx as T

    lanes = lanes32(isa)
    nch, main, rest = d // lanes, d - d % lanes, d % lanes
    row_loop = T.parallel if _parallel(rows, d) else T.serial
    inv_d, eps_c = tirx.const(float(d), "float64"), tirx.const(float(eps), "float64")

    @T.inline
    def normalize(X, G, B, Y, r, c0, width, mean, inv):
        for t in T.vectorized(width):
            Y[r * d + c0 + t] = (X[r * d + c0 + t] - mean) * inv * G[c0 + t] + B[c0 + t]

    @T.prim_func(private=True)
    def func(x: T.handle("float32"), gamma: T.handle("float32"), beta: T.handle("float32"), y: T.handle("float32")):
        X = T.decl_buffer((rows * d,), "float32", data=x)
        G = T.decl_buffer((d,), "float32", data=gamma)
        B = T.decl_buffer((d,), "float32", data=beta)
        Y = T.decl_buffer((rows * d,), "float32", data=y)
        for r in row_loop(rows):
            acc = T.alloc_buffer((lanes,), "float64")
            tot = T.alloc_buffer((2,), "float64")
            for l in T.vectorized(lanes):
                acc[l] = T.float64(0.0)
            for c in range(nch):
                for l in T.vectorized(lanes):
                    acc[l] = acc[l] + T.Cast("float64", X[r * d + c * lanes + l])
            tot[0] = T.float64(0.0)
            for l in range(lanes):
                tot[0] = tot[0] + acc[l]
            for t in range(main, d):
                tot[0] = tot[0] + T.Cast("float64", X[r * d + t])
            mean = T.bind(T.Cast("float32", tot[0] / inv_d))
            for l in T.vectorized(lanes):
                acc[l] = T.float64(0.0)
            for c in range(nch):
                for l in T.vectorized(lanes):
                    acc[l] = acc[l] + (T.Cast("float64", X[r * d + c * lanes + l] - mean)
                                       * T.Cast("float64", X[r * d + c * lanes + l] - mean))
            tot[1] = T.float64(0.0)
            for l in range(lanes):
                tot[1] = tot[1] + acc[l]
            for t in range(main, d):
                tot[1] = tot[1] + T.Cast("float64", X[r * d + t] - mean) * T.Cast("float64", X[r * d + t] - mean)
            inv = T.bind(T.Cast("float32", T.float64(1.0) / T.sqrt(tot[1] / inv_d + eps_c)))
            for c in range(nch):
                normalize(X, G, B, Y, r, c * lanes, lanes, mean, inv)
            if rest > 0:
                normalize(X, G, B, Y, r, main, rest, mean, inv)

    return func


def int_func(rows: int, d: int, in_dt: str, out_dt: str, isa: Sequence[str]):
    """PrimFunc (x, gain, bias, y, frac_bits, eps_fixed, out_shift, zp): integer LayerNorm per row,
    vectorized, bit-exact (module docstring)."""
    from tvm.script import tirx as T

    lanes = lanes32(isa)
    nch, main, rest = d // lanes, d - d % lanes, d % lanes
    qt = "int32" if in_dt == "int8" else "int64"  # sum of squares: <= 1024 * 2^14 for int8
    row_loop = T.parallel if _parallel(rows, d) else T.serial
    blocks = -(-rows // ROW_BLOCK)

    def isqrt_step(q, v):
        """One exact correction of a root estimate q of v (uint64): q - (q^2 > v) + ((q+1)^2 <= v)."""
        q = q - T.Cast("uint64", q * q > v)
        return q + T.Cast("uint64", (q + T.uint64(1)) * (q + T.uint64(1)) <= v)

    @T.inline
    def output(X, G, B, Y, r, c0, width, s1, rc, n7, h7, half8, sh8, zp):
        for t in T.vectorized(width):
            Y[r * d + c0 + t] = tir_clamp(T.shift_right(T.Cast("int32", T.shift_right(
                T.Cast("int64", T.Cast("int32", T.shift_right(
                    T.Cast("int64", d * T.Cast("int32", X[r * d + c0 + t]) - s1) * rc + h7, n7)))
                * T.Cast("int64", G[c0 + t]) + B[c0 + t] + half8, T.int64(32))), sh8) + zp, out_dt)

    @T.inline
    def stats(X, r, P, rr, frac_bits, eps):  # row r: P[rr] = S, P[RB + rr] = min(R, 2^31), P[2 RB + rr] = n7
        sacc = T.alloc_buffer((lanes,), "int32")
        qacc = T.alloc_buffer((lanes,), qt)
        st = T.alloc_buffer((1,), "int32")
        sq = T.alloc_buffer((1,), qt)
        for l in T.vectorized(lanes):
            sacc[l] = 0
            qacc[l] = T.Cast(qt, 0)
        for c in range(nch):
            for l in T.vectorized(lanes):
                sacc[l] = sacc[l] + T.Cast("int32", X[r * d + c * lanes + l])
                qacc[l] = qacc[l] + T.Cast(qt, T.Cast("int32", X[r * d + c * lanes + l])
                                           * T.Cast("int32", X[r * d + c * lanes + l]))
        st[0] = 0
        sq[0] = T.Cast(qt, 0)
        for l in range(lanes):
            st[0] = st[0] + sacc[l]
            sq[0] = sq[0] + qacc[l]
        for t in range(main, d):
            st[0] = st[0] + T.Cast("int32", X[r * d + t])
            sq[0] = sq[0] + T.Cast(qt, T.Cast("int32", X[r * d + t]) * T.Cast("int32", X[r * d + t]))
        w = T.bind(T.shift_left(T.int64(d) * (T.int64(d) * T.Cast("int64", sq[0])
                                              - T.Cast("int64", st[0]) * T.Cast("int64", st[0])),
                                T.Cast("int64", frac_bits)) + eps)
        sh = T.bind(T.min(T.shift_right(62 - (64 - T.Cast("int32", T.clz(w))), 1), 30 - T.shift_right(frac_bits, 1)))
        v = T.bind(T.shift_left(T.Cast("uint64", w), T.Cast("uint64", 2 * sh)))
        q = T.bind(isqrt_step(isqrt_step(T.Cast("uint64", T.sqrt(T.Cast("float64", v))), v), v))
        P[rr] = T.Cast("int64", st[0])
        P[ROW_BLOCK + rr] = T.min(T.Cast("int64", T.truncdiv(T.shift_left(T.uint64(1), T.uint64(61))
                                                             + T.shift_right(q, T.uint64(1)), q)), T.int64(1 << 31))
        P[2 * ROW_BLOCK + rr] = T.Cast("int64", 31 - T.shift_right(frac_bits, 1) - sh)

    @T.prim_func(private=True)
    def func(x: T.handle(in_dt), gain: T.handle("int32"), bias: T.handle("int64"), y: T.handle(out_dt),
             frac_bits: T.int32, eps: T.int64, out_shift: T.int32, zp: T.int32):
        X = T.decl_buffer((rows * d,), in_dt, data=x)
        G = T.decl_buffer((d,), "int32", data=gain)
        B = T.decl_buffer((d,), "int64", data=bias)
        Y = T.decl_buffer((rows * d,), out_dt, data=y)
        half8 = T.bind(tir_half(out_shift))
        sh8 = T.bind(out_shift - 32)
        for b in row_loop(blocks):
            P = T.alloc_buffer((3 * ROW_BLOCK,), "int64")
            for rr in range(T.min(ROW_BLOCK, rows - b * ROW_BLOCK)):
                stats(X, b * ROW_BLOCK + rr, P, rr, frac_bits, eps)
            for rr in range(T.min(ROW_BLOCK, rows - b * ROW_BLOCK)):
                s1 = T.bind(T.Cast("int32", P[rr]))
                n7 = T.bind(P[2 * ROW_BLOCK + rr])
                h7 = T.bind(T.shift_left(T.int64(1), n7 - T.int64(1)))
                for c in range(nch):
                    output(X, G, B, Y, b * ROW_BLOCK + rr, c * lanes, lanes, s1, P[ROW_BLOCK + rr], n7, h7, half8,
                           sh8, zp)
                if rest > 0:
                    output(X, G, B, Y, b * ROW_BLOCK + rr, main, rest, s1, P[ROW_BLOCK + rr], n7, h7, half8, sh8, zp)

    return func


def generate(req: KernelRequest) -> KernelCode:
    """C for one `layernorm` kernel on the cpu target (module docstring); the "reference" schedule is
    the generic kernel's."""
    rows = req.rows if req.rows is not None else req.in_infos[0].shape[0]
    facts = {"lanes": lanes32(req.isa), "parallel": _parallel(rows, req.in_infos[0].shape[1])}
    hooks = generic.LayernormHooks(
        float_func=lambda r, d, eps: float_func(r, d, eps, req.isa),
        int_func=lambda r, d, in_dt, out_dt: int_func(r, d, in_dt, out_dt, req.isa), facts=facts)
    return generic.generate(req, hooks)


KERNEL = KernelDef(op="layernorm", generate=generate, dtypes=generic.KERNEL.dtypes)
