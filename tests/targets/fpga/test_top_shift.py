"""overlay_mem.shift_units (the log-stage byte shifter of the scratchpads' unaligned ports) equals the
plain shift, and the overlay's Verilog has no per-word zero init (rtl/overlay.v stays small and fast)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("amaranth")


def _eval(width: int, amount_bits: int, unit: int, left: bool, x: int, amount: int) -> int:
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    from edgevit.targets.fpga.rtl.overlay_mem import shift_units

    m = Module()
    xs, a, out = Signal(width), Signal(amount_bits), Signal(width)
    m.d.comb += out.eq(shift_units(xs, a, unit, left))
    got = []

    async def bench(ctx):
        ctx.set(xs, x)
        ctx.set(a, amount)
        got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got[0]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([(16, 2, 8), (64, 3, 8), (24, 4, 1), (128, 4, 8), (8, 5, 1)]), st.booleans(), st.data())
def test_shift_units_equals_the_plain_shift(shape, left, data) -> None:
    width, amount_bits, unit = shape
    x = data.draw(st.integers(0, (1 << width) - 1))
    amount = data.draw(st.integers(0, (1 << amount_bits) - 1))
    want = ((x << (amount * unit)) if left else (x >> (amount * unit))) & ((1 << width) - 1)
    assert _eval(width, amount_bits, unit, left, x, amount) == want


def test_a_zero_memory_gets_no_init_but_a_preloaded_one_does() -> None:
    from amaranth.hdl import Elaboratable, Module, Signal
    from amaranth.lib.memory import Memory

    from edgevit.targets.fpga.rtl.overlay import _no_zero_memory_init
    from edgevit.targets.fpga.rtl.verilator import ToolMissing, to_verilog

    class Two(Elaboratable):
        def __init__(self):
            self.a, self.da, self.db = Signal(4), Signal(16), Signal(16)

        def elaborate(self, platform):
            m = Module()
            m.submodules.zero = zero = Memory(shape=16, depth=64, init=[])
            m.submodules.pre = pre = Memory(shape=16, depth=4, init=[1, 2, 3, 0xBEEF])
            rz, rp = zero.read_port(), pre.read_port()
            m.d.comb += [rz.addr.eq(self.a), rp.addr.eq(self.a), self.da.eq(rz.data), self.db.eq(rp.data)]
            return m

    top = Two()
    try:
        with _no_zero_memory_init():
            text = to_verilog(top, [top.a, top.da, top.db], "two")
        two = Two()
        plain = to_verilog(two, [two.a, two.da, two.db], "two")
    except ToolMissing as e:
        pytest.skip(str(e))
    assert "16'hbeef" in text.lower() and text.count("initial") == 1
    assert plain.count("initial") == 2 and "[63] = 16'h0000" in plain
