"""attention on the cpu target: the generic kernel's arithmetic (edgevit/backend/kernels/attention.py)
on vector registers, blocks of queries and a parallel loop over (head, query block) tasks.

Each task takes one head h and a block of Q = lanes queries (the vector width of 32-bit values:
AVX-512 16, AVX2 8, NEON/SSE 4; the last block is partial and its unused lanes compute on zero
queries, never stored) and keeps everything in per-task buffers (TVM workspace: the library's
per-thread arena, runtime/tvm_backend.c), so tasks share nothing:

1. Qt[t, q] = q_{i0+q}[h, t], the block's queries transposed (hd x Q);
2. scores S[j, q] = sum_t Qt[t, q] k_j[h, t] (N x Q, key-major): per key tile of 4 keys and each
   t, one vector load of Qt times 4 broadcast key values into 4 vector accumulators. int8 with a
   dot-product instruction (AVX-512 VNNI `vpdpbusd`, Arm `sdot`: the ISA's lanes equal Q) and
   head_dim % 4 == 0: Qt holds 4 consecutive t of a query per 32-bit lane (int8 [hd/4, Q, 4]) and
   one instruction adds 4 products per lane, the 4 key bytes broadcast as one word (VNNI multiplies
   them unsigned: k + 128, so 128 * sum_t q[t] is subtracted per query);
3. the softmax of every query at once, vectorized over the Q lanes (row max, exp, sum per lane);
4. out[i0+q, h, :] = sum_j S[j, q] v_j[h, :]: a tile of QT queries x TW channels of vector
   accumulators, each value vector loaded once per key and used by the QT queries (QT x TW/lanes
   accumulators: 8 with 16 vector registers, 12 with 32), then the epilogue.

Accumulator tiles stay below 1 KiB (TVM puts larger buffers in workspace memory, not registers),
are initialised and updated one vector at a time (LLVM splits an alloca accessed at two widths into
scalars) and, like every buffer of a task, are allocated before any is used (TVM's StorageRewrite
would otherwise place a tile in a dead buffer's workspace memory).

float32: s = (q . k) * scale [+ log size_j, computed once per call into the scratch after the
row], e = exp(s - m) with vector_math.exp_f32 (no libm call; ~1e-7 relative), the sum per lane in
double, p = e * (float)(1 / sum) as the reference, out = sum_j p_j v_j (float32, summation order
differs from the reference: within 1e-4).
int8 (bit-exact: docs/integer-semantics.md "attention", "Softmax"): scores int32, the table index
min(rshift(min(m - s, INT32_MAX) M_s, 31 - shift_s), T - 1) as a uint32 difference times M_s in
uint64 lanes, e = score_lut[index] (a gather), the sum S per lane in int32, one uint64 division per
query R = ((255 << 40) + S/2) / S, p = min(rshift(e R, 40), 255), acc = sum_j p_j v_j (int32), out
requantized in int64 lanes.

The parallel loop is a TVM parallel loop over the h * ceil(N / Q) tasks when the kernel has at
least PARALLEL_MIN_MACS multiply-accumulates. C signature and scratch are the generic kernel's
(the int8 kernel leaves the scratch unused). The "reference" schedule is the generic one.
"""

from __future__ import annotations

from typing import Sequence

from edgevit.backend.kernels import attention as generic
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.tir import tir_requantize
from edgevit.targets.cpu.kernels.dot_intrin import FAMILIES as DOT_FAMILIES
from edgevit.targets.cpu.kernels.vector_isa import DOT_K, dot_family, lanes32, vector_registers
from edgevit.targets.cpu.kernels.vector_math import exp_f32

KEY_TILE = 4                 # keys per score tile
MAX_CHANNEL_VECTORS = 4      # channel vectors per output tile
ACCUMULATORS = {16: 8, 32: 12}  # vector accumulators of an output tile by register count (< 1 KiB: stack)
PARALLEL_MIN_MACS = 1 << 17  # below this a kernel runs on one thread (a launch costs a few microseconds)
NEG_INF_BITS = 0xFF800000


class Blocking:
    """The blocking of one attention kernel: Q = `lanes` queries per task, output tiles of `qt`
    queries x `tw` channels (`full` chunks of tw channels, then `rest`), `tasks` = heads x query
    blocks, `parallel` whether they run as a parallel loop."""

    def __init__(self, n: int, h: int, hd: int, isa: Sequence[str]) -> None:
        self.lanes = lanes32(isa)
        self.blocks = -(-n // self.lanes)
        self.tasks = h * self.blocks
        vectors = min(MAX_CHANNEL_VECTORS, -(-hd // self.lanes))
        self.tw = min(hd, vectors * self.lanes)
        self.qt = max(1, min(self.lanes, ACCUMULATORS[vector_registers(isa)] // vectors))
        self.full, self.rest = hd // self.tw, hd % self.tw
        self.parallel = 2 * n * n * h * hd >= PARALLEL_MIN_MACS

    def facts(self) -> dict:
        """What the code depends on beyond the request, for the function name."""
        return {"vector": [self.lanes, self.qt, self.tw, KEY_TILE], "parallel": self.parallel}


def _c(value: float):
    from tvm import tirx

    return tirx.const(value, "float32")


def float_func(n: int, h: int, hd: int, scale: float, has_size: bool, isa: Sequence[str]):
    """float32 PrimFunc (qkv, [size, ] out, row scratch) with the generic kernel's parameters (module
    docstring); with `size` the scratch holds log(size_j) after the row."""
    from tvm.script import tirx as T

    w, ow = 3 * h * hd, h * hd
    bk = Blocking(n, h, hd, isa)
    qb, qt = bk.lanes, bk.qt
    jmain = n - n % KEY_TILE
    task_loop = T.parallel if bk.parallel else T.serial

    @T.inline
    def score_tile(QKV, Qt, S, acc, LOGS, hh, j0, kt):  # S[j0:j0+kt, :] for kt keys
        for jb in T.unroll(kt):  # one vector per key: accesses of one width, kept in registers
            for q in T.vectorized(qb):
                acc[jb * qb + q] = T.float32(0.0)
        for t in range(hd):
            for jb in T.unroll(kt):
                for q in T.vectorized(qb):
                    acc[jb * qb + q] = acc[jb * qb + q] + Qt[t * qb + q] * QKV[(j0 + jb) * w + ow + hh * hd + t]
        for jb in T.unroll(kt):
            for q in T.vectorized(qb):
                if has_size:
                    S[(j0 + jb) * qb + q] = acc[jb * qb + q] * _c(scale) + LOGS[n + j0 + jb]
                else:
                    S[(j0 + jb) * qb + q] = acc[jb * qb + q] * _c(scale)

    @T.inline
    def out_tile(QKV, S, acc, O, hh, i0, q0, nq, c0, cw):  # out[i0+q0 : +nq, hh, c0 : c0+cw]
        for qq in T.unroll(nq):
            for t in T.vectorized(cw):
                acc[qq * cw + t] = T.float32(0.0)
        for j in range(n):
            for qq in T.unroll(nq):
                for t in T.vectorized(cw):
                    acc[qq * cw + t] = acc[qq * cw + t] + S[j * qb + q0 + qq] * QKV[j * w + 2 * ow + hh * hd + c0 + t]
        for qq in T.unroll(nq):
            for t in T.vectorized(cw):
                O[(i0 + q0 + qq) * ow + hh * hd + c0 + t] = acc[qq * cw + t]

    @T.inline
    def out_tiles(QKV, S, acc, O, hh, i0, nv, c0, cw):  # out[i0 : i0+nv, hh, c0 : c0+cw]
        for qo in range(nv // qt):
            out_tile(QKV, S, acc, O, hh, i0, qo * qt, qt, c0, cw)
        for q in range(nv // qt * qt, nv):
            out_tile(QKV, S, acc, O, hh, i0, q, 1, c0, cw)

    @T.inline
    def task(QKV, O, LOGS, hh, i0):
        nv = T.bind(T.min(qb, n - i0))
        # every buffer of the task before any is used (module docstring); Qt (Q4) lies after S
        S = T.alloc_buffer(((n + hd) * qb,), "float32")
        SA = T.alloc_buffer((KEY_TILE * qb,), "float32")
        OA = T.alloc_buffer((qt * bk.tw,), "float32")
        Qt = T.decl_buffer((hd * qb,), "float32", data=S.data, elem_offset=n * qb)
        mx = T.alloc_buffer((qb,), "float32")
        tot = T.alloc_buffer((qb,), "float64")
        inv = T.alloc_buffer((qb,), "float32")
        for t in range(hd):
            for q in T.unroll(qb):
                Qt[t * qb + q] = T.if_then_else(q < nv, QKV[T.min(i0 + q, n - 1) * w + hh * hd + t], T.float32(0.0))
        for jo in range(jmain // KEY_TILE):
            score_tile(QKV, Qt, S, SA, LOGS, hh, jo * KEY_TILE, KEY_TILE)
        for j in range(jmain, n):
            score_tile(QKV, Qt, S, SA, LOGS, hh, j, 1)
        for q in T.vectorized(qb):
            mx[q] = T.reinterpret("float32", T.uint32(NEG_INF_BITS))
            tot[q] = T.float64(0.0)
        for j in range(n):
            for q in T.vectorized(qb):
                mx[q] = T.max(mx[q], S[j * qb + q])
        for j in range(n):
            for q in T.vectorized(qb):
                S[j * qb + q] = exp_f32(S[j * qb + q] - mx[q])
                tot[q] = tot[q] + T.Cast("float64", S[j * qb + q])
        for q in T.vectorized(qb):
            inv[q] = T.Cast("float32", T.float64(1.0) / tot[q])
        for j in range(n):
            for q in T.vectorized(qb):
                S[j * qb + q] = S[j * qb + q] * inv[q]
        for c in range(bk.full):
            out_tiles(QKV, S, OA, O, hh, i0, nv, c * bk.tw, bk.tw)
        if bk.rest > 0:
            out_tiles(QKV, S, OA, O, hh, i0, nv, bk.full * bk.tw, bk.rest)

    if has_size:
        @T.prim_func(private=True)
        def with_size(qkv: T.handle("float32"), size: T.handle("float32"), out: T.handle("float32"),
                      row: T.handle("float32")):
            QKV = T.decl_buffer((n * w,), "float32", data=qkv)
            SIZE = T.decl_buffer((n,), "float32", data=size)
            O = T.decl_buffer((n * ow,), "float32", data=out)
            R = T.decl_buffer((2 * n,), "float32", data=row)
            for j in range(n):
                R[n + j] = T.log(SIZE[j])
            for k in task_loop(bk.tasks):
                task(QKV, O, R, k // bk.blocks, k % bk.blocks * qb)

        return with_size

    @T.prim_func(private=True)
    def func(qkv: T.handle("float32"), out: T.handle("float32"), row: T.handle("float32")):
        QKV = T.decl_buffer((n * w,), "float32", data=qkv)
        O = T.decl_buffer((n * ow,), "float32", data=out)
        R = T.decl_buffer((n,), "float32", data=row)
        for k in task_loop(bk.tasks):
            task(QKV, O, R, k // bk.blocks, k % bk.blocks * qb)

    return func


def int8_func(n: int, h: int, hd: int, table_size: int, frac_bits: int, n_log: int, isa: Sequence[str]):
    """int8 PrimFunc (qkv, [size, ] score_lut, [log_size, ] out, row scratch, score_M, score_shift,
    out_M, out_shift, zp) with the generic kernel's parameters (module docstring)."""
    from tvm.script import tirx as T

    w, ow = 3 * h * hd, h * hd
    bk = Blocking(n, h, hd, isa)
    qb, qt = bk.lanes, bk.qt
    jmain = n - n % KEY_TILE
    task_loop = T.parallel if bk.parallel else T.serial
    has_size = n_log > 0
    rcp_dt = "uint32" if frac_bits >= generic.RECIP32_MIN_FRAC_BITS else "uint64"
    # |q.k| <= hd 2^14 and 0 <= log_size <= 2^30, so m - s < 2^31 (no INT32_MAX clamp) below this
    clamp_d = hd * (1 << 15) + (1 << 30 if n_log else 0) >= 1 << 31
    recip_bits = generic.RECIP_BITS
    family = dot_family(isa) if hd % DOT_K == 0 else None
    use_dot = family is not None and DOT_FAMILIES[family][0] == qb
    intrin, offset = (DOT_FAMILIES[family][1], DOT_FAMILIES[family][2]) if use_dot else ("", 0)
    groups = hd // DOT_K

    def key_word(QKV, j, hh, g):
        """Keys k_j[h, 4g : 4g+4] as one int32 broadcast to the qb lanes, as bytes (+128 for VNNI's
        unsigned operand: XOR 0x80 per byte)."""
        word = T.reinterpret("int32", QKV[T.Ramp(j * w + ow + hh * hd + g * DOT_K, 1, DOT_K)])
        if offset:
            word = T.bitwise_xor(word, T.int32(-0x7F7F7F80))  # 0x80808080
        return T.reinterpret(f"int8x{DOT_K * qb}", T.Broadcast(word, qb))

    def dist(m, s):
        """min(m - s, INT32_MAX) as uint32 (m - s wraps exactly: 0 <= m - s < 2^32)."""
        d = T.Cast("uint32", m) - T.Cast("uint32", s)
        return T.min(d, T.uint32(0x7FFFFFFF)) if clamp_d else d

    @T.inline
    def score_tile(QKV, SIZE, LOG, Qt, S, acc, hh, j0, kt):  # S[j0:j0+kt, :] for kt keys
        for jb in T.unroll(kt):  # one vector per key: accesses of one width, kept in registers
            for q in T.vectorized(qb):
                acc[jb * qb + q] = 0
        for t in range(hd):
            for jb in T.unroll(kt):
                for q in T.vectorized(qb):
                    acc[jb * qb + q] = acc[jb * qb + q] + Qt[t * qb + q] * T.Cast(
                        "int32", QKV[(j0 + jb) * w + ow + hh * hd + t])
        for jb in T.unroll(kt):
            for q in T.vectorized(qb):
                if has_size:
                    S[(j0 + jb) * qb + q] = acc[jb * qb + q] + generic.size_bias(T, SIZE, LOG, j0 + jb, n_log)
                else:
                    S[(j0 + jb) * qb + q] = acc[jb * qb + q]

    @T.inline
    def score_tile_dot(QKV, SIZE, LOG, Q4, QS, S, acc, hh, j0, kt):  # score_tile by dot-product instructions
        for jb in T.unroll(kt):
            for q in T.vectorized(qb):
                acc[jb * qb + q] = 0
        for g in range(groups):
            for jb in T.unroll(kt):
                acc[T.Ramp(jb * qb, 1, qb)] = T.call_llvm_pure_intrin(
                    f"int32x{qb}", intrin, acc[T.Ramp(jb * qb, 1, qb)], key_word(QKV, j0 + jb, hh, g),
                    Q4[T.Ramp(g * qb * DOT_K, 1, qb * DOT_K)])
        for jb in T.unroll(kt):
            for q in T.vectorized(qb):
                if has_size:
                    S[(j0 + jb) * qb + q] = (acc[jb * qb + q] - offset * QS[q]
                                             + generic.size_bias(T, SIZE, LOG, j0 + jb, n_log))
                else:
                    S[(j0 + jb) * qb + q] = acc[jb * qb + q] - offset * QS[q]

    @T.inline
    def out_tile(QKV, S, acc, O, hh, i0, q0, nq, c0, cw, out_mult, out_shift, zp):
        for qq in T.unroll(nq):
            for t in T.vectorized(cw):
                acc[qq * cw + t] = 0
        for j in range(n):
            for qq in T.unroll(nq):
                for t in T.vectorized(cw):
                    acc[qq * cw + t] = acc[qq * cw + t] + S[j * qb + q0 + qq] * T.Cast(
                        "int32", QKV[j * w + 2 * ow + hh * hd + c0 + t])
        for qq in T.unroll(nq):
            for t in T.unroll(cw) if cw == 3 else T.vectorized(cw):  # <3 x i8> stores: see the end of the file
                O[(i0 + q0 + qq) * ow + hh * hd + c0 + t] = tir_requantize(acc[qq * cw + t], out_mult, out_shift,
                                                                           zp, "int8")

    @T.inline
    def out_tiles(QKV, S, acc, O, hh, i0, nv, c0, cw, out_mult, out_shift, zp):  # out[i0 : i0+nv, hh, c0 : c0+cw]
        for qo in range(nv // qt):
            out_tile(QKV, S, acc, O, hh, i0, qo * qt, qt, c0, cw, out_mult, out_shift, zp)
        for q in range(nv // qt * qt, nv):
            out_tile(QKV, S, acc, O, hh, i0, q, 1, c0, cw, out_mult, out_shift, zp)

    @T.inline
    def task(QKV, SIZE, L, LOG, O, hh, i0, mult, sn, half, out_mult, out_shift, zp):
        nv = T.bind(T.min(qb, n - i0))
        # every buffer of the task before any is used (module docstring); Qt (Q4) lies after S
        S = T.alloc_buffer(((n + hd) * qb,), "int32")
        SA = T.alloc_buffer((KEY_TILE * qb,), "int32")
        OA = T.alloc_buffer((qt * bk.tw,), "int32")
        Qt = T.decl_buffer((hd * qb,), "int32", data=S.data, elem_offset=n * qb)
        mx = T.alloc_buffer((qb,), "int32")
        tot = T.alloc_buffer((qb,), "int32")
        rcp = T.alloc_buffer((qb,), rcp_dt)
        if use_dot:
            Q4 = T.decl_buffer((hd * qb,), "int8", data=S.data, elem_offset=n * qb * 4)
            QS = T.alloc_buffer((qb,), "int32")
            for q in range(qb):
                QS[q] = 0
                for t in range(hd):
                    Q4[(t // DOT_K * qb + q) * DOT_K + t % DOT_K] = T.if_then_else(
                        q < nv, QKV[T.min(i0 + q, n - 1) * w + hh * hd + t], T.int8(0))
                    QS[q] = QS[q] + T.Cast("int32", Q4[(t // DOT_K * qb + q) * DOT_K + t % DOT_K])
            for jo in range(jmain // KEY_TILE):
                score_tile_dot(QKV, SIZE, LOG, Q4, QS, S, SA, hh, jo * KEY_TILE, KEY_TILE)
            for j in range(jmain, n):
                score_tile_dot(QKV, SIZE, LOG, Q4, QS, S, SA, hh, j, 1)
        else:
            for t in range(hd):
                for q in T.unroll(qb):
                    Qt[t * qb + q] = T.if_then_else(
                        q < nv, T.Cast("int32", QKV[T.min(i0 + q, n - 1) * w + hh * hd + t]), 0)
            for jo in range(jmain // KEY_TILE):
                score_tile(QKV, SIZE, LOG, Qt, S, SA, hh, jo * KEY_TILE, KEY_TILE)
            for j in range(jmain, n):
                score_tile(QKV, SIZE, LOG, Qt, S, SA, hh, j, 1)
        for q in T.vectorized(qb):
            mx[q] = T.int32(-2147483648)
            tot[q] = 0
        for j in range(n):
            for q in T.vectorized(qb):
                mx[q] = T.max(mx[q], S[j * qb + q])
        for j in range(n):
            for q in T.vectorized(qb):
                S[j * qb + q] = L[T.Cast("int32", T.min(T.shift_right(
                    T.Cast("uint64", dist(mx[q], S[j * qb + q])) * mult + half, sn), T.uint64(table_size - 1)))]
                tot[q] = tot[q] + S[j * qb + q]
        for q in range(qb):
            rcp[q] = T.Cast(rcp_dt, T.truncdiv(T.shift_left(T.uint64(255), T.uint64(recip_bits))
                                               + T.Cast("uint64", T.shift_right(tot[q], 1)), T.Cast("uint64", tot[q])))
        for j in range(n):
            for q in T.vectorized(qb):
                S[j * qb + q] = T.Cast("int32", T.min(T.Cast("uint32", T.shift_right(
                    T.Cast("uint64", T.Cast("uint32", S[j * qb + q])) * T.Cast("uint64", rcp[q])
                    + T.uint64(1 << (recip_bits - 1)), T.uint64(recip_bits))), T.uint32(255)))
        for c in range(bk.full):
            out_tiles(QKV, S, OA, O, hh, i0, nv, c * bk.tw, bk.tw, out_mult, out_shift, zp)
        if bk.rest > 0:
            out_tiles(QKV, S, OA, O, hh, i0, nv, bk.full * bk.tw, bk.rest, out_mult, out_shift, zp)

    @T.inline
    def body(QKV, SIZE, L, LOG, O, _row, score_mult, score_shift, out_mult, out_shift, zp):
        mult = T.bind(T.Cast("uint64", T.Cast("uint32", score_mult)))
        sn = T.bind(T.Cast("uint64", 31 - score_shift))
        half = T.bind(T.shift_left(T.uint64(1), sn - T.uint64(1)))
        for k in task_loop(bk.tasks):
            task(QKV, SIZE, L, LOG, O, k // bk.blocks, k % bk.blocks * qb, mult, sn, half, out_mult, out_shift, zp)

    return generic.int8_prim(n, h, hd, table_size, n_log, body)


def generate(req: KernelRequest) -> KernelCode:
    """C for one `attention` kernel on the cpu target (module docstring); the "reference" schedule
    is the generic kernel's."""
    x = req.in_infos[0]
    a = req.kernel.attrs
    bk = Blocking(x.shape[0], int(a["heads"]), int(a["head_dim"]), req.isa)
    hooks = generic.AttentionHooks(
        float_func=lambda n, h, hd, scale, has_size: float_func(n, h, hd, scale, has_size, req.isa),
        int8_func=lambda n, h, hd, size, frac, n_log: int8_func(n, h, hd, size, frac, n_log, req.isa),
        facts=bk.facts())  # the dot-product path follows from the ISA, which the name already covers
    return generic.generate(req, hooks)


KERNEL = KernelDef(op="attention", generate=generate, dtypes=generic.KERNEL.dtypes)


# An int8 output tile of exactly 3 channels is stored by an unrolled loop (out_tile in int8_func): LLVM's
# AArch64 backend gets the `<3 x i8>` vector store wrong (the third byte is lost and others change), so
# head_dim 3, or a 3-channel tail (head_dim 19, 35 with NEON's 4 lanes), gave wrong outputs on cortex-a76
# and rpi4. Found by tests/fuzz/test_codegen_fuzz.py; tests/targets/cpu/kernels/test_cpu_attention_tails.py.
