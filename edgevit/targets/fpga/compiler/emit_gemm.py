"""GEMM-shaped ops: linear (fused GELU, 4-bit weights, low rank = two linears) and patch_embed (im2col).

`run_gemm` walks the tensorized schedule of `tir_gemm.gemm_steps(n, k, m, cfg)` (output row block n0..n0+rows,
weight tile (mb, kb), reset on the first kb, last on the final one) and emits, per step, the weight tile
(from `WeightTiles`: the tiles stored in the weight image in schedule order and LOADed many consecutive
tiles at a time, one batch ahead; or a TILE from ACT for attention) and one GEMM over the block's rows.
Tile columns are grouped so that one REQUANT (or SOFTMAX) reads a whole group: group [mb0, mb0+g) of a
row block accumulates at acc + r*g + (mb - mb0) (the ACC order REQUANT / SOFTMAX read) and is consumed
after its last step; attention's scores take all columns as one group (softmax needs whole rows).

Linear: y = requantize(x @ w^T + bias) per output channel (REQUANT; with GELU fused, requantize to the
pre-GELU zero point and look up the table, REQUANT gelu=1). patch_embed: the same GEMM over the im2col
matrix, gathered by 2-D LOADs straight from the image in DDR: one LOAD per (channel, kernel row, patch
row) moves the p bytes of every patch of that patch row into its (c, kh) slot.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgevit.lower.intmath import qrange
from edgevit.lower.ops.linear import int_weight
from edgevit.lower.program import Kernel, Program
from edgevit.targets.fpga.compiler.common import ITEMSIZE, ceil_div, dtype_code, param_block, table_words, words
from edgevit.targets.fpga.compiler.context import EmitContext
from edgevit.targets.fpga.compiler.tir_gemm import gemm_steps
from edgevit.targets.fpga.config import OverlayConfig

TileFn = Callable[[int, int], int]               # (mb, kb) -> WGT slot holding that tile
AddrFn = Callable[[int, int], int]               # (n0, kb) -> ACT address of row n0's input bytes kb*bk..
DoneFn = Callable[[int, int, int, int, int], None]  # (n0, rows, mb0, tiles, acc) -> consume the ACC rows
MAX_BATCH = 16                                   # weight tiles per LOAD (the first LOADs of a GEMM are smaller)


def acc_group(rows: int, mbs: int, cfg: OverlayConfig) -> int:
    """Tile columns that share one ACC block of a row block (so one REQUANT covers them): as many as fit
    in half of ACC (the other half is for the attention scores / the next block), at least 1."""
    return max(1, min(mbs, (cfg.acc_rows // 2) // max(1, rows)))


def run_gemm(ctx: EmitContext, what: str, n: int, k: int, m: int, tile: TileFn, inp: AddrFn, inp_stride: int,
             done: DoneFn, unsigned: bool = False, group: int | None = None) -> None:
    """Emit the tiles and GEMMs of acc[n, m] = x[n, k] @ W[m, k]^T along `gemm_steps(n, k, m, cfg)`.

    Tile columns are cut in groups of `group` (default `acc_group`; attention's scores pass all of them,
    softmax needs whole rows): group [mb0, mb0+g) of a row block accumulates in rows * g ACC rows, row r,
    tile column mb at acc + r*g + (mb - mb0) (the order REQUANT / SOFTMAX read), and
    done(n0, rows, mb0, g, acc) runs once its g columns are finished. A `tile` with a `plan(steps)` method
    (WeightTiles) is told the whole schedule first (to batch its LOADs)."""
    cfg, sb = ctx.cfg, ctx.sb
    mbs = ceil_div(m, cfg.bm)
    steps = gemm_steps(n, k, m, cfg)
    if hasattr(tile, "plan"):
        tile.plan(steps)
    open_acc: dict[tuple[int, int], tuple[int, int, int, set[int]]] = {}
    for st in steps:
        g = group or acc_group(st.rows, mbs, cfg)
        mb0 = st.mb // g * g
        width = min(g, mbs - mb0)
        key = (st.n0, mb0)
        if key not in open_acc:
            open_acc[key] = (sb.acc.alloc(st.rows * width, what), st.rows, width, set(range(mb0, mb0 + width)))
        acc, rows, width, open_cols = open_acc[key]
        slot = tile(st.mb, st.kb)
        addr = inp(st.n0, st.kb)
        sb.add("GEMM", reads=[("wgt", slot, slot + 1), ("act", addr, addr + (rows - 1) * inp_stride + cfg.bk)],
               reset=int(bool(st.reset)), unsigned=int(unsigned), wgt=slot, acc=acc + st.mb - mb0,
               acc_stride=width, inp=addr, inp_stride=inp_stride, count=rows)
        if st.last:
            open_cols.discard(st.mb)
            if not open_cols:
                done(st.n0, rows, mb0, width, acc)
                sb.acc.free(acc)
                del open_acc[key]
    if open_acc:
        raise AssertionError(f"{what}: the GEMM schedule left accumulators {sorted(open_acc)} unfinished")


class WeightTiles:
    """The tiles of an int8 weight [M, K] (tile (mb, kb) = w[mb*bm.., kb*bk..] zero padded to bm x bk) for
    one GEMM: `plan(steps)` puts them in the weight image in the order the schedule uses them (one block)
    and cuts the uses into multi-tile LOADs (consecutive tiles into consecutive WGT slots, growing from
    MAX_BATCH / 4 to MAX_BATCH tiles); `(mb, kb) -> slot` is called once per step, in order, and emits
    the LOAD of the current batch if not done yet plus the next one (prefetch). When every distinct tile
    fits in half of WGT, each is loaded once and stays resident for every row block."""

    def __init__(self, ctx: EmitContext, w: np.ndarray) -> None:
        cfg = self.cfg = ctx.cfg
        self.ctx = ctx
        m, k = w.shape
        self.padded = np.zeros((ceil_div(m, cfg.bm) * cfg.bm, ceil_div(k, cfg.bk) * cfg.bk), dtype=np.int8)
        self.padded[:m, :k] = w
        self.slots: list[int] = []
        self.batch_of: list[int] = []                  # use -> index of the batch that loads it (-1: resident)
        self.batches: list[tuple[int, int, int]] = []  # (slot0, dram0, tiles)
        self.emitted = 0
        self.use = 0

    def _block(self, mb: int, kb: int) -> np.ndarray:
        bm, bk = self.cfg.bm, self.cfg.bk
        return self.padded[mb * bm:(mb + 1) * bm, kb * bk:(kb + 1) * bk]

    def plan(self, steps) -> None:
        """Lay the tiles out in the weight image in use order and plan the LOAD batches (class docstring)."""
        cfg, sb, tb = self.cfg, self.ctx.sb, self.cfg.tile_bytes
        uses = [(st.mb, st.kb) for st in steps]
        order = list(dict.fromkeys(uses))
        base = self.ctx.weights.add(np.concatenate([np.ascontiguousarray(self._block(*t)).reshape(-1)
                                                    for t in order]))
        dram = {t: base + i * tb for i, t in enumerate(order)}
        resident = len(order) <= cfg.wgt_tiles // 2
        limit = max(1, min(MAX_BATCH, cfg.wgt_tiles // 4))
        home: dict[tuple[int, int], int] = {}
        for t in uses:
            if resident and t in home:
                self.slots.append(home[t])
                self.batch_of.append(-1)
                continue
            slot = home[t] = sb.next_tile_slot()
            prev = self.batches[-1] if self.batches else None
            cap = max(1, limit >> max(0, 3 - len(self.batches)))   # ramp: limit/4, limit/2, limit, ...
            if (prev and self.batch_of and self.batch_of[-1] == len(self.batches) - 1 and prev[2] < cap
                    and slot == prev[0] + prev[2] and dram[t] == prev[1] + prev[2] * tb):
                self.batches[-1] = (prev[0], prev[1], prev[2] + 1)
            else:
                self.batches.append((slot, dram[t], 1))
            self.slots.append(slot)
            self.batch_of.append(len(self.batches) - 1)

    def _emit_through(self, b: int) -> None:
        while self.emitted <= min(b, len(self.batches) - 1):
            self.ctx.sb.load_tiles(*self.batches[self.emitted])
            self.emitted += 1

    def __call__(self, mb: int, kb: int) -> int:
        i = self.use
        self.use += 1
        b = self.batch_of[i]
        if b >= 0:
            self._emit_through(b + 1)
        return self.slots[i]


def weight_tiles(ctx: EmitContext, w: np.ndarray) -> WeightTiles:
    """The tile provider of run_gemm for an int8 weight [M, K] (WeightTiles)."""
    return WeightTiles(ctx, w)


def requant_params(ctx: EmitContext, bias: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, zp: int,
                   out_dtype: str, table: np.ndarray | None = None) -> tuple[int, int, int]:
    """Load a REQUANT block (header zp, qmin, qmax [+ 64-word GELU table], then bias, multiplier, shift per
    channel). Returns (param, chan, words)."""
    lo, hi = qrange(out_dtype)
    chan = np.stack([np.asarray(bias, np.int64), np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)],
                    axis=1).reshape(-1).tolist()
    head = words(zp, lo, hi) + (table_words(table) if table is not None else [])
    block = param_block([head, chan])
    base = ctx.param(block.size, lambda _: block)
    return base, base + len(head), block.size


def requant_done(ctx: EmitContext, y: int, y_stride: int, cols: int, out_dtype: str, param: tuple[int, int, int],
                 gelu: bool = False) -> DoneFn:
    """The `done` of run_gemm: the block's rows of tile columns mb0..mb0+tiles become columns mb0*bm.. of
    `out_dtype` at y + n0*y_stride (one REQUANT with the channels of those columns)."""
    base, chan, nwords = param
    item, bm = ITEMSIZE[out_dtype], ctx.cfg.bm

    def done(n0: int, rows: int, mb0: int, tiles: int, acc: int) -> None:
        c0 = mb0 * bm
        width = min(tiles * bm, cols - c0)
        dst = y + n0 * y_stride + c0 * item
        ctx.sb.add("REQUANT", reads=[("param", base, base + nwords)],
                   writes=[("act", dst, dst + (rows - 1) * y_stride + width * item)], gelu=int(gelu),
                   dtype=dtype_code(out_dtype), acc=acc, dst=dst, dst_stride=y_stride, rows=rows, cols=width,
                   param=base, chan=chan + 3 * c0)
    return done


def emit_linear(ctx: EmitContext, kernel: Kernel) -> None:
    """linear int8: x [N, K] -> y [N, M] (GELU fused as REQUANT gelu=1; 4-bit weights unpacked here)."""
    x, y = kernel.inputs[0], kernel.outputs[0]
    n, k = ctx.info(x).shape
    consts = ctx.program.kernel_consts(kernel)
    w = int_weight(kernel, consts, k)
    m = w.shape[0]
    fused = kernel.attrs.get("activation", "none") == "gelu"
    zp = kernel.attrs["act_in_quant" if fused else "out_quant"]["zero_point"]
    param = requant_params(ctx, consts["bias"], consts["multiplier"], consts["shift"], zp, "int8",
                           consts["act_lut"] if fused else None)
    xa = ctx.act(x)
    run_gemm(ctx, kernel.name, n, k, m, weight_tiles(ctx, w), lambda n0, kb: xa + n0 * k + kb * ctx.cfg.bk, k,
             requant_done(ctx, ctx.act(y), m, m, "int8", param, gelu=fused))


def patch_scratch(program: Program, kernel: Kernel, cfg: OverlayConfig) -> dict[str, int]:
    """patch_embed's im2col matrix [P, C*p*p] int8 in ACT."""
    c, h, w = program.tensors[kernel.inputs[0]].shape
    p = int(kernel.attrs["patch"])
    return {"cols": (h // p) * (w // p) * c * p * p}


def emit_patch_embed(ctx: EmitContext, kernel: Kernel) -> None:
    """patch_embed int8: image [C, H, W] in DDR -> im2col [P, C*p*p] in ACT (2-D LOADs) -> GEMM -> REQUANT."""
    c, h, w = ctx.info(kernel.inputs[0]).shape
    p = int(kernel.attrs["patch"])
    gy_n, gx_n, k = h // p, w // p, c * p * p
    cols = ctx.scratch(kernel, "cols")
    for ch in range(c):
        for kh in range(p):
            for gy in range(gy_n):
                ctx.sb.load_act(dram=ch * h * w + (gy * p + kh) * w, sram=cols + gy * gx_n * k + (ch * p + kh) * p,
                                rows=gx_n, row_bytes=p, dram_stride=p, sram_stride=k, region="input")
    consts = ctx.program.kernel_consts(kernel)
    q = kernel.attrs["out_quant"]
    param = requant_params(ctx, consts["bias"], consts["multiplier"], consts["shift"], q["zero_point"], q["dtype"])
    y = kernel.outputs[0]
    d = consts["weight"].shape[0]
    run_gemm(ctx, kernel.name, gy_n * gx_n, k, d, weight_tiles(ctx, consts["weight"]),
             lambda n0, kb: cols + n0 * k + kb * ctx.cfg.bk, k,
             requant_done(ctx, ctx.act(y), ctx.row_bytes(y), d, q["dtype"], param))
