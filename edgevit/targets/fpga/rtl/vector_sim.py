"""Python models of the vector unit's scratchpads for Amaranth simulation (tests, cycle counts).

`run_engine(engine, fields, act, acc, param)` drives one vector engine (or the whole VectorUnit)
through an instruction: it sets the field signals, pulses `start`, and each cycle serves the
engine's `VecPorts` from NumPy memories with the ports' one-cycle read latency (read before write
in the same cycle), until `busy` falls. Returns the number of cycles from start to idle; `act`
is updated in place. An access outside a memory raises IndexError, like the simulators.
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator


def _u(v: int, bits: int) -> int:
    return int(v) & ((1 << bits) - 1)


def run_engine(engine, fields: dict[str, int], act: np.ndarray, acc: np.ndarray | None = None,
               param: np.ndarray | None = None, max_cycles: int = 200_000, extra=None, op: str | None = None) -> int:
    """Run one instruction on `engine` (attributes start, busy, f (field signals), ports).

    act: uint8 [act_bytes] (modified in place); acc: int32 [rows, bm]; param: int32 [words].
    `extra`: [(signal, value)] set before start. With `op` (the VectorUnit), the fields are encoded as
    instruction `op` (isa.encode) on the engine's `insn` input instead. Returns cycles to idle."""
    if op is not None:
        from edgevit.targets.fpga.isa import Insn, encode
        extra = list(extra or []) + [(engine.insn, int.from_bytes(encode(Insn(op, **fields)), "little"))]
        fields = {}
    ports = engine.ports
    vl, bm = ports.vl, ports.bm
    acc = np.zeros((1, bm), np.int32) if acc is None else acc
    param = np.zeros(1, np.int32) if param is None else param
    acc_u = acc.astype(np.int64) & 0xFFFFFFFF
    result = {}

    async def bench(ctx):
        for name, value in fields.items():
            ctx.set(engine.f[name], int(value))
        for sig, value in (extra or []):
            ctx.set(sig, int(value))
        ctx.set(engine.start, 1)
        await ctx.tick()
        ctx.set(engine.start, 0)
        cycles = 1
        while ctx.get(engine.busy):
            if cycles > max_cycles:
                raise TimeoutError(f"engine still busy after {max_cycles} cycles")
            ren, raddr = ctx.get(ports.act_ren), ctx.get(ports.act_raddr)
            wen = ctx.get(ports.act_wen)
            if wen:
                waddr, wdata, wmask = ctx.get(ports.act_waddr), ctx.get(ports.act_wdata), ctx.get(ports.act_wmask)
            accen, accaddr = ctx.get(ports.acc_ren), ctx.get(ports.acc_raddr)
            pen, paddr = ctx.get(ports.param_ren), ctx.get(ports.param_raddr)
            await ctx.tick()
            cycles += 1
            if ren:
                if raddr + vl > act.size:
                    raise IndexError(f"ACT read {raddr}+{vl} outside {act.size} bytes")
                ctx.set(ports.act_rdata, int.from_bytes(act[raddr:raddr + vl].tobytes(), "little"))
            if accen:
                row = acc_u[accaddr]  # IndexError when outside
                ctx.set(ports.acc_rdata, sum(int(v) << (32 * i) for i, v in enumerate(row)))
            if pen:
                if not 0 <= paddr < param.size:
                    raise IndexError(f"PARAM read {paddr} outside {param.size} words")
                ctx.set(ports.param_rdata, _u(param[paddr], 32))
            if wen:
                for i in range(vl):
                    if wmask >> i & 1:
                        if waddr + i >= act.size:
                            raise IndexError(f"ACT write {waddr + i} outside {act.size} bytes")
                        act[waddr + i] = (wdata >> (8 * i)) & 0xFF
        result["cycles"] = cycles

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result["cycles"]


def run_scalar(dut, inputs: dict, outputs: list, cases: list[dict]) -> list[tuple[list[int], int]]:
    """Run a start/busy/done scalar unit (Divider, Isqrt) on each case {input name: value}: returns
    [(output values, cycles from start to done)]."""
    out = []

    async def bench(ctx):
        for case in cases:
            for name, value in case.items():
                ctx.set(getattr(dut, name), int(value))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
                if cycles > 10_000:
                    raise TimeoutError("no done")
            out.append(([ctx.get(getattr(dut, o)) for o in outputs], cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out
