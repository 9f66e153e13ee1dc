"""Sequential integer square root (`isqrt64` of docs/integer-semantics.md) for LayerNorm.

The binary digit-by-digit method, `steps` iterations per cycle (32 iterations in all):

    r = 0; bit = 1 << 62
    while bit: if x >= r + bit: x -= r + bit; r = (r >> 1) + bit  else: r >>= 1;  bit >>= 2

Input x < 2^62 (unsigned), result floor(sqrt(x)) < 2^31. Protocol as the divider: pulse `start`
with `x` valid; after 32 / steps busy cycles `done` pulses with `root` valid (held until the next
start).
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Mux, Signal

ISQRT_ITERATIONS = 32


class Isqrt(Elaboratable):
    """floor(sqrt(x)) of a 62-bit unsigned x, `steps` (a divisor of 32) iterations per cycle."""

    def __init__(self, steps: int = 2):
        assert ISQRT_ITERATIONS % steps == 0
        self.steps = steps
        self.cycles = ISQRT_ITERATIONS // steps
        self.start = Signal()
        self.x = Signal(62)
        self.busy = Signal()
        self.done = Signal()
        self.root = Signal(31)

    def elaborate(self, platform):
        m = Module()
        x = Signal(63)
        r = Signal(64)
        bit = Signal(63)
        count = Signal(range(self.cycles + 1))
        m.d.sync += self.done.eq(0)
        m.d.comb += self.busy.eq(count != 0)
        with m.If(self.start):
            m.d.sync += [x.eq(self.x), r.eq(0), bit.eq(1 << 62), count.eq(self.cycles)]
        with m.Elif(count != 0):
            cx, cr, cb = x, r, bit
            for i in range(self.steps):
                t = Signal(64, name=f"t{i}")
                take = Signal(name=f"take{i}")
                nx, nr = Signal(63, name=f"x{i}"), Signal(64, name=f"r{i}")
                m.d.comb += [t.eq(cr + cb), take.eq(cx >= t),
                             nx.eq(Mux(take, cx - t, cx)),
                             nr.eq(Mux(take, (cr >> 1) + cb, cr >> 1))]
                cx, cr, cb = nx, nr, cb >> 2
            m.d.sync += [x.eq(cx), r.eq(cr), bit.eq(cb), count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += self.done.eq(1)
        m.d.comb += self.root.eq(r)
        return m
