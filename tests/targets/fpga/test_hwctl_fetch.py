"""Instruction fetch (rtl/fetch.py): a random encoded stream read over AXI from a DDR model with random
latency and back-pressure, decoded by the generated hardware decoder, must reach each module's queue
exactly as isa.decode_stream decodes it; malformed instructions stop the fetch with `error`."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import (DEP_FLAGS, INSN_BYTES, LAYOUTS, MODULES, OP_NAMES, OPCODES, Insn, IsaError,
                                      decode_stream, encode_stream, field_offsets)
from edgevit.targets.fpga.rtl.fetch import Fetch
from tests.targets.fpga.hwctl_axi_model import AxiDdr

DDR_BASE = 0x1000_0000
INSN_BASE = 0x0FA0           # the stream crosses a 4 KB page after 3 instructions


def _cfg(bus_bytes: int) -> OverlayConfig:
    return OverlayConfig(bk=16, bm=8, vl=8, act_bytes=65536, wgt_tiles=64, acc_rows=64, param_words=256,
                         bus_bytes=bus_bytes, clock_hz=100_000_000, ddr_latency_cycles=40)


def random_insn(rng: random.Random) -> Insn:
    """A legal instruction with random field values (random dependency flags its module may have)."""
    op = rng.choice(sorted(OPCODES))
    fields = {name: rng.getrandbits(width) for name, width in LAYOUTS[op]}
    illegal = {"LOAD": ("pop_prev", "push_prev"), "STORE": ("pop_next", "push_next")}.get(op, ())
    fields.update({flag: rng.getrandbits(1) for flag in DEP_FLAGS if flag not in illegal})
    return Insn(op, **fields)


def _insn_from_view(value) -> Insn:
    """Rebuild an Insn from a queue entry read through the hardware's generated layout."""
    op = OP_NAMES[value.header.op]
    view = getattr(value, op.lower())
    return Insn(op, **{name: int(getattr(view, name)) for name, _, _ in field_offsets(op)[1:]})


def run_fetch(blob: bytes, bus_bytes: int, seed: int, count: int | None = None, pop_prob: float = 0.5):
    """Fetch `count` (default: all) instructions of `blob`; returns ({module: [Insn]}, error, dispatched)."""
    cfg = _cfg(bus_bytes)
    dut = Fetch(cfg, queue_depth=4, burst_insns=4)
    mem = bytearray(INSN_BASE + len(blob) + 256)
    mem[INSN_BASE:INSN_BASE + len(blob)] = blob
    axi = AxiDdr(mem, DDR_BASE, bus_bytes, seed=seed, latency=(1, 10), ready_prob=0.6, bandwidth=0.7)
    rng = random.Random(seed)
    got = {mod: [] for mod in MODULES}
    count = len(blob) // INSN_BYTES if count is None else count
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(axi.read_process(dut.axi))
    for mod in MODULES:
        def consumer(mod=mod):
            rdy_s, data_s, en_s = (getattr(dut, f"{mod}_{s}") for s in ("rdy", "data", "en"))

            async def process(ctx):
                async for _, _, rdy, value, en in ctx.tick().sample(rdy_s, data_s, en_s):
                    if rdy and en:
                        got[mod].append(_insn_from_view(value))
                    ctx.set(en_s, rng.random() < pop_prob)
            return process
        sim.add_process(consumer())
    result = {}

    async def bench(ctx):
        ctx.set(dut.insn_base, DDR_BASE + INSN_BASE)
        ctx.set(dut.insn_count, count)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(60 * count + 200):
            await ctx.tick()
            if not ctx.get(dut.busy):
                break
        for _ in range(40):             # let the consumers drain the queues
            await ctx.tick()
        result.update(error=ctx.get(dut.error), dispatched=ctx.get(dut.dispatched), busy=ctx.get(dut.busy))
    sim.add_testbench(bench)
    sim.run()
    assert not axi.errors, axi.errors[:5]
    return got, result


def _by_module(insns):
    return {mod: [i for i in insns if i.module == mod] for mod in MODULES}


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2 ** 32), st.sampled_from([8, 16]), st.integers(1, 24))
def test_fetch_decodes_random_stream_like_isa(seed, bus_bytes, n):
    rng = random.Random(seed)
    blob = encode_stream([random_insn(rng) for _ in range(n)])
    got, res = run_fetch(blob, bus_bytes, seed)
    assert not res["error"] and not res["busy"] and res["dispatched"] == n
    assert got == _by_module(decode_stream(blob))


def test_fetch_stops_at_insn_count():
    rng = random.Random(5)
    blob = encode_stream([random_insn(rng) for _ in range(10)])
    got, res = run_fetch(blob, 8, 5, count=6)
    assert res["dispatched"] == 6 and not res["error"]
    assert got == _by_module(decode_stream(blob[:6 * INSN_BYTES]))


def _corrupt(kind: str, word: bytes) -> bytes:
    value = int.from_bytes(word, "little")
    if kind == "opcode":
        value = (value & ~0xF) | 13
    elif kind == "stray":
        value |= 1 << 250
    elif kind == "flags":                       # a LOAD with pop_prev
        value = int.from_bytes(encode_stream([Insn("LOAD", rows=1)]), "little") | 1 << 4
    elif kind == "zero":
        value = 0
    return value.to_bytes(INSN_BYTES, "little")


@pytest.mark.parametrize("kind", ["opcode", "stray", "flags", "zero"])
def test_fetch_refuses_what_isa_decode_refuses(kind):
    rng = random.Random(7)
    good = [random_insn(rng) for _ in range(5)]
    blob = bytearray(encode_stream(good + [Insn("FINISH")] + good))
    blob[5 * INSN_BYTES:6 * INSN_BYTES] = _corrupt(kind, bytes(blob[5 * INSN_BYTES:6 * INSN_BYTES]))
    with pytest.raises(IsaError):
        decode_stream(bytes(blob))
    got, res = run_fetch(bytes(blob), 16, 7)
    assert res["error"] and res["dispatched"] == 5
    assert got == _by_module(good)
