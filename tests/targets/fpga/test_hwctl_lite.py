"""The AXI4-Lite control registers (rtl/axi_lite.py) against registers.py, the drivers' table: writes
with byte strobes and AW/W in any order, read-back, start / done / reset counters, the counters, an
error ending the run, SLVERR outside the table."""

from __future__ import annotations

import random

from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.targets.fpga.registers import CTRL_DONE, CTRL_RESET_COUNTERS, CTRL_START, REGISTERS
from edgevit.targets.fpga.rtl.axi_lite import CONDITIONS, COUNTERS, RESP_OKAY, RESP_SLVERR, WRITABLE, ControlRegs

OFF = {r.name: r.offset for r in REGISTERS}


class Host:
    """An AXI4-Lite master for a testbench: random delays between the channels."""

    def __init__(self, ctx, bus, rng):
        self.ctx, self.bus, self.rng = ctx, bus, rng

    async def _wait(self, ready) -> None:
        while not self.ctx.get(ready):
            await self.ctx.tick()

    async def write(self, addr: int, value: int, strb: int = 0xF) -> int:
        """Write; returns BRESP. AW and W go out in a random order with random gaps."""
        ctx, bus = self.ctx, self.bus
        channels = [("aw", [(bus.awaddr, addr)], bus.awvalid, bus.awready),
                    ("w", [(bus.wdata, value), (bus.wstrb, strb)], bus.wvalid, bus.wready)]
        self.rng.shuffle(channels)
        for _, payload, valid, ready in channels:
            for _ in range(self.rng.randint(0, 2)):
                await ctx.tick()
            for sig, v in payload:
                ctx.set(sig, v)
            ctx.set(valid, 1)
            await self._wait(ready)
            await ctx.tick()
            ctx.set(valid, 0)
        ctx.set(bus.bready, 1)
        await self._wait(bus.bvalid)
        resp = ctx.get(bus.bresp)
        await ctx.tick()
        ctx.set(bus.bready, 0)
        return resp

    async def read(self, addr: int) -> tuple[int, int]:
        """Read; returns (RDATA, RRESP)."""
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.araddr, addr)
        ctx.set(bus.arvalid, 1)
        await self._wait(bus.arready)
        await ctx.tick()
        ctx.set(bus.arvalid, 0)
        for _ in range(self.rng.randint(0, 2)):
            await ctx.tick()
        ctx.set(bus.rready, 1)
        await self._wait(bus.rvalid)
        out = ctx.get(bus.rdata), ctx.get(bus.rresp)
        await ctx.tick()
        ctx.set(bus.rready, 0)
        return out


def _simulate(body, seed=0):
    dut = ControlRegs()
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        await body(ctx, dut, Host(ctx, dut.bus, random.Random(seed)))
    sim.add_testbench(bench)
    sim.run()


def test_register_table_is_registers_py():
    assert set(WRITABLE) | {"CTRL"} == {r.name for r in REGISTERS if r.access == "rw"}
    assert set(COUNTERS) == {r.name for r in REGISTERS if r.access == "ro"}


@settings(max_examples=8, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WRITABLE), st.integers(0, 2 ** 32 - 1), st.integers(0, 15)),
                min_size=1, max_size=6), st.integers(0, 1000))
def test_register_writes_with_strobes_read_back(writes, seed):
    want = {name: 0 for name in WRITABLE}

    async def body(ctx, dut, host):
        for name, value, strb in writes:
            assert await host.write(OFF[name], value, strb) == RESP_OKAY
            mask = sum(0xFF << 8 * b for b in range(4) if strb >> b & 1)
            want[name] = (want[name] & ~mask) | (value & mask)
        for name, value in want.items():
            assert await host.read(OFF[name]) == (value, RESP_OKAY)
            assert ctx.get(getattr(dut, name.lower())) == value
    _simulate(body, seed)


def test_start_done_and_counters():
    async def body(ctx, dut, host):
        assert await host.write(OFF["CTRL"], CTRL_START) == RESP_OKAY
        assert ctx.get(dut.running)
        assert await host.read(OFF["CTRL"]) == (0, RESP_OKAY)         # start reads 0, not done yet
        for i, sig in enumerate(CONDITIONS.values()):                  # each condition high i+1 cycles
            ctx.set(getattr(dut, sig), 1)
            for _ in range(i + 1):
                await ctx.tick()
            ctx.set(getattr(dut, sig), 0)
        ctx.set(dut.finish, 1)
        await ctx.tick()
        ctx.set(dut.finish, 0)
        assert not ctx.get(dut.running)
        assert await host.read(OFF["CTRL"]) == (CTRL_DONE, RESP_OKAY)
        for i, name in enumerate(CONDITIONS):
            assert await host.read(OFF[name]) == (i + 1, RESP_OKAY)
        cycles, _ = await host.read(OFF["CYCLES"])
        assert cycles >= sum(range(1, len(CONDITIONS) + 1))
        ctx.set(dut.load_busy, 1)                                      # not running: nothing counts
        await ctx.tick()
        ctx.set(dut.load_busy, 0)
        assert await host.read(OFF["LOAD_BUSY"]) == (3, RESP_OKAY)
        assert await host.read(OFF["CYCLES"]) == (cycles, RESP_OKAY)
        assert await host.write(OFF["CTRL"], CTRL_RESET_COUNTERS) == RESP_OKAY
        assert not ctx.get(dut.running)
        for name in COUNTERS:
            assert await host.read(OFF[name]) == (0, RESP_OKAY)
        ctx.set(dut.stall_token, 1)                                    # a new start zeroes them too
        assert await host.write(OFF["CTRL"], CTRL_START) == RESP_OKAY
        for _ in range(4):
            await ctx.tick()
        assert 4 <= (await host.read(OFF["STALL_TOKEN"]))[0] < 12
        assert await host.read(OFF["CTRL"]) == (0, RESP_OKAY)         # done cleared by start
    _simulate(body)


def test_error_ends_the_run_without_done():
    async def body(ctx, dut, host):
        await host.write(OFF["CTRL"], CTRL_START)
        ctx.set(dut.error, 1)
        await ctx.tick()
        ctx.set(dut.error, 0)
        assert not ctx.get(dut.running)
        assert await host.read(OFF["CTRL"]) == (0, RESP_OKAY)
    _simulate(body)


def test_unmapped_addresses_answer_slverr():
    async def body(ctx, dut, host):
        assert (await host.read(0x3C))[1] == RESP_SLVERR
        assert await host.write(0x3C, 5) == RESP_SLVERR
        assert await host.write(OFF["CTRL"], CTRL_START, strb=0b1110) == RESP_OKAY
        assert not ctx.get(dut.running)            # CTRL's byte 0 not written: no start
    _simulate(body)
