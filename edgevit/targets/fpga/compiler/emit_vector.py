"""Vector ops: layernorm, add, add_pos, cls_concat, pool, reshape, gelu (LUT) and token_merge (MERGE).

Every tensor is a dense row-major [rows, cols] region in ACT (rows = all but the last axis). Each op loads
its numbers as one PARAM block (docs/fpga-isa.md, "Vector instructions"), taken verbatim from the kernel's
attrs and constants as the reference (`edgevit/lower/ops/*.py` run_int8) uses them. Constant activations
(add_pos's positional embedding, cls_concat's class token) are LOADed from the weight image into ACT:
into kernel scratch, then ADD / COPY. reshape is an
alias (the layout gives both tensors one buffer) and emits nothing.
"""

from __future__ import annotations

import math

import numpy as np

from edgevit.lower.intmath import qrange
from edgevit.lower.ops.intcommon import add_params
from edgevit.lower.ops.pool import prefix_rows
from edgevit.lower.program import Kernel, Program
from edgevit.targets.fpga.compiler.common import ITEMSIZE, dtype_code, param_block, table_words, words, words64
from edgevit.targets.fpga.compiler.context import EmitContext
from edgevit.targets.fpga.config import OverlayConfig


def _rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    return (math.prod(shape[:-1]) if len(shape) > 1 else 1), shape[-1]


def _region(ctx: EmitContext, tensor: str) -> tuple[int, int, int, int, str]:
    """(addr, stride bytes, rows, cols, dtype) of a tensor's ACT buffer."""
    info = ctx.info(tensor)
    rows, cols = _rows_cols(info.shape)
    return ctx.act(tensor), cols * ITEMSIZE[info.dtype], rows, cols, info.dtype


def _span(addr: int, stride: int, rows: int, row_bytes: int) -> tuple[str, int, int]:
    return ("act", addr, addr + (rows - 1) * stride + row_bytes)


def _block(ctx: EmitContext, parts: list[list[int]]) -> tuple[int, tuple[str, int, int]]:
    block = param_block(parts)
    base = ctx.param(block.size, lambda _: block)
    return base, ("param", base, base + block.size)


def emit_layernorm(ctx: EmitContext, kernel: Kernel) -> None:
    """layernorm int8/int16 -> int8: LAYERNORM with header frac_bits, eps (2), out_shift, zp, qmin, qmax and
    per channel gain, bias (2 words)."""
    a, consts = kernel.attrs, ctx.program.kernel_consts(kernel)
    q = a["out_quant"]
    lo, hi = qrange(q["dtype"])
    head = words(a["frac_bits"]) + words64(a["eps_fixed"]) + words(a["out_shift"], q["zero_point"], lo, hi)
    chan = [w for g, b in zip(consts["gain"].tolist(), consts["bias"].tolist()) for w in [g] + words64(b)]
    base, prange = _block(ctx, [head, chan])
    src, ss, rows, cols, sdt = _region(ctx, kernel.inputs[0])
    dst, ds, _, _, ddt = _region(ctx, kernel.outputs[0])
    ctx.sb.add("LAYERNORM", reads=[prange, _span(src, ss, rows, ss)], writes=[_span(dst, ds, rows, ds)], src=src,
               src_stride=ss, src_dtype=dtype_code(sdt), dst=dst, dst_stride=ds, dtype=dtype_code(ddt), rows=rows,
               cols=cols, param=base, chan=base + len(head))


def _add(ctx: EmitContext, kernel: Kernel, a_addr: int, a_dtype: str, b_addr: int, b_dtype: str) -> None:
    p, _, _ = add_params(kernel)
    head = words(p["ka"], p["kb"]) + words64(p["bias"]) + words(p["shift"], p["out_zp"], p["qmin"], p["qmax"])
    base, prange = _block(ctx, [head])
    dst, ds, rows, cols, ddt = _region(ctx, kernel.outputs[0])
    sa, sb_ = cols * ITEMSIZE[a_dtype], cols * ITEMSIZE[b_dtype]
    ctx.sb.add("ADD", reads=[prange, _span(a_addr, sa, rows, sa), _span(b_addr, sb_, rows, sb_)],
               writes=[_span(dst, ds, rows, ds)], a=a_addr, b=b_addr, dst=dst, a_stride=sa, b_stride=sb_,
               dst_stride=ds, a_dtype=dtype_code(a_dtype), b_dtype=dtype_code(b_dtype), dtype=dtype_code(ddt),
               rows=rows, cols=cols, param=base)


def emit_add(ctx: EmitContext, kernel: Kernel) -> None:
    """add int8/int16 (+) int8/int16: ADD with header ka, kb, bias (2), shift, zp, qmin, qmax."""
    x, z = kernel.inputs
    _add(ctx, kernel, ctx.act(x), ctx.info(x).dtype, ctx.act(z), ctx.info(z).dtype)


def add_pos_scratch(program: Program, kernel: Kernel, cfg: OverlayConfig) -> dict[str, int]:
    """add_pos's positional embedding, loaded into ACT."""
    return {"pos": int(program.consts[kernel.consts["pos"]].nbytes)}


def emit_add_pos(ctx: EmitContext, kernel: Kernel) -> None:
    """add_pos: LOAD pos [N, D] from the weight image into ACT scratch, then ADD."""
    pos = ctx.program.kernel_consts(kernel)["pos"]
    addr = ctx.scratch(kernel, "pos")
    row = pos.shape[-1] * pos.itemsize
    ctx.const_rows(pos, addr, row, row)
    x = kernel.inputs[0]
    _add(ctx, kernel, ctx.act(x), ctx.info(x).dtype, addr, str(pos.dtype))


def cls_scratch(program: Program, kernel: Kernel, cfg: OverlayConfig) -> dict[str, int]:
    """cls_concat's class token, loaded into ACT."""
    return {"cls": int(program.consts[kernel.consts["cls"]].nbytes)}


def emit_cls_concat(ctx: EmitContext, kernel: Kernel) -> None:
    """cls_concat: LOAD the class token into ACT scratch, COPY it to output row 0 and the P input rows to
    rows 1..P (compute writes the whole output, so the store that may read it follows compute tokens)."""
    cls = ctx.program.kernel_consts(kernel)["cls"]
    src, ss, rows, _, _ = _region(ctx, kernel.inputs[0])
    dst, tmp = ctx.act(kernel.outputs[0]), ctx.scratch(kernel, "cls")
    ctx.const_rows(cls, tmp, ss, ss)
    _copy(ctx, tmp, ss, dst, ss, 1, ss)
    _copy(ctx, src, ss, dst + ss, ss, rows, ss)


def _copy(ctx: EmitContext, src: int, src_stride: int, dst: int, dst_stride: int, rows: int, row_bytes: int) -> None:
    ctx.sb.add("COPY", reads=[_span(src, src_stride, rows, row_bytes)],
               writes=[_span(dst, dst_stride, rows, row_bytes)],
               src=src, src_stride=src_stride, dst=dst, dst_stride=dst_stride, rows=rows, row_bytes=row_bytes)


def emit_pool(ctx: EmitContext, kernel: Kernel) -> None:
    """pool: cls / prefix = COPY of the first rows; mean = MEANPOOL (header in_zero_point, multiplier,
    shift, zp, qmin, qmax)."""
    src, ss, rows, cols, sdt = _region(ctx, kernel.inputs[0])
    dst, ds, _, _, ddt = _region(ctx, kernel.outputs[0])
    a = kernel.attrs
    if a["mode"] in ("cls", "prefix"):
        _copy(ctx, src, ss, dst, ds, prefix_rows(kernel), ss)
        return
    q = a["out_quant"]
    lo, hi = qrange(q["dtype"])
    base, prange = _block(ctx, [words(a["in_zero_point"], a["multiplier"], a["shift"], q["zero_point"], lo, hi)])
    ctx.sb.add("MEANPOOL", reads=[prange, _span(src, ss, rows, ss)], writes=[_span(dst, ds, 1, ds)], src=src,
               src_stride=ss, src_dtype=dtype_code(sdt), rows=rows, cols=cols, dst=dst, dtype=dtype_code(ddt),
               param=base)


def emit_reshape(ctx: EmitContext, kernel: Kernel) -> None:
    """reshape: nothing to do (the output shares the input's ACT buffer)."""
    if ctx.act(kernel.inputs[0]) != ctx.act(kernel.outputs[0]):
        raise AssertionError(f"{kernel.name}: reshape output is not aliased to its input")


def emit_gelu(ctx: EmitContext, kernel: Kernel) -> None:
    """gelu int8 (not fused into a linear): LUT with the 256-entry table."""
    base, prange = _block(ctx, [table_words(ctx.program.kernel_consts(kernel)["lut"])])
    src, ss, rows, cols, _ = _region(ctx, kernel.inputs[0])
    dst, ds, _, _, _ = _region(ctx, kernel.outputs[0])
    ctx.sb.add("LUT", reads=[prange, _span(src, ss, rows, ss)], writes=[_span(dst, ds, rows, ds)], src=src,
               src_stride=ss, dst=dst, dst_stride=ds, rows=rows, cols=cols, param=base)


def emit_token_merge(ctx: EmitContext, kernel: Kernel) -> None:
    """token_merge (integer): one MERGE (tokens, qkv keys, optional sizes -> merged tokens and sizes)."""
    a = kernel.attrs
    tok, ts, n, d, dt = _region(ctx, kernel.inputs[0])
    qkv, qs, _, _, _ = _region(ctx, kernel.inputs[1])
    has_sizes = len(kernel.inputs) > 2
    sizes = ctx.act(kernel.inputs[2]) if has_sizes else 0
    dst, ds, m, _, _ = _region(ctx, kernel.outputs[0])
    dsz = ctx.act(kernel.outputs[1])
    reads = [_span(tok, ts, n, ts), _span(qkv, qs, n, qs)] + ([("act", sizes, sizes + 4 * n)] if has_sizes else [])
    ctx.sb.add("MERGE", reads=reads, writes=[_span(dst, ds, m, ds), ("act", dsz, dsz + 4 * m)],
               has_sizes=int(has_sizes), dtype=dtype_code(dt), tokens=tok, tokens_stride=ts, qkv=qkv, qkv_stride=qs,
               sizes=sizes, dst=dst, dst_stride=ds, dst_sizes=dsz, rows=n, cols=d, r=int(a["r"]),
               heads=int(a["heads"]), head_dim=int(a["head_dim"]), protect=int(a["protect"]))


def vector_param_words(kernel: Kernel, consts: dict[str, np.ndarray]) -> int:
    """Words of the kernel's PARAM block (0: none)."""
    if kernel.op == "layernorm":
        return 7 + 3 * consts["gain"].size
    mean_pool = 6 if kernel.attrs.get("mode") == "mean" else 0
    return {"add": 8, "add_pos": 8, "gelu": 64, "pool": mean_pool}.get(kernel.op, 0)
