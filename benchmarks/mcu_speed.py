"""MCU speed: emulated instructions per kernel and per model, fast vs reference schedule.

Everything runs on the profile's QEMU board (default stm32f746-disco: Cortex-M7, mps2-an500,
`-icount shift=0`, 40 instructions per SysTick tick) from real artifacts (TVM-generated kernels,
arm-none-eabi-gcc with the profile's flags), and every run checks the outputs bit-exactly against
the reference interpreter (`matches == count`, recorded per row).

Tables (JSON on stdout, progress on stderr):
- kernels: one-kernel int8 Programs, both schedules; net instructions (edgevit_run minus its
  input/output memcpy, measured with alias-only copy Programs, see _mcu_bench.py), MACs per
  instruction, instructions per output element, speedup. Groups: "issue-linear" (the issue's
  token x dim shapes 64x64->128, 64x128->64, 50x96->192), "fmnist-tiny" (each distinct int8 kernel
  of the bundled model with its own constants and a random input), "attention" (random N=50 and
  N=197, 4 heads, head_dim 4/8/16).
- softmax: cost per score element isolated by a linear fit of attention's net instructions per
  score element (heads * N * N) against head_dim, extrapolated to head_dim -> 0.
- model: fmnist-tiny with quant(w=8,a=8) compiled by `compile_artifact` with each schedule:
  instructions per inference, MACs per instruction, estimated latency at the profile clock.
- targets: int8 GEMM >= 0.5 MACs/instruction, int8 softmax <= 50 instructions per element,
  everything bit-exact; each with `met`.

Every number in the output is measured by this run (tests/benchmarks/test_mcu_speed_figures.py checks
that the target tables hold nothing else): no figures of other libraries are typed in here.

    .venv/bin/python benchmarks/mcu_speed.py [--profile stm32f746-disco] [--count 3] [--model-count 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _mcu_bench import (SCHEDULES, Bench, attention_program, distinct_kernels, kernel_row, linear_fit,
                        linear_program, log, single_kernel_program)

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fmnist-tiny"
PASSES = "quant(w=8,a=8)"
ISSUE_LINEARS = ((64, 64, 128), (64, 128, 64), (50, 96, 192))  # tokens, in, out
ATTENTION_TOKENS = (50, 197)
ATTENTION_HEADS = 4
ATTENTION_HEAD_DIMS = (4, 8, 16)
GEMM_OPS = ("linear", "patch_embed")
GEMM_MIN_ROWS = 16  # "token x dim" GEMMs; the classifier head (1 row) is reported but not targeted
GEMM_TARGET = 0.5
SOFTMAX_TARGET = 50.0

METHOD = {
    "instructions": "QEMU -icount shift=0: SysTick ticks around one edgevit_run call x instructions per tick; "
                    "mean over `count` random int8 input vectors (tick resolution: one tick)",
    "overhead": "edgevit_run copies the input into the arena and the output out (memcpy). Measured with alias-only "
                "Programs (one reshape, no kernel code) of S bytes: copy(S) = call + timer reads + memcpy S in + "
                "memcpy S out. A kernel with S_in/S_out bytes is charged (copy(S_in) + copy(S_out)) / 2; "
                "net = raw - that. Table `copy_overhead`.",
    "resolution": "one SysTick tick = 40 instructions; with copy charging a net count is uncertain by about one "
                  "to two ticks, so rows with net < 2 ticks are flagged <schedule>_below_resolution and get no "
                  "per-MAC / per-element figures",
    "macs_per_instruction": "op MAC count (Program.macs) / net instructions",
    "softmax": "attention at fixed N and heads with head_dim 4, 8, 16: net instructions / (heads * N * N) is "
               "linear in head_dim (q.k and p.v MACs, output requantize); the intercept of a least-squares line at "
               "head_dim -> 0 is the cost per score element that does not scale with head_dim: the softmax (max, "
               "LUT index, exp, sum, per-row reciprocal, normalise) plus any per-score loop overhead, so an upper "
               "bound of the softmax alone",
    "kernels": "one-kernel Programs planned and emitted like a model (plan_memory, emit_artifact); a kernel with "
               "several inputs (residual add) reads the one program input for all of them; fmnist-tiny kernels "
               "keep their own constants and attrs and get random int8 inputs (full range)",
    "model": "compile_artifact(models/fmnist-tiny, passes quant(w=8,a=8), schedule) then run_artifact(qemu) on the "
             "test-split vectors; net subtracts the input/output copy as for kernels",
    "model_vs_kernels": "model rows also give the sum over fmnist-tiny kernel rows of net instructions x occurrences; "
                        "it is a consistency check, not an identity: standalone kernels are compiled alone (other gcc "
                        "inlining and register allocation) and the model's plan may chunk row-wise kernels",
    "latency": "estimate: net or raw instructions / profile clock, 1 instruction per cycle; QEMU models no "
               "pipeline, caches or flash wait states",
    "comparisons": "every figure in this document is measured by this script on QEMU; there is no CMSIS-NN "
                   "comparison: CMSIS-NN is not installed here and nothing in this repository measures it",
}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="stm32f746-disco", help="MCU profile (name or YAML path)")
    p.add_argument("--count", type=int, default=3, help="random input vectors per kernel run (>= 1)")
    p.add_argument("--model-count", type=int, default=10, help="test images per whole-model run (>= 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and constants")
    p.add_argument("--skip-model", action="store_true", help="kernels only (no fmnist-tiny rows or model runs)")
    p.add_argument("--workdir", type=Path, default=None, help="artifact directory (default: a temp dir, removed)")
    args = p.parse_args(argv)
    if args.count < 1 or args.model_count < 1:
        p.error("--count and --model-count must be at least 1")
    return args


def check_tools(profile) -> None:
    """ToolchainError (via the QEMU runner's own check) when the cross compiler or QEMU is missing."""
    from edgevit.backend.errors import ToolchainError
    from edgevit.targets.mcu.runners.qemu import emulator_binary

    for tool in (profile.toolchain.cc, emulator_binary(profile), "make"):
        if shutil.which(tool) is None:
            raise ToolchainError(f"{tool} is not on PATH; mcu_speed.py runs every kernel on the profile's QEMU board "
                                 "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm make)")


def model_program():
    """The int8 Program of models/fmnist-tiny with quant(w=8,a=8), calibrated as compile_artifact does."""
    from edgevit.data import load_dataset
    from edgevit.lower import lower
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.passes.pipeline import parse_pipeline, run_pipeline

    model = load_checkpoint(ROOT / "models" / MODEL)
    result, _ = run_pipeline(model, parse_pipeline(PASSES), load_dataset("fashion-mnist").train)
    return lower(result)


def linear_rows(bench: Bench) -> list[dict]:
    """The issue's three int8 linear shapes (random weights), both schedules."""
    return [kernel_row(bench, "issue-linear", f"linear {n}x{k}->{m}", linear_program(n, k, m, bench.seed))
            for n, k, m in ISSUE_LINEARS]


def model_kernel_rows(bench: Bench, program) -> list[dict]:
    """Each distinct int8 kernel of the model alone (own constants, random input); alias kernels
    (reshape: no code) are listed with a note instead of a measurement."""
    from edgevit.lower.ops import get_op

    rows = []
    for kernel, occurrences in distinct_kernels(program):
        if get_op(kernel.op).traits.alias:
            rows.append({"group": MODEL, "kernel": kernel.name, "op": kernel.op, "occurrences": occurrences,
                         "note": "alias (a view of its input): no code, 0 instructions"})
            continue
        try:
            single = single_kernel_program(program, kernel)
        except Exception as e:
            rows.append({"group": MODEL, "kernel": kernel.name, "op": kernel.op, "error": str(e)})
            continue
        rows.append(kernel_row(bench, MODEL, kernel.name, single, occurrences))
    return rows


def attention_rows(bench: Bench) -> list[dict]:
    """Random int8 attention, N in ATTENTION_TOKENS, 4 heads x head_dim in ATTENTION_HEAD_DIMS."""
    rows = []
    for n in ATTENTION_TOKENS:
        for hd in ATTENTION_HEAD_DIMS:
            program = attention_program(n, ATTENTION_HEADS, hd, bench.seed)
            row = kernel_row(bench, "attention", f"attention N={n} {ATTENTION_HEADS}x{hd}", program)
            row.update(tokens=n, heads=ATTENTION_HEADS, head_dim=hd, score_elements=ATTENTION_HEADS * n * n)
            rows.append(row)
    return rows


def softmax_fits(att_rows: list[dict]) -> list[dict]:
    """Per N and schedule: net instructions per score element vs head_dim, the linear fit and its
    intercept (the softmax estimate, instructions per score element)."""
    fits = []
    for n in ATTENTION_TOKENS:
        for s in SCHEDULES:
            pts = [r for r in att_rows if r["tokens"] == n and f"{s}_net_instructions" in r]
            per = [r[f"{s}_net_instructions"] / r["score_elements"] for r in pts]
            row = {"tokens": n, "heads": ATTENTION_HEADS, "schedule": s,
                   "points": [{"head_dim": r["head_dim"], "net_instructions_per_score_element": round(v, 3)}
                              for r, v in zip(pts, per)]}
            if len(pts) >= 2:
                fit = linear_fit([r["head_dim"] for r in pts], per)
                row.update(softmax_instructions_per_element=round(fit["intercept"], 2),
                           per_head_dim_instructions=round(fit["slope"], 3),
                           max_abs_residual=round(fit["max_abs_residual"], 3))
            else:
                row["error"] = "fewer than two attention runs succeeded"
            fits.append(row)
    return fits


def model_rows(bench: Bench, program, count: int) -> list[dict]:
    """fmnist-tiny int8 compiled with each schedule (compile_artifact) and run on QEMU."""
    from edgevit.backend.run import run_artifact
    from edgevit.backend.compile import compile_artifact

    macs, overhead = program.macs(), bench.overhead(program)
    rows = []
    for s in SCHEDULES:
        out = Path(bench.workdir) / f"model-{s}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        try:
            summary = compile_artifact(ROOT / "models" / MODEL, bench.profile.name, out, passes=PASSES,
                                       vectors=count, schedule=s, progress=False)
            seconds = time.perf_counter() - t0
            r = run_artifact(out, "qemu", count=count, progress=False)
        except Exception as e:
            rows.append({"model": MODEL, "schedule": s, "error": f"{type(e).__name__}: {e}"[:600]})
            continue
        rows.append(model_row(s, summary, r, macs, overhead, seconds, program.fingerprint(), bench.profile.clock_hz))
        log(f"  model {s}: {rows[-1]['instructions_per_inference']:,.0f} instr, "
            f"{rows[-1]['macs_per_instruction']:.3f} MAC/instr, {r['matches']}/{r['count']} exact")
    return rows


def model_row(schedule, summary, r, macs, overhead, seconds, fingerprint, clock_hz) -> dict:
    """One whole-model row from the compile summary and the run result."""
    raw = float(np.mean(r["ticks"])) * float(r["instructions_per_tick"])
    net = raw - overhead
    return {"model": MODEL, "passes": PASSES, "schedule": schedule, "macs": macs,
            "instructions_per_inference": round(raw, 1), "net_instructions_per_inference": round(net, 1),
            "copy_overhead_instructions": round(overhead, 1),
            "macs_per_instruction": round(macs / raw, 4), "net_macs_per_instruction": round(macs / net, 4),
            "estimated_latency_ms": round(raw / float(clock_hz) * 1e3, 3),
            "net_estimated_latency_ms": round(net / float(clock_hz) * 1e3, 3), "clock_hz": int(clock_hz),
            "matches": r["matches"], "count": r["count"], "bit_exact": r["matches"] == r["count"],
            "top1": r["top1"], "reference_top1": r["reference_top1"], "compile_seconds": round(seconds, 1),
            "same_program_as_kernel_rows": summary["fingerprint"] == fingerprint,
            "arena_bytes": summary["memory"]["arena_bytes"], "flash_bytes": summary["memory"]["flash_bytes"]}


def add_kernel_sums(models: list[dict], kernel_rows: list[dict]) -> None:
    """Per model row: the sum over fmnist-tiny kernel rows of net instructions x occurrences (a
    consistency check: the model chunks its MLP and shares one input copy, so they differ a little)."""
    for m in models:
        s = m.get("schedule")
        rows = [r for r in kernel_rows if r["group"] == MODEL and "note" not in r]
        if "error" in m or any(f"{s}_net_instructions" not in r for r in rows):
            continue
        total = sum(r[f"{s}_net_instructions"] * r["occurrences"] for r in rows)
        m["sum_of_kernel_rows_net_instructions"] = round(total, 1)
        m["model_over_kernel_sum"] = round(m["net_instructions_per_inference"] / total, 4)


def gemm_target(rows: list[dict]) -> dict:
    """int8 GEMM-heavy kernels (linear / patch_embed with >= 16 token rows), fast schedule >= 0.5."""
    gemm = [r for r in rows if r.get("op") in GEMM_OPS and r.get("rows", 0) >= GEMM_MIN_ROWS]
    values = {r["kernel"]: r.get("fast_macs_per_instruction") for r in gemm}
    issue = [v for r, v in zip(gemm, values.values()) if r["group"] == "issue-linear"]
    ok = [v is not None and v >= GEMM_TARGET for v in values.values()]
    return {"name": "int8 GEMM-heavy kernels, fast schedule", "unit": "MACs per net instruction",
            "threshold": f">= {GEMM_TARGET}", "scope": f"ops {list(GEMM_OPS)} with >= {GEMM_MIN_ROWS} token rows",
            "values": values, "worst": min((v for v in values.values() if v is not None), default=None),
            "met": bool(ok) and all(ok),
            "met_on_issue_shapes": bool(issue) and all(v is not None and v >= GEMM_TARGET for v in issue),
            "reference_schedule": {r["kernel"]: r.get("reference_macs_per_instruction") for r in gemm}}


def softmax_target(fits: list[dict]) -> dict:
    """int8 softmax (attention scores), fast schedule, <= 50 instructions per score element."""
    values = {f"N={f['tokens']}": f.get("softmax_instructions_per_element") for f in fits if f["schedule"] == "fast"}
    return {"name": "int8 softmax, fast schedule", "unit": "instructions per score element (fit intercept)",
            "threshold": f"<= {SOFTMAX_TARGET:g}", "values": values,
            "met": bool(values) and all(v is not None and v <= SOFTMAX_TARGET for v in values.values()),
            "reference_schedule": {f"N={f['tokens']}": f.get("softmax_instructions_per_element")
                                   for f in fits if f["schedule"] == "reference"}}


def exactness_target(kernel_rows: list[dict], models: list[dict]) -> dict:
    """Every run bit-exact (matches == count) and no kernel/model failed to build or run."""
    failed = [f"{r['kernel']} ({s})" for r in kernel_rows for s in SCHEDULES
              if f"{s}_error" in r or r.get(f"{s}_bit_exact") is False]
    failed += [r["kernel"] for r in kernel_rows if "error" in r]
    failed += [f"model ({m['schedule']})" for m in models if not m.get("bit_exact")]
    return {"name": "every run bit-exact against the reference interpreter", "failed": failed, "met": not failed}


def main(argv=None) -> int:
    """Run the benchmark; print the JSON document."""
    from edgevit.profiles.profile import load_profile

    args = parse_args(argv)
    t0 = time.perf_counter()
    profile = load_profile(args.profile)
    check_tools(profile)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgevit-mcu-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(profile, workdir, count=args.count, seed=args.seed)
    try:
        log(f"mcu_speed: profile {profile.name} ({profile.emulator.machine}), artifacts in {workdir}")
        rows = linear_rows(bench)
        program = None
        if not args.skip_model:
            log(f"calibrating {MODEL} with {PASSES}")
            program = model_program()
            rows += model_kernel_rows(bench, program)
        att = attention_rows(bench)
        rows += att
        fits = softmax_fits(att)
        models = [] if program is None else model_rows(bench, program, args.model_count)
        add_kernel_sums(models, rows)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    doc = {"benchmark": "mcu_speed", "profile": profile.name, "machine": profile.emulator.machine,
           "clock_hz": int(profile.clock_hz), "count": args.count, "seed": args.seed, "method": METHOD,
           "targets": [gemm_target(rows), softmax_target(fits), exactness_target(rows, models)],
           "kernels": rows, "softmax": fits, "model": models, "copy_overhead": bench.copy_table(),
           "artifact_runs": bench.runs, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
