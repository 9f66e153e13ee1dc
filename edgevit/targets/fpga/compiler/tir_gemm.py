"""GEMM tiling onto the overlay as a TVM TIR schedule tensorized to the overlay's GEMM intrinsic (as VTA did).

The computation is C[n, mp] = sum_k X[n, k] * W[m, k] (int8 x int8 -> int32) with k padded to kp (a
multiple of `bk`) and m to mp (a multiple of `bm`); n is not padded.

Schedule (`gemm_schedule`):
- rows: n is cut into row blocks of `rows <= acc_rows // 2` (so the compiler can double-buffer ACC:
  requantize one block while the array fills the other). The blocks are balanced: with b = ceil(n / rmax)
  blocks, rows = ceil(n / b), and a shorter last block when rows does not divide n. The PrimFunc
  expresses that last (tail) block as a second compute block "C_tail" over rows [full, n), each
  compute block inside an opaque block that views its rows of X and C through `match_buffer` (so each
  is the only writer of its C and its indices start at 0). s_tir's `loop_partition` would do the same
  cut but relaxes the blocks' read/write regions to the whole partition, which `tensorize` then refuses.
- each compute block: split n by rows, m by bm, k by bk; order (n_block, m_block, k_block, n_i, m_i, k_i);
  `decompose_reduction` at k_block makes the zeroing of the [rows, bm] accumulator tile explicit (an init
  block, blockized into one "reset" block per tile); the inner (rows x bm x bk) nest is tensorized with
  the registered TensorIntrin `edgevit_fpga_gemm_{rows}x{bm}x{bk}`: its description is the loop nest
  above, its implementation a single `call_extern("edgevit_fpga_gemm", acc, acc_stride, inp, inp_stride,
  wgt, count)` = one GEMM instruction of `count` steps with one stationary weight tile (docs/fpga-isa.md).

Walk (`gemm_steps`, `walk_events`): the scheduled PrimFunc is translated once into the source of a
Python function (its loops, block bindings, match_buffer view offsets, and the region minima of the
blocks it stops at, as expressions of the loop variables), which is then run. It stops at two kinds of block: a reset block (writes a C tile, reads nothing), which
records "the next GEMM into this tile starts from zero", and a tensorized GEMM block (its body is the
intrinsic call), whose `match_buffer` source regions give the C tile [n0:n0+rows, m0:m0+bm], the X
slice [n0.., k0:k0+bk] and the W tile [m0:m0+bm, k0:k0+bk]. Any other computing block (an untensorized
multiply) is an error. A GEMM step is `reset` when a reset of its tile is pending and `last` when no
later GEMM writes its tile (the compiler requantizes the tile after it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from edgevit.targets.fpga.config import OverlayConfig

GEMM_CALL = "edgevit_fpga_gemm"


class WalkError(RuntimeError):
    """The scheduled IR is not what the walk expects (an untensorized block, inconsistent regions)."""


@dataclass(frozen=True)
class GemmStep:
    """One tensorized GEMM: rows [n0, n0+rows) of the output times weight tile (m block mb, k block kb);
    `reset`: first k block of this (row block, m block); `last`: its final k block."""

    n0: int
    rows: int
    mb: int
    kb: int
    reset: bool
    last: bool


def padded(k: int, m: int, cfg: OverlayConfig) -> tuple[int, int]:
    """(kp, mp): k rounded up to a multiple of bk, m to a multiple of bm."""
    return -(-k // cfg.bk) * cfg.bk, -(-m // cfg.bm) * cfg.bm


def row_block(n: int, cfg: OverlayConfig) -> int:
    """Rows of one row block: at most acc_rows // 2 (double-buffered ACC), balanced over ceil(n / that)
    blocks."""
    rmax = max(1, cfg.acc_rows // 2)
    return math.ceil(n / math.ceil(n / rmax))


def gemm_intrin(count: int, cfg: OverlayConfig) -> str:
    """Register (once) and name the TensorIntrin of one GEMM instruction: `count` rows of
    X[count, bk] . W[bm, bk]^T accumulated into C[count, bm]."""
    from tvm.s_tir import TensorIntrin

    name = f"{GEMM_CALL}_{count}x{cfg.bm}x{cfg.bk}"
    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, _intrin_func(count, cfg.bm, cfg.bk, True),
                              _intrin_func(count, cfg.bm, cfg.bk, False))
    return name


def _intrin_func(count: int, bm: int, bk: int, describe: bool):
    """The intrinsic's description (the rows x bm x bk multiply-accumulate nest) or implementation (the
    GEMM instruction as one extern call; the buffers are strided views of X, W and C)."""
    from tvm import tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            x, w, c = (T.arg(s, T.handle()) for s in "xwc")
            strides = ([None] * 3 if describe else
                       [[tirx.Var(s, "int32"), 1] for s in ("sx", "sw", "sc")])
            X = T.match_buffer(x, (count, bk), "int8", offset_factor=1, strides=strides[0])
            W = T.match_buffer(w, (bm, bk), "int8", offset_factor=1, strides=strides[1])
            C = T.match_buffer(c, (count, bm), "int32", offset_factor=1, strides=strides[2])
            with T.sblock("root"):
                T.reads(C[0:count, 0:bm], X[0:count, 0:bk], W[0:bm, 0:bk])
                T.writes(C[0:count, 0:bm])
                if describe and count == 1:  # blockize leaves a unit row loop that binds no block iterator
                    with T.grid(1, bm, bk) as (_, j, k):
                        with T.sblock("update"):
                            vj, vk = T.axis.remap("SR", [j, k])
                            T.buffer_store(C, C[0, vj] + _mul(X[0, vk], W[vj, vk]), [0, vj])
                elif describe:
                    with T.grid(count, bm, bk) as (i, j, k):
                        with T.sblock("update"):
                            vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                            T.buffer_store(C, C[vi, vj] + _mul(X[vi, vk], W[vj, vk]), [vi, vj])
                else:
                    T.evaluate(tirx.call_extern("int32", GEMM_CALL, C.data, C.elem_offset, C.strides[0],
                                                X.data, X.elem_offset, X.strides[0],
                                                W.data, W.elem_offset, count))
    return ib.get()


def _mul(a, b):
    """int32(a) * int32(b) of two int8 loads."""
    from tvm import tirx

    return tirx.Cast("int32", a) * tirx.Cast("int32", b)


def gemm_func(n: int, kp: int, mp: int, rows: int):
    """The PrimFunc gemm(X: int8[n, kp], W: int8[mp, kp], C: int32[n, mp]), C = X . W^T: compute block
    "C" over the rows [0, full) that fill whole row blocks, "C_tail" over the rest, each inside its own
    opaque block ("C_part", "C_tail_part") so each is the only writer of C in its scope (see module doc)."""
    from tvm import tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    full = n // rows * rows
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name("gemm")
            x, w, c = (T.arg(s, T.handle()) for s in "xwc")
            X = T.match_buffer(x, (n, kp), "int8")
            W = T.match_buffer(w, (mp, kp), "int8")
            C = T.match_buffer(c, (n, mp), "int32")
            IRBuilder.name_many(["X", "W", "C"], [X, W, C])
            for name, r0, r1 in (("C", 0, full), ("C_tail", full, n)):
                if r1 == r0:
                    continue
                with T.sblock(f"{name}_part"):
                    Xp = T.match_buffer(X[r0:r1, 0:kp], (r1 - r0, kp), "int8", offset_factor=1)
                    Cp = T.match_buffer(C[r0:r1, 0:mp], (r1 - r0, mp), "int32", offset_factor=1)
                    IRBuilder.name_many([f"X_{name}", f"{name}_rows"], [Xp, Cp])
                    with T.grid(r1 - r0, mp, kp) as (i, j, k):
                        with T.sblock(name):
                            vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                            with T.init():
                                T.buffer_store(Cp, tirx.const(0, "int32"), [vi, vj])
                            T.buffer_store(Cp, Cp[vi, vj] + _mul(Xp[vi, vk], W[vj, vk]), [vi, vj])
    return ib.get()


def gemm_schedule(n: int, k: int, m: int, cfg: OverlayConfig):
    """The tvm.s_tir.Schedule of C[n, m] = X[n, k] . W[m, k]^T tiled onto the overlay and tensorized to
    the GEMM intrinsic (see module doc); a fresh schedule each call."""
    import tvm
    from tvm.s_tir import Schedule

    if min(n, k, m) < 1:
        raise ValueError(f"GEMM shape must be positive, got n={n} k={k} m={m}")
    kp, mp = padded(k, m, cfg)
    rows = row_block(n, cfg)
    full = n // rows * rows
    sch = Schedule(tvm.IRModule({"main": gemm_func(n, kp, mp, rows)}))
    for name, count in (("C", rows), ("C_tail", n - full)):
        if count == 0 or (name == "C" and full == 0):
            continue
        block = sch.get_sblock(name)
        i, j, kk = sch.get_loops(block)
        n_block, n_i = sch.split(i, [None, count])
        m_block, m_i = sch.split(j, [None, cfg.bm])
        k_block, k_i = sch.split(kk, [None, cfg.bk])
        sch.reorder(n_block, m_block, k_block, n_i, m_i, k_i)
        init = sch.decompose_reduction(block, k_block)
        sch.blockize(sch.get_loops(init)[-2])
        sch.tensorize(n_i, gemm_intrin(count, cfg))
    return sch


def gemm_steps(n: int, k: int, m: int, cfg: OverlayConfig) -> list[GemmStep]:
    """The GEMM instructions of C[n, m] = X[n, k] . W[m, k]^T in execution order, walked from the
    tensorized schedule (cached per (n, k, m, cfg))."""
    return list(_steps(n, k, m, cfg))


@lru_cache(maxsize=512)
def _steps(n: int, k: int, m: int, cfg: OverlayConfig) -> tuple[GemmStep, ...]:
    """gemm_steps, cached."""
    func = gemm_schedule(n, k, m, cfg).mod["main"]
    X, W, C = range(3)
    raw, pending = [], {}
    for ev in walk_events(func, list(func.params)):
        if ev.kind == "reset":
            (n0, m0), (rows, cols) = ev.regions[C]
            if cols != cfg.bm or (n0, m0) in pending:
                raise WalkError(f"reset of C[{n0}:, {m0}:] x {rows}x{cols} does not match the array")
            pending[n0, m0] = rows
            continue
        (cn, cm), (rows, cols) = ev.regions[C]
        (xn, xk), (xrows, xcols) = ev.regions[X]
        (wm, wk), (wrows, wcols) = ev.regions[W]
        if (cn, cm, xk, rows, cols) != (xn, wm, wk, xrows, wrows) or (xcols, wcols) != (cfg.bk, cfg.bk) \
                or cols != cfg.bm or cm % cfg.bm or xk % cfg.bk:
            raise WalkError(f"GEMM call regions disagree: C {ev.regions[C]} X {ev.regions[X]} W {ev.regions[W]}")
        reset_rows = pending.pop((cn, cm), None)
        if reset_rows is not None and reset_rows != rows:
            raise WalkError(f"reset of {reset_rows} rows at C[{cn}, {cm}] before a GEMM of {rows} rows")
        reset = reset_rows is not None
        raw.append((cn, rows, cm // cfg.bm, xk // cfg.bk, reset))
    if pending:
        raise WalkError(f"resets never followed by a GEMM: {sorted(pending)}")
    seen, out = set(), []
    for n0, rows, mb, kb, reset in reversed(raw):
        out.append(GemmStep(n0, rows, mb, kb, reset, (n0, mb) not in seen))
        seen.add((n0, mb))
    return tuple(reversed(out))


class WalkEvent(NamedTuple):
    """A block the walk stopped at: kind "reset" (zeroes a C tile) or "gemm" (a tensorized GEMM call);
    regions[i] = (minima, extents) of walked buffer i that the block touches."""

    kind: str
    regions: dict


def walk_events(func, buffers) -> list[WalkEvent]:
    """Execute the loop nest of the scheduled PrimFunc `func` and list, in execution order, its reset
    blocks and tensorized GEMM calls with their regions of `buffers` (the nest is translated once into
    a Python function, so a walk costs about a microsecond per event)."""
    walker = _Walker(buffers)
    lines = ["def _walk(out, Event):"] + walker.stmt(func.body, 1) + ["    return out"]
    scope: dict = {}
    exec(compile("\n".join(lines), "<tir_gemm walk>", "exec"), scope)  # noqa: S102 - our own generated code
    return scope["_walk"]([], WalkEvent)


class _Walker:
    """Translates TIR statements and index expressions into Python source over local variables v<i>
    (loop and block variables) and b<i>_<d> (minima of match_buffer views of a walked buffer)."""

    _BINARY = {"Add": "+", "Sub": "-", "Mul": "*", "FloorDiv": "//", "FloorMod": "%"}

    def __init__(self, buffers):
        self.buffers = list(buffers)
        self.vars: list = []
        self.aliases: list = []  # (view buffer, index of the walked buffer it views, slot of its minima)

    def slot(self, var) -> int:
        """The number of a TIR variable (its Python name is v<number>)."""
        for i, v in enumerate(self.vars):
            if v.same_as(var):
                return i
        self.vars.append(var)
        return len(self.vars) - 1

    def expr(self, e) -> str:
        """Python source of an integer index expression."""
        from tvm import tirx

        if isinstance(e, tirx.IntImm):
            return str(int(e.value))
        if isinstance(e, tirx.Var):
            return f"v{self.slot(e)}"
        if isinstance(e, tirx.Cast):
            return self.expr(e.value)
        name = type(e).__name__
        if name in ("Min", "Max"):
            return f"{name.lower()}({self.expr(e.a)}, {self.expr(e.b)})"
        if name not in self._BINARY:
            raise NotImplementedError(f"walk: index expression {name} ({e})")
        return f"({self.expr(e.a)} {self._BINARY[name]} {self.expr(e.b)})"

    def region(self, tensor_region):
        """(walked buffer index, [min sources], [extent sources]) of a buffer region; None when the
        region is of another buffer."""
        mins = [self.expr(r.min) for r in tensor_region.region]
        exts = [self.expr(r.extent) for r in tensor_region.region]
        for i, b in enumerate(self.buffers):
            if b.same_as(tensor_region.source):
                return i, mins, exts
        for view, i, base in self.aliases:
            if view.same_as(tensor_region.source):
                return i, [f"(b{base}_{d} + {m})" for d, m in enumerate(mins)], exts
        return None

    def stmt(self, s, depth: int) -> list[str]:
        """Python source lines (indented `depth` levels) running statement `s`."""
        from tvm import s_tir, tirx

        pad = "    " * depth
        if isinstance(s, tirx.SeqStmt):
            return [line for c in s.seq for line in self.stmt(c, depth)]
        if isinstance(s, tirx.For):
            v, lo, ext = self.slot(s.loop_var), self.expr(s.min), self.expr(s.extent)
            return [f"{pad}for v{v} in range({lo}, {lo} + {ext}):"] + self.stmt(s.body, depth + 1)
        if isinstance(s, s_tir.SBlockRealize):
            return self.realize(s, depth)
        raise NotImplementedError(f"walk: statement {type(s).__name__} outside a block")

    def realize(self, r, depth: int) -> list[str]:
        """Source of one block realization: bind its iter vars, then descend (a container block, its
        match_buffer views of walked buffers noted) or emit its event (a reset / GEMM block)."""
        from tvm import tirx

        pad = "    " * depth
        pred = r.predicate
        if not (isinstance(pred, tirx.IntImm) and int(pred.value) == 1):
            raise NotImplementedError(f"walk: predicated block {r.block.name_hint}")
        block = r.block
        lines = [f"{pad}v{self.slot(iv.var)} = {self.expr(val)}" for iv, val in zip(block.iter_vars, r.iter_values)]
        if _is_call(block.body):
            kind, regions = "gemm", [self.region(mb.source) for mb in block.match_buffers]
        elif len(block.iter_vars) and not len(block.reads) and len(block.writes) == 1:
            kind, regions = "reset", [self.region(block.writes[0])]
        elif not len(block.iter_vars):
            for mb in block.match_buffers:
                src = self.region(mb.source)
                if src is not None:
                    base = self.slot(mb.buffer)
                    self.aliases.append((mb.buffer, src[0], base))
                    lines += [f"{pad}b{base}_{d} = {m}" for d, m in enumerate(src[1])]
            return lines + self.stmt(block.body, depth) + [f"{pad}pass"]
        else:
            raise WalkError(f"walk: block {block.name_hint} is neither a reset nor a tensorized GEMM")
        items = ", ".join(f"{i}: (({', '.join(mins)},), ({', '.join(exts)},))"
                          for i, mins, exts in (x for x in regions if x is not None))
        return lines + [f"{pad}out.append(Event({kind!r}, {{{items}}}))"]


def _is_call(body) -> bool:
    """Whether a block body is the GEMM intrinsic's implementation (one extern call)."""
    from tvm import ir, tirx

    if not isinstance(body, tirx.Evaluate) or not isinstance(body.value, ir.Call):
        return False
    args = body.value.args
    return len(args) > 0 and isinstance(args[0], ir.StringImm) and args[0].value == GEMM_CALL
