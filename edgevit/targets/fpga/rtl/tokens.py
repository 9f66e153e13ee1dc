"""The dependency tokens of docs/fpga-isa.md ("Modules, queues and dependency tokens").

`TokenCounters` holds the four 8-bit counters l2c, c2l, c2s, s2c. Each module has a `TokenPort`: it
presents the pop flags of the instruction at the head of its queue (`pop_req`), is granted (`pop_ok`,
combinational) in the cycle every counter it pops is non-zero, which decrements them; and it raises
`push_en` with its push flags once the instruction is done, which increments them. A counter at 0 is
never decremented (no underflow); one at 255 is not incremented and sets the sticky `overflow` (the
compiler keeps every counter <= 255, so this is a broken stream).

`DepGate` runs one module's queue: take the head instruction, wait for its pops, start the unit, wait
for its `done`, push, repeat. Its `token_wait` / `waiting[counter]` outputs feed the stall counters.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from edgevit.targets.fpga.isa import HEADER, MODULES

COUNTERS = ("l2c", "c2l", "c2s", "s2c")
COUNTER_MAX = 255
# (module, direction) -> the counter a pop takes from / a push gives to.
POPS = {("load", "next"): "c2l", ("compute", "prev"): "l2c", ("compute", "next"): "s2c", ("store", "prev"): "c2s"}
PUSHES = {("load", "next"): "l2c", ("compute", "prev"): "c2l", ("compute", "next"): "c2s", ("store", "prev"): "s2c"}


def header_bit(name: str) -> int:
    """Bit position of a header field (op is bits 0..3, then the one-bit dependency flags)."""
    offset = 0
    for field, width in HEADER:
        if field == name:
            return offset
        offset += width
    raise KeyError(name)


def token_port_signature() -> wiring.Signature:
    """A module's side of the token counters (`Out` = driven by the module)."""
    return wiring.Signature({"pop_req": Out(1), "pop_prev": Out(1), "pop_next": Out(1), "pop_ok": In(1),
                             "wait_prev": In(1), "wait_next": In(1),
                             "push_en": Out(1), "push_prev": Out(1), "push_next": Out(1)})


class TokenCounters(wiring.Component):
    """The four counters and their grant logic; one `TokenPort` per module (load, compute, store).

    `clear` zeroes every counter (the overlay pulses it at start); `count[name]` exposes the values."""

    def __init__(self):
        ports = {mod: In(token_port_signature()) for mod in MODULES}
        super().__init__({**ports, "clear": In(1), "overflow": Out(1)})
        self.count = {name: Signal(8, name=name) for name in COUNTERS}

    def elaborate(self, platform):
        m = Module()
        dec = {name: Signal(name=f"{name}_dec") for name in COUNTERS}
        inc = {name: Signal(name=f"{name}_inc") for name in COUNTERS}
        for mod in MODULES:
            port = getattr(self, mod)
            needed = [(flag, POPS[(mod, d)]) for d, flag in (("prev", port.pop_prev), ("next", port.pop_next))
                      if (mod, d) in POPS]
            ok = 1
            for flag, counter in needed:
                ok = ok & (~flag | (self.count[counter] != 0))
            m.d.comb += port.pop_ok.eq(port.pop_req & ok)
            for flag, counter in needed:
                m.d.comb += dec[counter].eq(port.pop_ok & flag)
            for d, flag in (("prev", port.pop_prev), ("next", port.pop_next)):
                if (mod, d) in POPS:
                    m.d.comb += getattr(port, f"wait_{d}").eq(port.pop_req & flag & (self.count[POPS[(mod, d)]] == 0))
            for d, flag in (("prev", port.push_prev), ("next", port.push_next)):
                if (mod, d) in PUSHES:
                    m.d.comb += inc[PUSHES[(mod, d)]].eq(port.push_en & flag)
        for name in COUNTERS:
            c = self.count[name]
            with m.If(self.clear):
                m.d.sync += c.eq(0)
            with m.Elif(inc[name] & ~dec[name]):
                with m.If(c == COUNTER_MAX):
                    m.d.sync += self.overflow.eq(1)
                with m.Else():
                    m.d.sync += c.eq(c + 1)
            with m.Elif(dec[name] & ~inc[name]):
                m.d.sync += c.eq(c - 1)
        with m.If(self.clear):
            m.d.sync += self.overflow.eq(0)
        return m


class GateState(enum.Enum, shape=2):
    IDLE = 0
    POP = 1
    RUN = 2


class DepGate(wiring.Component):
    """One module's sequencer between its command queue (`q_*`: a FIFO read side of 256-bit words) and its
    execution unit (`start` pulse with `insn` held until the unit's `done` pulse), doing pops and pushes
    through `tokens`. `token_wait` is high while a held instruction waits for its pops (`wait_prev` /
    `wait_next`: the counter from the previous / next module is the one at 0); `busy` from taking an
    instruction until its push."""

    def __init__(self, module: str):
        assert module in MODULES
        self.module = module
        super().__init__({"q_rdy": In(1), "q_data": In(256), "q_en": Out(1), "tokens": Out(token_port_signature()),
                          "insn": Out(256), "start": Out(1), "done": In(1), "busy": Out(1), "token_wait": Out(1),
                          "wait_prev": Out(1), "wait_next": Out(1)})

    def elaborate(self, platform):
        m = Module()
        insn, tok = self.insn, self.tokens
        state = Signal(GateState)
        m.d.comb += [self.busy.eq(state != GateState.IDLE), tok.pop_prev.eq(insn[header_bit("pop_prev")]),
                     tok.pop_next.eq(insn[header_bit("pop_next")]), tok.push_prev.eq(insn[header_bit("push_prev")]),
                     tok.push_next.eq(insn[header_bit("push_next")])]
        with m.Switch(state):
            with m.Case(GateState.IDLE):
                m.d.comb += self.q_en.eq(self.q_rdy)
                with m.If(self.q_rdy):
                    m.d.sync += [insn.eq(self.q_data), state.eq(GateState.POP)]
            with m.Case(GateState.POP):
                m.d.comb += [tok.pop_req.eq(1), self.token_wait.eq(~tok.pop_ok),
                             self.wait_prev.eq(tok.wait_prev), self.wait_next.eq(tok.wait_next)]
                with m.If(tok.pop_ok):
                    m.d.comb += self.start.eq(1)
                    m.d.sync += state.eq(GateState.RUN)
            with m.Case(GateState.RUN):
                with m.If(self.done):
                    m.d.comb += tok.push_en.eq(1)
                    m.d.sync += state.eq(GateState.IDLE)
        return m
