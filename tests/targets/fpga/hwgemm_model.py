"""NumPy model of GEMM and TILE (docs/fpga-isa.md) and an amaranth.sim harness for GemmCore, shared by the
hwgemm tests. The model is written from the doc's pseudo-code, independently of the RTL."""

from __future__ import annotations

import numpy as np

from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import Insn, encode

SMALL = OverlayConfig(bk=16, bm=4, vl=8, act_bytes=512, wgt_tiles=4, acc_rows=32, param_words=256, bus_bytes=8,
                      clock_hz=100_000_000, ddr_latency_cycles=40)


def wrap32(x: np.ndarray) -> np.ndarray:
    """int64 -> int32 with two's complement wrap-around (the accumulators' width)."""
    return ((x.astype(np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int64)


def run_model(cfg: OverlayConfig, act: np.ndarray, wgt: np.ndarray, acc: np.ndarray, insns: list[Insn]):
    """Execute GEMM / TILE instructions on copies of act (uint8 [act_bytes]), wgt (int8 [tiles, bm, bk])
    and acc (int64 [rows, bm]); returns the new (wgt, acc)."""
    bm, bk = cfg.bm, cfg.bk
    wgt, acc = wgt.copy(), acc.copy()
    for ins in insns:
        if ins.op == "GEMM":
            w = wgt[ins.wgt].astype(np.int64)
            for i in range(ins.count):
                raw = act[ins.inp + i * ins.inp_stride:][:bk]
                x = (raw.astype(np.int64) if ins.unsigned else raw.view(np.int8).astype(np.int64))
                a = ins.acc + i * ins.acc_stride
                acc[a] = wrap32((0 if ins.reset else acc[a]) + w @ x)
        elif ins.op == "TILE":
            tile = np.zeros((bm, bk), np.int8)
            for mm in range(bm):
                for k in range(bk):
                    if not ins.transpose and mm < ins.rows and k < ins.cols:
                        tile[mm, k] = np.int8(act[ins.src + mm * ins.stride + k].astype(np.int8))
                    if ins.transpose and k < ins.rows and mm < ins.cols:
                        tile[mm, k] = np.int8(act[ins.src + k * ins.stride + mm].astype(np.int8))
            wgt[ins.wgt] = tile
        else:
            raise ValueError(ins.op)
    return wgt, acc


def acc_row_words(row: np.ndarray) -> list[int]:
    """An ACC row (int [bm]) as the memory's int32 lane values."""
    return [int(v) for v in row]


def simulate_core(cfg: OverlayConfig, act: np.ndarray, wgt: np.ndarray, acc: np.ndarray, feed):
    """GemmCore (memories preloaded) in amaranth.sim: `await feed(ctx, core, out)` drives the instructions and
    records what it wants in the dict `out`; then the memories are read back. Returns (wgt, acc, out)."""
    from amaranth.sim import Simulator

    from edgevit.targets.fpga.rtl.gemm_unit import GemmCore

    bm, bk = cfg.bm, cfg.bk
    core = GemmCore(cfg, act_init=act.tobytes(), wgt_init=[t.tobytes() for t in wgt],
                    acc_init=[acc_row_words(r) for r in acc])
    sim = Simulator(core)
    sim.add_clock(1e-8)
    out: dict = {}

    async def bench(ctx):
        await feed(ctx, core, out)
        out["wgt"] = [ctx.get(core.wgt.mem.data[i]) for i in range(cfg.wgt_tiles)]
        out["acc"] = [ctx.get(core.acc.mem.data[i]) for i in range(cfg.acc_rows)]

    sim.add_testbench(bench)
    sim.run()
    wgt_out = np.stack([np.frombuffer(int(v).to_bytes(bm * bk, "little"), np.int8).reshape(bm, bk)
                        for v in out["wgt"]])
    acc_out = np.array([[(int(v) >> (32 * m)) & 0xFFFFFFFF for m in range(bm)] for v in out["acc"]], np.int64)
    return wgt_out, wrap32(acc_out), out


def run_rtl(cfg: OverlayConfig, act: np.ndarray, wgt: np.ndarray, acc: np.ndarray, insns: list[Insn]):
    """Run the instructions on GemmCore in amaranth.sim (memories preloaded); returns (wgt, acc, trace) where
    trace[i] = (done cycle counted from the start cycle, cycles of instruction i that wrote ACC)."""

    async def feed(ctx, core, out):
        trace = []
        for ins in insns:
            ctx.set(core.insn, int.from_bytes(encode(ins), "little"))
            ctx.set(core.start, 1)
            cycle, writes = 0, []
            while True:
                if ctx.get(core.acc.write.en):
                    writes.append(cycle)
                if ctx.get(core.done):
                    break
                await ctx.tick()
                ctx.set(core.start, 0)
                cycle += 1
                assert cycle < 10_000, f"{ins} never finished"
            await ctx.tick()
            trace.append((cycle, writes))
        out["trace"] = trace

    wgt_out, acc_out, out = simulate_core(cfg, act, wgt, acc, feed)
    return wgt_out, acc_out, out["trace"]
