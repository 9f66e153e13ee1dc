"""An ESTIMATE of a stream's cycles on the overlay, to see where time goes before Verilator numbers exist.

This is a simple analytic model, not a measurement: part 2 calibrates a real cost model against the
Verilator overlay (whose counters CYCLES, GEMM_BUSY, ... are the truth). Per instruction:

    GEMM          max(count, 1) + GEMM_OVERHEAD (4) from start to done      (rtl/gemm_unit.py); a GEMM right
                  after a GEMM starts max(count, 1) cycles after it (the unit's `ready`: tile fetch and
                  pipeline drain overlap), unless the earlier one pushes a token (GEMM_OVERLAP_PUSH)
    TILE          bm reads (bk * ceil(bm / bk) transposed) + 2
    LOAD / STORE  DDR latency (ddr_latency_cycles) + the AXI beats of its rows (one beat a cycle; a row
                  of b bytes at DDR address a takes ceil((a % bus + b) / bus) beats)
    REQUANT       requant_cycles: 3 (+64 gelu) + 3 ne + 1 + sum over column blocks after the first of
                  max(rows, 3 nv + 1) + rows + 7 (channel words of the next block prefetched, rtl/vector_requant.py)
    LAYERNORM     rows * (45 + ceil(cols / ne)) + 10          (~57 a row at D = 96, report-hwvec)
    SOFTMAX       rows * (3 * ceil(cols / vl) + 22) + 10      (~44 a row at N = 50)
    ADD           2 cycles a beat of ne elements + 8;  COPY / LUT 1 cycle a beat of vl bytes + 4
    MEANPOOL      ceil(cols / ne) * (rows + 4);  MERGE rows * (rows + cols) (no hardware yet)

plus one cycle per instruction for the module's sequencer. The three modules overlap as the hardware
lets them (rtl/overlay.py): the fetcher delivers one instruction every INSN_BYTES / bus_bytes cycles into
a FETCH_DEPTH FIFO; the dispatcher hands them in stream order to the module queues (QUEUE_DEPTH, blocking
while the target queue is full); each module runs its queue in order and starts an instruction once the
tokens it pops were pushed (the k-th pop of a queue takes the k-th push, pushed when its producer ends).
Not modelled: AXI contention between the fetcher, loads and stores, DDR refresh / bank effects, the
255-token limit, the softmax exp-table copy after a PARAM load.
"""

from __future__ import annotations

from edgevit.targets.fpga.compiler.common import ceil_div
from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import INSN_BYTES, Insn

GEMM_OVERHEAD = 4
# False: the top overlaps a GEMM with the next one only when the first pushes no token (its tokens are
# pushed when `busy` falls, as for every instruction). True: the top pushes each GEMM's tokens at its own
# `done` (a FIFO of in-flight push bits), so every GEMM -> GEMM pair overlaps.
GEMM_OVERLAP_PUSH = False
QUEUE_DEPTH = {"load": 16, "compute": 16, "store": 8}
FETCH_DEPTH = 32
DTYPE_BYTES = {0: 1, 1: 2, 2: 4, 3: 1}
# (module, flag) -> token queue it pops / pushes
POPS = {("compute", "pop_prev"): "l2c", ("load", "pop_next"): "c2l", ("store", "pop_prev"): "c2s",
        ("compute", "pop_next"): "s2c"}
PUSHES = {("load", "push_next"): "l2c", ("compute", "push_prev"): "c2l", ("compute", "push_next"): "c2s",
          ("store", "push_prev"): "s2c"}


def _beats(dram: int, row_bytes: int, rows: int, stride: int, bus: int) -> int:
    if stride % bus == 0 or rows == 1:
        return rows * ceil_div(dram % bus + row_bytes, bus)
    return sum(ceil_div((dram + r * stride) % bus + row_bytes, bus) for r in range(rows))


def requant_cycles(rows: int, cols: int, ne: int, gelu: int) -> int:
    """Cycles of REQUANT on rtl/vector_requant.py, start to idle, as measured in amaranth.sim
    (tests/targets/fpga/test_perf_requant.py): header, first block's channel words, then one block per
    max(rows, its 3 nv channel words + 1), the last block's rows and the pipeline. nv: the block's columns."""
    if rows == 0 or cols == 0:
        return 4 + 64 * gelu + 7
    nv = [min(ne, cols - c) for c in range(0, cols, ne)]
    return 4 + 64 * gelu + 3 * nv[0] + 1 + sum(max(rows, 3 * n + 1) for n in nv[1:]) + rows + 7


def insn_cycles(insn: Insn, cfg: OverlayConfig) -> int:
    """Estimated busy cycles of one instruction on its unit (module docstring), sequencer cycle excluded."""
    f, op, vl = insn.fields, insn.op, cfg.vl
    if op == "GEMM":
        return max(f["count"], 1) + GEMM_OVERHEAD
    if op == "TILE":
        return (cfg.bk * ceil_div(cfg.bm, cfg.bk) if f["transpose"] else cfg.bm) + 2
    if op in ("LOAD", "STORE"):
        return cfg.ddr_latency_cycles + _beats(f["dram"], f["row_bytes"], f["rows"], f["dram_stride"], cfg.bus_bytes)
    ne = max(1, vl // DTYPE_BYTES[f.get("dtype", 0)])
    if op == "REQUANT":
        return requant_cycles(f["rows"], f["cols"], ne, f["gelu"]) - 1  # the sequencer cycle is added apart
    if op == "LAYERNORM":
        return f["rows"] * (45 + ceil_div(f["cols"], ne)) + 10
    if op == "SOFTMAX":
        return f["rows"] * (3 * ceil_div(f["cols"], vl) + 22) + 10
    if op == "ADD":
        return 2 * f["rows"] * ceil_div(f["cols"], ne) + 8
    if op == "COPY":
        return f["rows"] * ceil_div(f["row_bytes"], vl) + 4
    if op == "LUT":
        return f["rows"] * ceil_div(f["cols"], vl) + 4
    if op == "MEANPOOL":
        return ceil_div(f["cols"], ne) * (f["rows"] + 4)
    if op == "MERGE":
        return f["rows"] * (f["rows"] + f["cols"])
    return 1  # FINISH


def estimate_cycles(insns: list[Insn], cfg: OverlayConfig, tags: list[str] | None = None,
                    timeline: bool = False) -> dict:
    """Estimated run of a stream (module docstring). `tags[i]` (e.g. "linear:blocks.0.mlp.fc1") names the
    kernel of instruction i. Returns {"cycles", "busy" (per module), "busy_by_opcode" (unit cycles per
    opcode), "gemm_busy" (sum of GEMM counts),
    "compute_by_op" {tag prefix: compute-timeline cycles}, "gemm_by_op" {tag prefix: GEMM steps}}: the
    compute timeline is cut per instruction (its end minus the previous compute end, stalls included).
    With `timeline`, also "start" and "end": every instruction's estimated start / end cycle."""
    bpi = max(1, INSN_BYTES // cfg.bus_bytes)
    start, end, dispatch, fetched = [0] * len(insns), [0] * len(insns), [0] * len(insns), [0] * len(insns)
    per_module: dict[str, list[int]] = {m: [] for m in QUEUE_DEPTH}
    pushes: dict[str, list[int]] = {q: [] for q in ("l2c", "c2l", "c2s", "s2c")}
    pops = {q: 0 for q in pushes}
    busy = {m: 0 for m in QUEUE_DEPTH}
    by_opcode: dict[str, int] = {}
    last_end = {m: 0 for m in QUEUE_DEPTH}
    gemm_busy, by_op, gemm_by_op = 0, {}, {}
    prev_compute_end = 0
    prev_compute = None  # (instruction, start) of the last compute instruction
    for i, insn in enumerate(insns):
        mod = insn.module
        fetched[i] = max(cfg.ddr_latency_cycles + bpi if i == 0 else fetched[i - 1] + bpi,
                         dispatch[i - FETCH_DEPTH] if i >= FETCH_DEPTH else 0)
        mine = per_module[mod]
        room = start[mine[-QUEUE_DEPTH[mod]]] if len(mine) >= QUEUE_DEPTH[mod] else 0
        dispatch[i] = max(fetched[i], dispatch[i - 1] + 1 if i else 0, room)
        ready = max(dispatch[i] + 1, last_end[mod] + 1)
        if mod == "compute" and insn.op == "GEMM" and prev_compute and prev_compute[0].op == "GEMM":
            pf = prev_compute[0].fields
            if GEMM_OVERLAP_PUSH or not (pf.get("push_prev") or pf.get("push_next")):
                ready = max(dispatch[i] + 1, prev_compute[1] + max(pf["count"], 1))
        for flag in ("pop_prev", "pop_next"):
            if insn.fields.get(flag):
                q = POPS[(mod, flag)]
                ready = max(ready, pushes[q][pops[q]])
                pops[q] += 1
        cost = insn_cycles(insn, cfg)
        start[i], end[i] = ready, ready + cost
        unit = end[i] - max(start[i], last_end[mod])   # busy cycles not already counted (GEMM overlap)
        last_end[mod] = max(last_end[mod], end[i])
        busy[mod] += unit
        by_opcode[insn.op] = by_opcode.get(insn.op, 0) + unit
        for flag in ("push_prev", "push_next"):
            if insn.fields.get(flag):
                pushes[PUSHES[(mod, flag)]].append(end[i])
        mine.append(i)
        if mod == "compute":
            prev_compute = (insn, start[i])
            key = (tags[i] if tags else insn.op).split(":")[0]
            by_op[key] = by_op.get(key, 0) + end[i] - prev_compute_end
            prev_compute_end = end[i]
            if insn.op == "GEMM":
                gemm_busy += insn.fields["count"]
                gemm_by_op[key] = gemm_by_op.get(key, 0) + insn.fields["count"]
    total = max(end) if insns else 0
    out = {"cycles": total, "busy": busy, "busy_by_opcode": by_opcode, "gemm_busy": gemm_busy,
           "compute_by_op": by_op, "gemm_by_op": gemm_by_op}
    return {**out, "start": start, "end": end} if timeline else out


def summary(est: dict, cfg: OverlayConfig, macs: int | None = None) -> dict:
    """Headline numbers of an estimate: total cycles, GEMM utilisation overall and in linear layers, and
    with `macs` the ratio cycles / (macs / PEs) (issue #15 asks <= 1.6)."""
    out = {"cycles": est["cycles"], "gemm_util": est["gemm_busy"] / max(1, est["cycles"])}
    lin = [k for k in est["compute_by_op"] if k in ("linear", "patch_embed")]
    lin_cycles = sum(est["compute_by_op"][k] for k in lin)
    if lin_cycles:
        out["linear_gemm_util"] = sum(est["gemm_by_op"].get(k, 0) for k in lin) / lin_cycles
    if macs:
        out["cycles_over_ideal"] = est["cycles"] / (macs / cfg.pes)
    out["inferences_per_s"] = cfg.clock_hz / max(1, est["cycles"])
    return out
