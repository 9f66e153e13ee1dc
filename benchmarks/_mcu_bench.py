"""Helpers of benchmarks/mcu_speed.py: one-kernel int8 Programs, measured on the QEMU board.

A measurement builds a real artifact (`plan_memory` -> `emit_artifact` with random int8 input
vectors and the reference interpreter's outputs) and runs it with `run_artifact(..., "qemu")`:
SysTick ticks around one `edgevit_run` call under `-icount shift=0` give executed instructions
(40 per tick on mps2-an500), and every output is compared bit-exactly with the reference.

`edgevit_run` also copies the input into the arena and the output out of it (memcpy). That
overhead is measured, not guessed: `copy_program(nbytes)` is an alias-only Program (one
`reshape`, no kernel code), whose `edgevit_run` is exactly "memcpy nbytes in, memcpy nbytes out"
plus the call and timer reads. A kernel with S_in input and S_out output bytes is charged
(copy(S_in) + copy(S_out)) / 2 and its *net* instructions are the raw count minus that.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevit.backend.errors import ToolchainError
from edgevit.lower.intlut import make_score_lut, score_index_params
from edgevit.lower.intmath import quantize_multiplier, quantize_multipliers
from edgevit.lower.ops.intcommon import quant_attr
from edgevit.lower.program import Kernel, Program, ProgramBuilder
from edgevit.lower.reference import run_program

SCHEDULES = ("fast", "reference")
ERROR_CHARS = 600
RESOLUTION_TICKS = 2  # net counts below 2 SysTick ticks are within the error of tick counting and copy charging


def log(message: str) -> None:
    """Progress line on stderr (stdout is reserved for the JSON document)."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- one-kernel Programs

def requant_consts(rng: np.random.Generator, m: int, k: int) -> dict[str, np.ndarray]:
    """bias int32 [m], multiplier int32 [m], shift int32 [m] for a K-long int8 dot product, with
    real scales around 127 / (typical |acc|) spread 4x both ways (as lowering produces them)."""
    typical = 128.0 * 64.0 * math.sqrt(k)
    mult, shift = quantize_multipliers(127.0 / typical * np.exp2(rng.uniform(-2.0, 2.0, m)))
    bias = rng.integers(-int(typical), int(typical) + 1, m).astype(np.int32)
    return {"bias": bias, "multiplier": mult, "shift": shift}


def linear_program(n: int, k: int, m: int, seed: int = 0) -> Program:
    """An int8 `linear` [n, k] -> [n, m] Program: symmetric int8 weights [m, k] in [-127, 127],
    per-channel requantize constants, a random input zero point."""
    rng = np.random.default_rng(seed)
    b = ProgramBuilder(f"linear-{n}x{k}-{m}")
    zp = int(rng.integers(-20, 21))
    b.add_input("x", (n, k), "int8", {"scale": 0.05, "zero_point": zp})
    consts = {"weight": rng.integers(-127, 128, (m, k)).astype(np.int8), **requant_consts(rng, m, k)}
    for role, value in consts.items():
        b.add_const(f"linear.{role}", value)
    (y,) = b.add_kernel("linear", ["x"], attrs={"out_quant": quant_attr(0.05, int(rng.integers(-20, 21)), "int8")},
                        consts={role: f"linear.{role}" for role in consts}, name="linear")
    b.add_output(y)
    return b.build()


def attention_program(n: int, heads: int, head_dim: int, seed: int = 0, qkv_scale: float = 0.03,
                      out_scale: float = 0.01) -> Program:
    """An int8 `attention` qkv [n, 3*heads*head_dim] -> [n, heads*head_dim] Program with the shared
    score LUT and lowering's multipliers (score_scale = s_qkv^2 / sqrt(head_dim))."""
    rng = np.random.default_rng(seed)
    lut = make_score_lut()
    sm, ss = score_index_params(qkv_scale * qkv_scale / math.sqrt(head_dim), lut)
    om, osh = quantize_multiplier(qkv_scale / (255.0 * out_scale))
    b = ProgramBuilder(f"attention-n{n}-h{heads}x{head_dim}")
    b.add_input("x", (n, 3 * heads * head_dim), "int8", {"scale": qkv_scale, "zero_point": 0})
    b.add_const("softmax.score_lut", lut["table"])
    attrs = {"heads": heads, "head_dim": head_dim, "score_multiplier": sm, "score_shift": ss,
             "out_multiplier": om, "out_shift": osh,
             "out_quant": quant_attr(out_scale, int(rng.integers(-20, 21)), "int8")}
    (y,) = b.add_kernel("attention", ["x"], attrs=attrs, consts={"score_lut": "softmax.score_lut"}, name="attention")
    b.add_output(y)
    return b.build()


def copy_program(nbytes: int) -> Program:
    """int8 [nbytes] -> reshape -> [1, nbytes]: an alias-only Program whose edgevit_run is just the
    input and output memcpy (the overhead every measured Program pays)."""
    b = ProgramBuilder(f"copy-{nbytes}")
    b.add_input("x", (nbytes,), "int8", {"scale": 0.05, "zero_point": 0})
    (y,) = b.add_kernel("reshape", ["x"], attrs={"shape": [1, nbytes]}, name="copy")
    b.add_output(y)
    return b.build()


def single_kernel_program(program: Program, kernel: Kernel) -> Program:
    """`kernel` of `program` alone, with its own constants and attrs, reading one program input
    "x" shaped like its first input. A kernel with several inputs (e.g. the residual `add`) gets x
    for every input, which needs them all to have x's shape and dtype (ValueError otherwise)."""
    first = program.tensors[kernel.inputs[0]]
    for t in kernel.inputs[1:]:
        other = program.tensors[t]
        if (other.shape, other.dtype) != (first.shape, first.dtype):
            raise ValueError(f"kernel {kernel.name!r}: input {t!r} {list(other.shape)} {other.dtype} differs from "
                             f"{first.name!r} {list(first.shape)} {first.dtype}; cannot feed one program input")
    b = ProgramBuilder(f"{program.name}.{kernel.name}", meta={"source_kernel": kernel.name})
    cnames = list(dict.fromkeys(kernel.consts.values()))
    x, y = _free_name("x", cnames), _free_name("y", cnames)
    b.add_input(x, first.shape, first.dtype, first.quant)
    for cname in cnames:
        b.add_const(cname, program.consts[cname])
    b.add_kernel(kernel.op, [x] * len(kernel.inputs), attrs=kernel.attrs, consts=kernel.consts, name=kernel.name,
                 outputs=[y])
    b.add_output(y)
    return b.build()


def _free_name(base: str, taken: list[str]) -> str:
    """`base`, or `base` with a numeric suffix, not in `taken` (tensor names must not clash with constants)."""
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}{i}"
    return name


def kernel_signature(program: Program, kernel: Kernel) -> tuple:
    """What makes two kernels the same measurement: op, input/output shapes and dtypes, constant
    roles with shapes/dtypes and the structural attrs (activation, heads, head_dim, patch, ...)."""
    infos = tuple((program.tensors[t].shape, program.tensors[t].dtype) for t in (*kernel.inputs, *kernel.outputs))
    consts = tuple(sorted((r, program.consts[c].shape, str(program.consts[c].dtype)) for r, c in kernel.consts.items()))
    structural = tuple(sorted((a, str(v)) for a, v in kernel.attrs.items()
                              if a in ("activation", "heads", "head_dim", "patch", "mode", "weight_bits", "shape")))
    return kernel.op, infos, consts, structural


def distinct_kernels(program: Program) -> list[tuple[Kernel, int]]:
    """(first kernel of each signature, number of kernels sharing it), in program order."""
    firsts: dict[tuple, Kernel] = {}
    counts: dict[tuple, int] = {}
    for k in program.kernels:
        sig = kernel_signature(program, k)
        firsts.setdefault(sig, k)
        counts[sig] = counts.get(sig, 0) + 1
    return [(k, counts[sig]) for sig, k in firsts.items()]


def shape_text(program: Program) -> str:
    """"50x64 -> 50x192" (program input -> output shape)."""
    def dims(name: str) -> str:
        return "x".join(str(d) for d in program.tensors[name].shape)
    return f"{dims(program.inputs[0])} -> {dims(program.outputs[0])}"


def io_bytes(program: Program) -> tuple[int, int]:
    """(input bytes, output bytes) that edgevit_run copies."""
    return program.tensors[program.inputs[0]].nbytes, program.tensors[program.outputs[0]].nbytes


# ---------------------------------------------------------------- building and running

def _tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:ERROR_CHARS]


@dataclass
class Bench:
    """Measures Programs on `profile`'s QEMU board: artifacts under `workdir`, `count` random
    vectors per run (ticks are averaged over them), inputs drawn with `seed`."""

    profile: object
    workdir: Path
    count: int = 3
    seed: int = 0
    runs: int = 0
    _copies: dict[int, float] = field(default_factory=dict)

    def vectors(self, program: Program, count: int):
        """Vectors of `count` uniformly random int8 inputs and the reference interpreter's outputs."""
        from edgevit.backend.vectors import Vectors

        info = program.tensors[program.inputs[0]]
        x = np.random.default_rng(self.seed).integers(-128, 128, (count, *info.shape)).astype(info.dtype)
        expected = run_program(program, {program.inputs[0]: x})[program.outputs[0]]
        return Vectors(x, np.ascontiguousarray(expected), np.full(count, -1, dtype=np.int64),
                       f"random int8 (seed {self.seed})")

    def run(self, program: Program, schedule: str, count: int | None = None) -> dict:
        """Emit `program` with `schedule`, run it on QEMU: {instructions (mean per edgevit_run),
        ticks, matches, count} or {error} when generating, building or running failed."""
        from edgevit.backend.run import run_artifact
        from edgevit.targets.mcu.emit import emit_artifact
        from edgevit.targets.mcu.memory import plan_memory

        count = count or self.count
        out = Path(self.workdir) / f"{_tag(program.name)}-{schedule}"
        shutil.rmtree(out, ignore_errors=True)
        self.runs += 1
        try:
            emit_artifact(program, self.profile, plan_memory(program), out,
                          vectors=self.vectors(program, count), schedule=schedule)
            r = run_artifact(out, "qemu", count=count, progress=False)
        except ToolchainError:
            raise
        except Exception as e:  # a kernel that fails to generate/build/run is reported, not fatal
            return {"error": _error_text(e)}
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if r["instructions_per_tick"] is None:
            return {"error": f"no instruction count on this board: {r['latency_note']}"}
        ticks = [int(t) for t in r["ticks"]]
        per_tick = float(r["instructions_per_tick"])
        return {"instructions": float(np.mean(ticks)) * per_tick, "ticks": ticks, "instructions_per_tick": per_tick,
                "matches": int(r["matches"]), "count": int(r["count"])}

    def copy_instructions(self, nbytes: int) -> float:
        """Instructions of edgevit_run for the alias-only copy_program(nbytes) (cached per size)."""
        if nbytes not in self._copies:
            r = self.run(copy_program(nbytes), "reference", count=max(self.count, 3))
            if "error" in r or r["matches"] != r["count"]:
                raise RuntimeError(f"copy program of {nbytes} bytes failed: {r}")
            self._copies[nbytes] = r["instructions"]
        return self._copies[nbytes]

    def overhead(self, program: Program) -> float:
        """Copy-in + copy-out instructions charged to `program`: (copy(S_in) + copy(S_out)) / 2."""
        s_in, s_out = io_bytes(program)
        return (self.copy_instructions(s_in) + self.copy_instructions(s_out)) / 2.0

    def copy_table(self) -> list[dict]:
        """[{bytes, instructions}] of every copy program measured (the overhead table)."""
        return [{"bytes": b, "instructions": round(v, 1)} for b, v in sorted(self._copies.items())]


def schedule_columns(run: dict, schedule: str, overhead: float, macs: int, elements: int) -> dict:
    """Row columns "<schedule>_*" of one run: raw and net instructions, MACs and instructions
    per output element (net), bit-exact matches, or the error."""
    s = schedule
    if "error" in run:
        return {f"{s}_error": run["error"]}
    net = run["instructions"] - overhead
    resolved = net >= RESOLUTION_TICKS * run["instructions_per_tick"]
    cols = {f"{s}_instructions": round(run["instructions"], 1), f"{s}_net_instructions": round(net, 1),
            f"{s}_macs_per_instruction": round(macs / net, 4) if macs and resolved else None,
            f"{s}_instructions_per_output_element": round(net / elements, 3) if resolved else None,
            f"{s}_matches": run["matches"], f"{s}_count": run["count"],
            f"{s}_bit_exact": run["matches"] == run["count"]}
    if not resolved:
        cols[f"{s}_below_resolution"] = True
    return cols


def kernel_row(bench: Bench, group: str, label: str, program: Program, occurrences: int = 1) -> dict:
    """Measure `program` (one kernel) with both schedules; one table row (see schedule_columns),
    plus the speedup fast vs reference (net instructions)."""
    k = program.kernels[0]
    macs = program.macs()
    out_info = program.tensors[program.outputs[0]]
    row = {"group": group, "kernel": label, "op": k.op, "shape": shape_text(program), "rows": out_info.shape[0],
           "occurrences": occurrences, "macs": macs, "output_elements": out_info.size}
    overhead = bench.overhead(program)
    row["copy_overhead_instructions"] = round(overhead, 1)
    runs = {}
    for s in SCHEDULES:
        runs[s] = bench.run(program, s)
        row.update(schedule_columns(runs[s], s, overhead, macs, out_info.size))
    fast, ref = row.get("fast_net_instructions"), row.get("reference_net_instructions")
    row["speedup_fast_vs_reference"] = round(ref / fast, 3) if fast and ref and fast > 0 else None
    log(f"  {group:<12} {label:<28} {row['shape']:<22} " + "  ".join(_summary(row, s) for s in SCHEDULES))
    return row


def _summary(row: dict, s: str) -> str:
    if f"{s}_error" in row:
        return f"{s}: ERROR {row[f'{s}_error'][:120]}"
    if row.get(f"{s}_below_resolution"):
        return f"{s}: below resolution ({row[f'{s}_net_instructions']:,.0f} instr) {row[f'{s}_matches']}/{row[f'{s}_count']} exact"
    mpi = row[f"{s}_macs_per_instruction"]
    return (f"{s}: {row[f'{s}_net_instructions']:>12,.0f} instr" + (f" {mpi:.3f} MAC/instr" if mpi else "")
            + f" {row[f'{s}_matches']}/{row[f'{s}_count']} exact")


# ---------------------------------------------------------------- analysis

def linear_fit(xs, ys) -> dict:
    """Least-squares y = slope * x + intercept over >= 2 points: {slope, intercept, max_abs_residual}."""
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("linear_fit needs at least two distinct x values")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    return {"slope": float(slope), "intercept": float(intercept), "max_abs_residual": float(np.abs(residual).max())}
