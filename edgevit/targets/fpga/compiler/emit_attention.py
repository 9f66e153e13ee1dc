"""attention (integer): per head, QK^T -> SOFTMAX -> P.V -> REQUANT into the head's output columns.

For head h of qkv [N, 3*H*hd] (row stride S = 3*H*hd bytes; q at column h*hd, k at H*hd + h*hd, v at
2*H*hd + h*hd):
- scores = q @ k^T: a GEMM with the keys as output lanes m (TILE transpose 0: bm key rows, bk head dims)
  and the head dims as the reduction; each finished query-row block of the schedule goes through SOFTMAX
  (ACC scores -> uint8 probabilities P [N, N] in ACT scratch; with token sizes, the size bias of the
  layer's log_size table);
- out = P @ v: a GEMM with the keys as the reduction (TILE transpose 1: bk key rows become tile columns,
  bm head dims the tile rows) over the uint8 probabilities (GEMM unsigned), then REQUANT (scalar
  out_multiplier / out_shift, no bias) into columns h*hd.. of the output.
One PARAM block per kernel: SOFTMAX header (multiplier, shift, table_base, table_size, log_size_base,
log_size_len), REQUANT header (zp, qmin, qmax) and channels (0, multiplier, shift) x hd and the log_size
table; the exp table (one per Program) is a shared block, loaded once and pinned at the top of PARAM
(`EmitContext.shared_param`); the header holds absolute PARAM word indices.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.program import Kernel, Program
from edgevit.targets.fpga.compiler.common import ceil_div, param_block, words
from edgevit.targets.fpga.compiler.context import EmitContext
from edgevit.targets.fpga.compiler.emit_gemm import requant_done, run_gemm
from edgevit.targets.fpga.config import OverlayConfig

SOFTMAX_HEADER, REQUANT_HEADER = 6, 3


def attention_scratch(program: Program, kernel: Kernel, cfg: OverlayConfig) -> dict[str, int]:
    """The probabilities of one head, uint8 [N, N]."""
    n = program.tensors[kernel.inputs[0]].shape[0]
    return {"probs": n * n}


def param_words(kernel: Kernel, consts: dict[str, np.ndarray]) -> int:
    """Words of the kernel's PARAM blocks (the per-kernel block plus the shared score table)."""
    return ring_words(kernel, consts) + consts["score_lut"].size


def ring_words(kernel: Kernel, consts: dict[str, np.ndarray]) -> int:
    """Words of the per-kernel PARAM block: headers, channels and the log_size table."""
    log = consts["log_size"].size if "log_size" in consts else 0
    return SOFTMAX_HEADER + REQUANT_HEADER + 3 * int(kernel.attrs["head_dim"]) + log


def _params(ctx: EmitContext, kernel: Kernel) -> tuple[int, int, int]:
    """Load the kernel's PARAM block (the score table is shared: `ctx.shared_param`); returns (base, words,
    table base)."""
    a = kernel.attrs
    consts = ctx.program.kernel_consts(kernel)
    hd = int(a["head_dim"])
    table = consts["score_lut"].astype(np.int64)
    t_base = ctx.shared_param(table)
    log = consts["log_size"].astype(np.int64) if "log_size" in consts else np.zeros(0, np.int64)
    nwords = ring_words(kernel, consts)

    def build(base: int) -> np.ndarray:
        l_base = base + SOFTMAX_HEADER + REQUANT_HEADER + 3 * hd
        head = words(a["score_multiplier"], a["score_shift"], t_base, table.size, l_base, log.size)
        rq = words(a["out_quant"]["zero_point"], -128, 127)
        chan = [0, a["out_multiplier"], a["out_shift"]] * hd
        return param_block([head, rq, chan, log.tolist()])
    return ctx.param(nwords, build), nwords, t_base


def emit_attention(ctx: EmitContext, kernel: Kernel) -> None:
    """attention int8: qkv [N, 3*H*hd] (, sizes int32 [N]) -> [N, H*hd] (module docstring)."""
    cfg, sb = ctx.cfg, ctx.sb
    heads, hd = int(kernel.attrs["heads"]), int(kernel.attrs["head_dim"])
    qkv, y = kernel.inputs[0], kernel.outputs[0]
    n = ctx.info(qkv).shape[0]
    a, s = ctx.act(qkv), 3 * heads * hd
    ya, ys = ctx.act(y), heads * hd
    probs = ctx.scratch(kernel, "probs")
    has_sizes = len(kernel.inputs) > 1
    sizes = ctx.act(kernel.inputs[1]) if has_sizes else 0
    base, nwords, t_base = _params(ctx, kernel)
    t_words = ctx.program.kernel_consts(kernel)["score_lut"].size
    rq = (base + SOFTMAX_HEADER, base + SOFTMAX_HEADER + REQUANT_HEADER, nwords - SOFTMAX_HEADER)
    chunk = max(1, cfg.acc_rows // 2 // ceil_div(n, cfg.bm))
    for h in range(heads):
        q0, k0, v0 = a + h * hd, a + heads * hd + h * hd, a + 2 * heads * hd + h * hd

        def act_tile(src: int, rows: int, cols: int, transpose: int) -> int:
            """A TILE of `rows` ACT rows (stride s) x `cols` bytes into the next WGT slot."""
            slot = sb.next_tile_slot()
            sb.add("TILE", reads=[("act", src, src + (rows - 1) * s + cols)], writes=[("wgt", slot, slot + 1)],
                   transpose=transpose, wgt=slot, src=src, stride=s, rows=rows, cols=cols)
            return slot

        def key_tile(mb: int, kb: int, k0=k0) -> int:  # keys as tile rows (outputs), head dims as the reduction
            return act_tile(k0 + mb * cfg.bm * s + kb * cfg.bk, min(cfg.bm, n - mb * cfg.bm),
                            min(cfg.bk, hd - kb * cfg.bk), 0)

        def softmax(n0: int, rows: int, mb0: int, tiles: int, acc: int, q_start: int = 0) -> None:
            dst = probs + (q_start + n0) * n
            reads = [("param", base, base + nwords), ("param", t_base, t_base + t_words)]
            reads += [("act", sizes, sizes + 4 * n)] if has_sizes else []
            sb.add("SOFTMAX", reads=reads, writes=[("act", dst, dst + rows * n)], has_sizes=int(has_sizes), acc=acc,
                   rows=rows, cols=n, dst=dst, dst_stride=n, sizes=sizes, param=base)

        def value_tile(mb: int, kb: int, v0=v0) -> int:  # keys as the reduction, head dims as outputs (transposed)
            return act_tile(v0 + kb * cfg.bk * s + mb * cfg.bm, min(cfg.bk, n - kb * cfg.bk),
                            min(cfg.bm, hd - mb * cfg.bm), 1)

        for q_start in range(0, n, chunk):  # query-row blocks whose score rows fit half of ACC
            rows_q = min(chunk, n - q_start)
            run_gemm(ctx, f"{kernel.name} (head {h} scores)", rows_q, hd, n, key_tile,
                     lambda n0, kb, q=q0 + q_start * s: q + n0 * s + kb * cfg.bk, s,
                     lambda n0, rows, mb0, tiles, acc, q=q_start: softmax(n0, rows, mb0, tiles, acc, q),
                     group=ceil_div(n, cfg.bm))
        run_gemm(ctx, f"{kernel.name} (head {h} P.V)", n, n, hd, value_tile,
                 lambda n0, kb: probs + n0 * n + kb * cfg.bk, n,
                 requant_done(ctx, ya + h * hd, ys, hd, "int8", rq), unsigned=True)
