"""The LOAD / STORE DMA engines (rtl/axi_dma.py) against a Python AXI DDR model: 2-D copies with
unaligned rows on both sides, strides, bursts of <= 256 beats that never cross 4 KB, back-pressure."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import Insn, encode
from edgevit.targets.fpga.rtl.axi_dma import DmaLoad, DmaStore, plan_bursts
from tests.targets.fpga.hwctl_axi_model import AxiDdr

DDR_BASE = 0x4000_0F00        # not 4 KB aligned, so rows straddle pages at many offsets
DDR_SIZE = 24 * 1024
SRAM_SIZE = 8 * 1024


def _cfg(bus_bytes: int) -> OverlayConfig:
    return OverlayConfig(bk=16, bm=8, vl=8, act_bytes=SRAM_SIZE, wgt_tiles=64, acc_rows=64, param_words=256,
                         bus_bytes=bus_bytes, clock_hz=100_000_000, ddr_latency_cycles=40)


def _word(insn: Insn) -> int:
    return int.from_bytes(encode(insn), "little")


def _run(dut, cfg, insns, ddr: bytearray, sram: bytearray, seed: int, wr_ready_prob=0.8, **model):
    """Run `insns` one after another on `dut` (DmaLoad or DmaStore); returns the DDR model."""
    B = cfg.bus_bytes
    axi = AxiDdr(ddr, DDR_BASE, B, seed=seed, **model)
    rng = random.Random(seed + 1)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    if isinstance(dut, DmaLoad):
        sim.add_process(axi.read_process(dut.axi))

        async def sram_port(ctx):
            async for _, _, en, rdy, mem, addr, data, be in ctx.tick().sample(
                    dut.wr_en, dut.wr_ready, dut.wr_mem, dut.wr_addr, dut.wr_data, dut.wr_be):
                if en and rdy:
                    for i in range(B):
                        if be >> i & 1:
                            sram[addr * B + i] = (data >> 8 * i) & 0xFF
                ctx.set(dut.wr_ready, rng.random() < wr_ready_prob)
    else:
        sim.add_process(axi.write_process(dut.axi))

        async def sram_port(ctx):
            async for _, _, en, addr in ctx.tick().sample(dut.rd_en, dut.rd_addr):
                if en:
                    ctx.set(dut.rd_data, int.from_bytes(sram[addr * B:(addr + 1) * B], "little"))
    sim.add_process(sram_port)

    async def bench(ctx):
        ctx.set(dut.ddr_base, DDR_BASE)
        for insn in insns:
            ctx.set(dut.insn, _word(insn))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for _ in range(20000):
                if ctx.get(dut.done):
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"{insn} did not finish")
            await ctx.tick()
            assert not ctx.get(dut.busy)
    sim.add_testbench(bench)
    sim.run()
    assert not axi.errors, axi.errors[:5]
    return axi


def _expected_bursts(cfg, insn, max_beats=256):
    return [b for r in range(insn.rows)
            for b in plan_bursts(DDR_BASE + insn.dram + r * insn.dram_stride, insn.row_bytes, cfg.bus_bytes,
                                 max_beats)]


@st.composite
def _copies(draw, bus_bytes_choices=(8, 16)):
    B = draw(st.sampled_from(bus_bytes_choices))
    rows = draw(st.integers(1, 4))
    row_bytes = draw(st.integers(1, 200))
    dram_stride = row_bytes + draw(st.integers(0, 600))
    sram_stride = row_bytes + draw(st.integers(0, 40))
    dram = draw(st.integers(0, DDR_SIZE - rows * dram_stride - 1))
    sram = draw(st.integers(0, SRAM_SIZE - rows * sram_stride - 1))
    seed = draw(st.integers(0, 2 ** 16))
    return B, Insn("LOAD", mem=0, sram=sram, dram=dram, rows=rows, row_bytes=row_bytes, dram_stride=dram_stride,
                   sram_stride=sram_stride), seed


_SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_copies())
def test_load_copies_unaligned_rows(case):
    B, insn, seed = case
    cfg = _cfg(B)
    rng = random.Random(seed)
    ddr = bytearray(rng.randbytes(DDR_SIZE))
    sram = bytearray(rng.randbytes(SRAM_SIZE))
    want = bytearray(sram)
    for r in range(insn.rows):
        s, d = insn.sram + r * insn.sram_stride, insn.dram + r * insn.dram_stride
        want[s:s + insn.row_bytes] = ddr[d:d + insn.row_bytes]
    axi = _run(DmaLoad(cfg), cfg, [insn], ddr, sram, seed, bandwidth=0.6)
    assert sram == want
    assert [(a, n) for _, a, n in axi.bursts] == _expected_bursts(cfg, insn)


@_SETTINGS
@given(_copies())
def test_store_copies_unaligned_rows(case):
    B, load, seed = case
    insn = Insn("STORE", **{k: v for k, v in load.fields.items() if k != "mem"})
    cfg = _cfg(B)
    rng = random.Random(seed)
    ddr = bytearray(rng.randbytes(DDR_SIZE))
    sram = bytearray(rng.randbytes(SRAM_SIZE))
    want = bytearray(ddr)
    for r in range(insn.rows):
        s, d = insn.sram + r * insn.sram_stride, insn.dram + r * insn.dram_stride
        want[d:d + insn.row_bytes] = sram[s:s + insn.row_bytes]
    axi = _run(DmaStore(cfg), cfg, [insn], ddr, sram, seed, bandwidth=0.6)
    assert ddr == want
    assert [(a, n) for _, a, n in axi.bursts] == _expected_bursts(cfg, insn)


def test_long_rows_split_at_256_beats_and_4k():
    """A 2.5 KB row at 8 bytes a beat needs 320 beats: bursts of <= 256 beats, cut at every 4 KB page."""
    cfg = _cfg(8)
    ddr = bytearray(random.Random(1).randbytes(DDR_SIZE))
    sram = bytearray(SRAM_SIZE)
    insn = Insn("LOAD", mem=0, sram=3, dram=0x20FD, rows=2, row_bytes=2560, dram_stride=4100, sram_stride=2600)
    axi = _run(DmaLoad(cfg), cfg, [insn], ddr, sram, 1, wr_ready_prob=1.0, ready_prob=1.0, latency=(1, 2))
    beats = [n for _, _, n in axi.bursts]
    assert max(beats) == 256 and sum(beats) == 321 + 321
    assert [(a, n) for _, a, n in axi.bursts] == _expected_bursts(cfg, insn)
    for r in range(2):
        s, d = 3 + r * 2600, 0x20FD + r * 4100
        assert sram[s:s + 2560] == ddr[d:d + 2560]


@pytest.mark.parametrize("mem,scale", [(1, 128), (2, 4)])
def test_load_wgt_and_param_rows_are_consecutive(mem, scale):
    """WGT / PARAM: `sram` counts tiles / words and the rows follow each other (sram_stride ignored)."""
    cfg = _cfg(8)
    ddr = bytearray(random.Random(2).randbytes(DDR_SIZE))
    sram = bytearray(SRAM_SIZE)
    row = 128 if mem == 1 else 12
    insn = Insn("LOAD", mem=mem, sram=5, dram=40, rows=3, row_bytes=row, dram_stride=row + 8, sram_stride=999)
    _run(DmaLoad(cfg), cfg, [insn], ddr, sram, 2)
    want = b"".join(bytes(ddr[40 + r * (row + 8):40 + r * (row + 8) + row]) for r in range(3))
    assert sram[5 * scale:5 * scale + 3 * row] == want
    assert not any(sram[:5 * scale]) and not any(sram[5 * scale + 3 * row:])


def test_back_to_back_commands_and_empty_copies():
    """Several commands in a row, including rows = 0 and row_bytes = 0 (done at once, nothing moves)."""
    cfg = _cfg(16)
    rng = random.Random(3)
    ddr = bytearray(rng.randbytes(DDR_SIZE))
    sram = bytearray(SRAM_SIZE)
    insns = [Insn("LOAD", sram=0, dram=1, rows=0, row_bytes=10, dram_stride=10, sram_stride=10),
             Insn("LOAD", sram=7, dram=33, rows=2, row_bytes=0, dram_stride=10, sram_stride=10),
             Insn("LOAD", sram=100, dram=500, rows=3, row_bytes=17, dram_stride=19, sram_stride=21),
             Insn("LOAD", sram=1000, dram=4095, rows=1, row_bytes=33, dram_stride=0, sram_stride=0)]
    axi = _run(DmaLoad(cfg), cfg, insns, ddr, sram, 3)
    for r in range(3):
        assert sram[100 + r * 21:100 + r * 21 + 17] == ddr[500 + r * 19:500 + r * 19 + 17]
    assert sram[1000:1033] == ddr[4095:4128]
    assert sum(sram) == sum(sram[100:163]) + sum(sram[1000:1033])
    assert len(axi.bursts) == len(_expected_bursts(cfg, insns[2])) + len(_expected_bursts(cfg, insns[3]))
