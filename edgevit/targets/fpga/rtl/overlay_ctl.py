"""The overlay's AXI4 read-channel arbiter (the other control blocks are fetch.py, tokens.py, axi_lite.py).

- `AxiRead`: the AR and R signals of one AXI4 read master, named as the Verilog ports.
- `ReadArbiter`: the fetcher and the LOAD engine share the AXI4 read channels: AR requests are
  granted one burst at a time (held while AR is valid and not accepted), and the owner of each
  accepted burst goes into a FIFO, so R beats (in order, one ID) are routed back to their owner.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib import fifo


class AxiRead:
    """The AR and R signals of one AXI4 read master (names as the Verilog ports)."""

    def __init__(self, bus_bytes: int, prefix: str):
        p = prefix
        self.araddr, self.arlen, self.arsize, self.arburst = (Signal(32, name=f"{p}araddr"), Signal(8, name=f"{p}arlen"),
                                                              Signal(3, name=f"{p}arsize"), Signal(2, name=f"{p}arburst"))
        self.arvalid, self.arready = Signal(name=f"{p}arvalid"), Signal(name=f"{p}arready")
        self.rdata, self.rresp = Signal(8 * bus_bytes, name=f"{p}rdata"), Signal(2, name=f"{p}rresp")
        self.rlast, self.rvalid, self.rready = Signal(name=f"{p}rlast"), Signal(name=f"{p}rvalid"), Signal(name=f"{p}rready")


class ReadArbiter(Elaboratable):
    """Two AxiRead masters (`masters[0]` fetch, `masters[1]` LOAD) onto one AxiRead port `bus`, with up
    to `outstanding` bursts in flight; R beats go back to the owner of the oldest burst."""

    def __init__(self, bus_bytes: int, outstanding: int = 8):
        self.masters = [AxiRead(bus_bytes, "arb0_"), AxiRead(bus_bytes, "arb1_")]
        self.bus = AxiRead(bus_bytes, "m_axi_")
        self.outstanding = outstanding

    def elaborate(self, platform):
        """Grant register (fixed priority LOAD, held during a pending AR), owner FIFO, R routing."""
        m = Module()
        m.submodules.own = own = fifo.SyncFIFO(width=1, depth=self.outstanding)
        bus, f, ld = self.bus, self.masters[0], self.masters[1]
        grant, locked = Signal(), Signal()  # locked: the granted master's AR is pending
        sel = Signal()
        m.d.comb += sel.eq(Mux(locked, grant, Mux(ld.arvalid, 1, 0)))
        src = [f, ld]
        for name in ("araddr", "arlen", "arsize", "arburst"):
            m.d.comb += getattr(bus, name).eq(Mux(sel, getattr(ld, name), getattr(f, name)))
        can = own.w_rdy
        m.d.comb += bus.arvalid.eq(Mux(sel, ld.arvalid, f.arvalid) & can)
        m.d.comb += [f.arready.eq(~sel & bus.arready & can), ld.arready.eq(sel & bus.arready & can)]
        fire = bus.arvalid & bus.arready
        m.d.sync += [grant.eq(sel), locked.eq(bus.arvalid & ~bus.arready)]
        m.d.comb += [own.w_en.eq(fire), own.w_data.eq(sel)]
        owner = own.r_data[0]
        for i, s in enumerate(src):
            mine = own.r_rdy & (owner == i)
            m.d.comb += [s.rdata.eq(bus.rdata), s.rresp.eq(bus.rresp), s.rlast.eq(bus.rlast),
                         s.rvalid.eq(bus.rvalid & mine)]
        m.d.comb += bus.rready.eq(own.r_rdy & Mux(owner, ld.rready, f.rready))
        m.d.comb += own.r_en.eq(bus.rvalid & bus.rready & bus.rlast)
        return m
