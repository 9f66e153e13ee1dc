"""GEMM-shaped ops: linear (fused GELU, 4-bit weights, low rank = two linears) and patch_embed (im2col).

`run_gemm` walks the tensorized schedule of `tir_gemm.gemm_steps(n, k, m, cfg)` (output row block n0..n0+rows,
weight tile (mb, kb), reset on the first kb, last on the final one) and emits, per step, the weight tile
(a LOAD from the weight image, or a TILE from ACT for attention) and one GEMM over the block's rows. Each
(row block, tile column) accumulates in its own ACC rows and is requantized (REQUANT, its <= bm columns)
after its last step; attention's scores instead keep whole rows (row r, column c at acc + r*ceil(m/bm) +
c//bm, the order SOFTMAX reads) until every tile column is done.

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
DoneFn = Callable[[int, int, "int | None", int], None]  # (n0, rows, mb or None, acc) -> consume the ACC rows


def run_gemm(ctx: EmitContext, what: str, n: int, k: int, m: int, tile: TileFn, inp: AddrFn, inp_stride: int,
             done: DoneFn, unsigned: bool = False, whole_rows: bool = False) -> None:
    """Emit the tiles and GEMMs of acc[n, m] = x[n, k] @ W[m, k]^T along `gemm_steps(n, k, m, cfg)`.

    Default: each (row block, tile column mb) accumulates in its own `rows` ACC rows (acc_stride 1) and
    done(n0, rows, mb, acc) runs after its last step. `whole_rows`: a row block's tile columns share
    rows * ceil(m/bm) ACC rows in REQUANT / SOFTMAX order and done(n0, rows, None, acc) runs once every
    column is finished (softmax needs whole score rows)."""
    cfg, sb = ctx.cfg, ctx.sb
    mbs = ceil_div(m, cfg.bm)
    open_acc: dict[tuple[int, int], tuple[int, int, set[int]]] = {}
    for st in gemm_steps(n, k, m, cfg):
        key = (st.n0, -1 if whole_rows else st.mb)
        if key not in open_acc:
            size = st.rows * (mbs if whole_rows else 1)
            open_acc[key] = (sb.acc.alloc(size, what), st.rows, set(range(mbs)) if whole_rows else {st.mb})
        acc, rows, open_cols = open_acc[key]
        slot = tile(st.mb, st.kb)
        addr = inp(st.n0, st.kb)
        sb.add("GEMM", reads=[("wgt", slot, slot + 1), ("act", addr, addr + (rows - 1) * inp_stride + cfg.bk)],
               reset=int(bool(st.reset)), unsigned=int(unsigned), wgt=slot,
               acc=acc + st.mb if whole_rows else acc, acc_stride=mbs if whole_rows else 1,
               inp=addr, inp_stride=inp_stride, count=rows)
        if st.last:
            open_cols.discard(st.mb)
            if not open_cols:
                done(st.n0, rows, None if whole_rows else st.mb, acc)
                sb.acc.free(acc)
                del open_acc[key]
    if open_acc:
        raise AssertionError(f"{what}: the GEMM schedule left accumulators {sorted(open_acc)} unfinished")


def weight_tiles(ctx: EmitContext, w: np.ndarray) -> TileFn:
    """Tile loader for an int8 weight [M, K]: tile (mb, kb) = w[mb*bm.., kb*bk..] zero padded to bm x bk,
    added to the weight image when first used and LOADed into the next WGT slot each time."""
    cfg = ctx.cfg
    m, k = w.shape
    padded = np.zeros((ceil_div(m, cfg.bm) * cfg.bm, ceil_div(k, cfg.bk) * cfg.bk), dtype=np.int8)
    padded[:m, :k] = w
    offsets: dict[tuple[int, int], int] = {}

    def tile(mb: int, kb: int) -> int:
        if (mb, kb) not in offsets:
            block = padded[mb * cfg.bm:(mb + 1) * cfg.bm, kb * cfg.bk:(kb + 1) * cfg.bk]
            offsets[(mb, kb)] = ctx.weights.add(np.ascontiguousarray(block))
        return ctx.sb.load_tile(offsets[(mb, kb)])
    return tile


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
    """The `done` of a per-tile GEMM: the block's rows of tile column mb become columns mb*bm.. (at most bm)
    of `out_dtype` at y + n0*y_stride (REQUANT with the channels of those columns)."""
    base, chan, nwords = param
    item, bm = ITEMSIZE[out_dtype], ctx.cfg.bm

    def done(n0: int, rows: int, mb: int | None, acc: int) -> None:
        c0 = mb * bm
        width = min(bm, cols - c0)
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
