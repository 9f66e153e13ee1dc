"""The FPGA compiler's entry points: `compile_program(program, cfg)` and `unsupported(program, cfg)`.

An int8 Program becomes a CompiledProgram: the instruction stream (docs/fpga-isa.md), the weight image
and the memory map (the overlay's parameters and the DDR regions `instructions`, `weights`, `input`,
`output`, each 64-byte aligned, offsets relative to DDR_BASE). Steps: check the program
(`unsupported`), place every activation in ACT (`layout.plan_act`), then emit each kernel in program order
(one emitter per op family: emit_gemm, emit_attention, emit_vector), the program input is read from DDR
by patch_embed's im2col LOADs (or LOADed whole into ACT when another op reads it), the output is STOREd
and FINISH ends the stream. `ddr.py` builds the DDR image and reads the output back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from edgevit.lower.program import Kernel, Program
from edgevit.targets.fpga.compiler.common import DDR_ALIGN, ITEMSIZE, FpgaCompileError, align, ceil_div
from edgevit.targets.fpga.compiler.context import EmitContext
from edgevit.targets.fpga.compiler.cycles import estimate_cycles, summary
from edgevit.targets.fpga.compiler.emit_attention import attention_scratch, emit_attention
from edgevit.targets.fpga.compiler.emit_attention import param_words as attention_param_words
from edgevit.targets.fpga.compiler.emit_gemm import emit_linear, emit_patch_embed, patch_scratch
from edgevit.targets.fpga.compiler.emit_vector import (add_pos_scratch, cls_scratch, emit_add, emit_add_pos,
                                                       emit_cls_concat, emit_gelu, emit_layernorm, emit_pool,
                                                       emit_reshape, emit_token_merge, vector_param_words)
from edgevit.targets.fpga.compiler.layout import plan_act
from edgevit.targets.fpga.compiler.stream import StreamBuilder
from edgevit.targets.fpga.compiler.weights import WeightImage
from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import INSN_BYTES, Insn, encode_stream

Emit = Callable[[EmitContext, Kernel], None]
EMITTERS: dict[str, Emit] = {"linear": emit_linear, "patch_embed": emit_patch_embed, "attention": emit_attention,
                             "layernorm": emit_layernorm, "add": emit_add, "add_pos": emit_add_pos,
                             "cls_concat": emit_cls_concat, "pool": emit_pool, "reshape": emit_reshape,
                             "gelu": emit_gelu, "token_merge": emit_token_merge}
SCRATCH = {"patch_embed": patch_scratch, "attention": attention_scratch, "add_pos": add_pos_scratch,
           "cls_concat": cls_scratch}
INT_DTYPES = ("int8", "int16", "int32")
U16, U8 = (1 << 16) - 1, (1 << 8) - 1


@dataclass
class CompiledProgram:
    """The compiler's result: instructions, their 32-byte encoding, the weight image and the memory map."""

    insns: list[Insn]
    stream: bytes
    weights: bytes
    memory_map: dict
    stats: dict = field(default_factory=dict)   # counts, sizes and "cycles_estimate" (cycles.py: an estimate)


def _input_in_act(program: Program) -> bool:
    """Whether the program input is read by a kernel other than patch_embed (then it is LOADed into ACT)."""
    name = program.inputs[0]
    return any(name in k.inputs and k.op != "patch_embed" for k in program.kernels) or name in program.outputs


def _scratch(program: Program, cfg: OverlayConfig) -> dict[tuple[int, str], int]:
    return {(i, key): size for i, k in enumerate(program.kernels) if k.op in SCRATCH
            for key, size in SCRATCH[k.op](program, k, cfg).items()}


def _act_tensors(program: Program) -> set[str]:
    names = set(program.tensors)
    return names if _input_in_act(program) else names - {program.inputs[0]}


def _param_words(program: Program, k: Kernel) -> int:
    """Words of the largest PARAM block kernel `k` loads (attention: with its score table)."""
    consts = program.kernel_consts(k)
    if k.op == "linear":
        return 3 + 64 + 3 * consts["weight"].shape[0]
    if k.op == "patch_embed":
        return 3 + 3 * consts["weight"].shape[0]
    if k.op == "attention":
        return attention_param_words(k, consts)
    return vector_param_words(k, consts)


def _pin_budget(program: Program, cfg: OverlayConfig) -> int:
    """PARAM words shared blocks may pin: a quarter of PARAM, less if the largest block would not fit."""
    largest = max([_param_words(program, k) for k in program.kernels], default=0)
    return max(0, min(cfg.param_words // 4, cfg.param_words - largest))


def _kernel_reasons(program: Program, k: Kernel, cfg: OverlayConfig) -> list[str]:
    """Field-width and scratchpad limits one kernel breaks (empty: fine)."""
    out, where = [], f"kernel {k.name!r} ({k.op})"
    infos = [program.tensors[t] for t in k.inputs + k.outputs]
    for info in infos:
        rows, cols = math.prod(info.shape[:-1]), info.shape[-1]
        if rows > U16 or cols * ITEMSIZE[info.dtype] > U16:
            out.append(f"{where}: tensor {info.name!r} {list(info.shape)} has more than {U16} rows or row bytes "
                       "(the vector instructions' 16-bit fields)")
    consts = program.kernel_consts(k)
    words, acc_per_row = _param_words(program, k), 0
    if k.op == "linear":
        m = consts["weight"].shape[0]
        acc_per_row = ceil_div(m, cfg.bm)
        if program.tensors[k.inputs[0]].dtype != "int8":
            out.append(f"{where}: input {k.inputs[0]!r} must be int8 (GEMM reads int8)")
    elif k.op == "patch_embed":
        d = consts["weight"].shape[0]
        acc_per_row = ceil_div(d, cfg.bm)
        if k.inputs[0] != program.inputs[0] or program.tensors[k.inputs[0]].dtype != "int8":
            out.append(f"{where}: patch_embed must read the int8 program input (it gathers patches from DDR)")
    elif k.op == "attention":
        n = program.tensors[k.inputs[0]].shape[0]
        acc_per_row = ceil_div(n, cfg.bm)
    elif k.op == "token_merge":
        strides = [program.tensors[t].shape[-1] * ITEMSIZE[program.tensors[t].dtype] for t in k.inputs[:2]]
        small = [int(k.attrs[a]) for a in ("r", "heads", "head_dim", "protect")]
        if max(strides) > U16 or max(small) > U8:
            out.append(f"{where}: row strides {strides} must be <= {U16} and r, heads, head_dim, protect {small} "
                       f"<= {U8} (MERGE's fields)")
    if words > cfg.param_words:
        out.append(f"{where}: needs a PARAM block of {words} words; the overlay has {cfg.param_words} "
                   "(use fewer channels / a shorter score table, or a larger part)")
    if acc_per_row > cfg.acc_rows:
        out.append(f"{where}: one output row needs {acc_per_row} ACC rows; the overlay has {cfg.acc_rows}")
    return out


def unsupported(program: Program, cfg: OverlayConfig) -> list[str]:
    """Reasons the overlay cannot run `program` (empty: it can): float programs, unknown ops or dtypes,
    shapes past the ISA's field widths or the scratchpads. Each reason names the kernel/tensor and what to do."""
    reasons = []
    if len(program.inputs) != 1 or len(program.outputs) != 1:
        return [f"program {program.name!r}: the overlay runs programs with one input and one output "
                f"(got inputs {program.inputs}, outputs {program.outputs})"]
    floats = [t for t, info in program.tensors.items() if info.dtype not in INT_DTYPES]
    if floats:
        return [f"program {program.name!r} is not an integer program (tensor {floats[0]!r} is "
                f"{program.tensors[floats[0]].dtype}): the FPGA overlay runs int8 programs; add the quant pass "
                "(--passes 'quant(w=8,a=8)')"]
    if program.inputs[0] in program.outputs:
        reasons.append(f"program {program.name!r}: the input is also the output; nothing to compute")
    for k in program.kernels:
        if k.op not in EMITTERS:
            reasons.append(f"kernel {k.name!r}: op {k.op!r} has no FPGA emitter (supported: {sorted(EMITTERS)})")
        else:
            reasons += _kernel_reasons(program, k, cfg)
    if not reasons:
        try:
            plan_act(program, cfg, _act_tensors(program), _scratch(program, cfg))
        except FpgaCompileError as e:
            reasons.append(str(e))
    return reasons


def compile_program(program: Program, cfg: OverlayConfig) -> CompiledProgram:
    """The instruction stream, weight image and memory map of an int8 `program` for overlay `cfg`;
    FpgaCompileError listing every reason of `unsupported` when it cannot run."""
    t0 = time.perf_counter()
    reasons = unsupported(program, cfg)
    if reasons:
        raise FpgaCompileError("cannot compile for the FPGA overlay:\n  " + "\n  ".join(reasons))
    layout = plan_act(program, cfg, _act_tensors(program), _scratch(program, cfg))
    ctx = EmitContext(program, cfg, StreamBuilder(cfg), WeightImage(), layout, _pin_budget(program, cfg))
    in_name, out_name = program.inputs[0], program.outputs[0]
    in_info, out_info = program.tensors[in_name], program.tensors[out_name]
    if _input_in_act(program):
        ctx.sb.move_bytes("LOAD", 0, ctx.act(in_name), in_info.nbytes, "input")
    for k in program.kernels:
        ctx.sb.tag = f"{k.op}:{k.name}"
        EMITTERS[k.op](ctx, k)
    ctx.sb.tag = "store"
    ctx.sb.move_bytes("STORE", 0, ctx.act(out_name), out_info.nbytes, "output")
    n_insns = len(ctx.sb.entries) + 1
    sizes = {"instructions": n_insns * INSN_BYTES, "weights": ctx.weights.size, "input": in_info.nbytes,
             "output": out_info.nbytes}
    regions, offset = {}, 0
    for name, size in sizes.items():
        regions[name] = {"offset": offset, "bytes": size}
        offset = align(offset + size, DDR_ALIGN)
    insns = ctx.sb.finish({name: r["offset"] for name, r in regions.items()})
    stream = encode_stream(insns)
    memory_map = {"overlay": cfg.to_dict(), "alignment": DDR_ALIGN, "regions": regions, "ddr_bytes": offset,
                  "input": {"name": in_name, "shape": list(in_info.shape), "dtype": in_info.dtype},
                  "output": {"name": out_name, "shape": list(out_info.shape), "dtype": out_info.dtype}}
    ops: dict[str, int] = {}
    for i in insns:
        ops[i.op] = ops.get(i.op, 0) + 1
    est = estimate_cycles(insns, cfg, [e.tag for e in ctx.sb.entries])
    stats = {"instructions": len(insns), "op_counts": ops, "weight_bytes": ctx.weights.size,
             "act_peak_bytes": layout.peak, "cycles_estimate": {**summary(est, cfg, program.macs()), **est},
             "compile_seconds": time.perf_counter() - t0}
    return CompiledProgram(insns, stream, ctx.weights.tobytes(), memory_map, stats)
