"""Sequential unsigned divider for the vector unit's per-row reciprocals (LayerNorm, softmax).

Restoring division, `steps` quotient bits per cycle (1: radix 2, 2: radix 4 as two chained
restoring steps, ...; quot_bits a multiple of steps). The caller guarantees the quotient fits `quot_bits` bits, i.e.
`dividend >> quot_bits < divisor`, so only `quot_bits` steps are needed:

    LayerNorm: (2^61 + (q >> 1)) / q, q in [2^30, 2^31)       quotient <= 2^31 -> quot_bits 32
    softmax:   ((255 << 40) + (S >> 1)) / S, S >= 2^F           quotient < 2^(48 - F)

Protocol: pulse `start` with `dividend`, `divisor` valid in that cycle; `busy` is high for
ceil(quot_bits / steps) cycles, then `done` pulses for one cycle with `quotient` and `remainder`
valid (they stay until the next start). A zero divisor gives an all-ones quotient.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal


class Divider(Elaboratable):
    """Unsigned `dividend_bits` / `divisor_bits` -> `quot_bits`-bit quotient, `steps` bits a cycle."""

    def __init__(self, dividend_bits: int = 64, divisor_bits: int = 32, quot_bits: int = 64, steps: int = 2):
        assert 1 <= quot_bits <= dividend_bits and steps >= 1 and quot_bits % steps == 0
        self.dividend_bits, self.divisor_bits, self.quot_bits, self.steps = dividend_bits, divisor_bits, quot_bits, steps
        self.cycles = -(-quot_bits // steps)
        self.start = Signal()
        self.dividend = Signal(dividend_bits)
        self.divisor = Signal(divisor_bits)
        self.busy = Signal()
        self.done = Signal()
        self.quotient = Signal(quot_bits)
        self.remainder = Signal(divisor_bits)

    def elaborate(self, platform):
        m = Module()
        qb, db = self.quot_bits, self.divisor_bits
        rem = Signal(db + 1)                       # < divisor between steps
        low = Signal(qb)                           # dividend bits still to shift in; quotient shifts in
        div = Signal(db)
        count = Signal(range(self.cycles + 1))
        m.d.sync += self.done.eq(0)
        m.d.comb += self.busy.eq(count != 0)
        with m.If(self.start):
            m.d.sync += [rem.eq(self.dividend >> qb), low.eq(self.dividend[:qb]), div.eq(self.divisor),
                         count.eq(self.cycles)]
        with m.Elif(count != 0):
            r, lo = rem, low
            for _ in range(self.steps):
                shifted = Cat(lo[-1], r)[:db + 2]
                ge = shifted >= div
                r = Signal(db + 1, name="rem_step")
                nlo = Signal(qb, name="low_step")
                m.d.comb += nlo.eq(Cat(ge, lo[:-1]))
                m.d.comb += r.eq(mux_sub(shifted, div, ge))
                lo = nlo
            m.d.sync += [rem.eq(r), low.eq(lo), count.eq(count - 1)]
            with m.If(count == 1):
                m.d.sync += self.done.eq(1)
        m.d.comb += [self.quotient.eq(low), self.remainder.eq(rem)]
        return m


def mux_sub(a, b, take):
    """a - b when `take`, else a (one restoring-division step's remainder)."""
    return Mux(take, a - b, a)
