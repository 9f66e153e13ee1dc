"""Control pieces of the overlay's top level (docs/fpga-isa.md): the instruction fetcher, the
dependency-token counters, the AXI4 read-channel arbiter and the AXI4-Lite register slave.

- `InsnFetch`: reads INSN_COUNT instructions from INSN_BASE in INCR bursts of up to `max_insns`
  instructions (never crossing 4 KB), several bursts in flight, into an instruction FIFO whose room
  is reserved before each burst; `insn` / `valid` / `ready` present the FIFO's head in stream order.
- `Tokens`: the four 8-bit counters l2c, c2l, c2s, s2c; each has one pushing and one popping module,
  `inc_*` / `dec_*` pulses update it in the same cycle (a pop and a push together leave it as is).
- `ReadArbiter`: the fetcher and the LOAD engine share the AXI4 read channels: AR requests are
  granted one burst at a time (held while AR is valid and not accepted), and the owner of each
  accepted burst goes into a FIFO, so R beats (in order, one ID) are routed back to their owner.
- `AxiLiteRegs`: the register file of registers.py (CTRL, INSN_BASE, INSN_COUNT, DDR_BASE, and the
  read-only counters) behind an AXI4-Lite slave.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import fifo

from edgevit.targets.fpga.isa import INSN_BYTES
from edgevit.targets.fpga.registers import CTRL_DONE, CTRL_RESET_COUNTERS, CTRL_START, REGISTERS
from edgevit.targets.fpga.rtl.axi_dma import BURST_INCR, PAGE_BYTES
from edgevit.targets.fpga.rtl.overlay_mem import log2

TOKEN_MAX = 255  # a module never pushes a counter past this (docs/fpga-isa.md)


class AxiRead:
    """The AR and R signals of one AXI4 read master (names as the Verilog ports)."""

    def __init__(self, bus_bytes: int, prefix: str):
        p = prefix
        self.araddr, self.arlen, self.arsize, self.arburst = (Signal(32, name=f"{p}araddr"), Signal(8, name=f"{p}arlen"),
                                                              Signal(3, name=f"{p}arsize"), Signal(2, name=f"{p}arburst"))
        self.arvalid, self.arready = Signal(name=f"{p}arvalid"), Signal(name=f"{p}arready")
        self.rdata, self.rresp = Signal(8 * bus_bytes, name=f"{p}rdata"), Signal(2, name=f"{p}rresp")
        self.rlast, self.rvalid, self.rready = Signal(name=f"{p}rlast"), Signal(name=f"{p}rvalid"), Signal(name=f"{p}rready")


class InsnFetch(Elaboratable):
    """Fetch `count` instructions from byte address `base` after `start`; output FIFO head `insn`/`valid`,
    popped by `ready`. `axi`: an AxiRead master. `error` latches an AXI error response."""

    def __init__(self, bus_bytes: int, max_insns: int = 16, depth: int = 32):
        assert depth >= max_insns and INSN_BYTES % bus_bytes == 0
        self.B, self.max_insns, self.depth = bus_bytes, max_insns, depth
        self.start, self.base, self.count = Signal(), Signal(32), Signal(32)
        self.axi = AxiRead(bus_bytes, "f_")
        self.insn, self.valid, self.ready = Signal(8 * INSN_BYTES), Signal(), Signal()
        self.error = Signal()

    def elaborate(self, platform):
        """Address / count registers, credit-checked burst issue, beat assembly into the FIFO."""
        m = Module()
        B, beats = self.B, INSN_BYTES // self.B
        m.submodules.q = q = fifo.SyncFIFOBuffered(width=8 * INSN_BYTES, depth=self.depth)
        pc, left = Signal(32), Signal(32)
        inflight = Signal(range(self.depth + 1))
        to_page = Signal(range(PAGE_BYTES // INSN_BYTES + 1))
        m.d.comb += to_page.eq((PAGE_BYTES - pc[:12]) >> log2(INSN_BYTES, "insn bytes"))
        n = Signal(range(self.max_insns + 1))
        cap = Mux(to_page < self.max_insns, to_page, self.max_insns)
        m.d.comb += n.eq(Mux(left < cap, left, cap))
        room = (q.level + inflight + n) <= self.depth
        a = self.axi
        m.d.comb += [a.araddr.eq(pc), a.arlen.eq(n * beats - 1), a.arsize.eq(log2(B, "bus_bytes")),
                     a.arburst.eq(BURST_INCR), a.arvalid.eq((left != 0) & room)]
        ar_fire = a.arvalid & a.arready
        # Beat assembly: `beats` bus words make one instruction.
        asm, nbeat = Signal(8 * INSN_BYTES), Signal(range(beats + 1))
        m.d.comb += a.rready.eq(1)
        r_fire = a.rvalid & a.rready
        full_insn = Cat(asm[8 * B:], a.rdata) if beats > 1 else a.rdata
        insn_done = r_fire & (nbeat == beats - 1)
        with m.If(r_fire):
            m.d.sync += [asm.eq(full_insn), nbeat.eq(Mux(nbeat == beats - 1, 0, nbeat + 1))]
            with m.If(a.rresp[1]):
                m.d.sync += self.error.eq(1)
        m.d.comb += [q.w_en.eq(insn_done), q.w_data.eq(full_insn)]
        m.d.sync += inflight.eq(inflight + Mux(ar_fire, n, 0) - insn_done)
        with m.If(self.start):
            m.d.sync += [pc.eq(self.base), left.eq(self.count), nbeat.eq(0), self.error.eq(0)]
        with m.Elif(ar_fire):
            m.d.sync += [pc.eq(pc + n * INSN_BYTES), left.eq(left - n)]
        m.d.comb += [self.insn.eq(q.r_data), self.valid.eq(q.r_rdy), q.r_en.eq(self.ready)]
        return m


class Tokens(Elaboratable):
    """Counters l2c, c2l, c2s, s2c (8 bits): `inc[name]` / `dec[name]` pulses, `value[name]`; `clear` zeroes."""

    NAMES = ("l2c", "c2l", "c2s", "s2c")

    def __init__(self):
        self.value = {n: Signal(8, name=f"tok_{n}") for n in self.NAMES}
        self.inc = {n: Signal(name=f"tok_{n}_inc") for n in self.NAMES}
        self.dec = {n: Signal(name=f"tok_{n}_dec") for n in self.NAMES}
        self.clear = Signal()

    def elaborate(self, platform):
        """value += inc - dec each cycle (the modules never pop an empty or push a full counter)."""
        m = Module()
        for n in self.NAMES:
            v = self.value[n]
            with m.If(self.clear):
                m.d.sync += v.eq(0)
            with m.Elif(self.inc[n] & ~self.dec[n]):
                m.d.sync += v.eq(v + 1)
            with m.Elif(self.dec[n] & ~self.inc[n]):
                m.d.sync += v.eq(v - 1)
        return m


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


class AxiLiteRegs(Elaboratable):
    """The registers of registers.py behind an AXI4-Lite slave (`s_axil_*` ports). Outputs: `start`
    (pulse on a CTRL write of bit 0), `reset_counters` (pulse), `insn_base`, `insn_count`, `ddr_base`.
    Inputs: `done` (CTRL bit 1) and `counters[name]` (the read-only registers)."""

    def __init__(self):
        p = "s_axil_"
        self.awaddr, self.awvalid, self.awready = Signal(8, name=f"{p}awaddr"), Signal(name=f"{p}awvalid"), Signal(name=f"{p}awready")
        self.wdata, self.wstrb = Signal(32, name=f"{p}wdata"), Signal(4, name=f"{p}wstrb")
        self.wvalid, self.wready = Signal(name=f"{p}wvalid"), Signal(name=f"{p}wready")
        self.bresp, self.bvalid, self.bready = Signal(2, name=f"{p}bresp"), Signal(name=f"{p}bvalid"), Signal(name=f"{p}bready")
        self.araddr, self.arvalid, self.arready = Signal(8, name=f"{p}araddr"), Signal(name=f"{p}arvalid"), Signal(name=f"{p}arready")
        self.rdata, self.rresp = Signal(32, name=f"{p}rdata"), Signal(2, name=f"{p}rresp")
        self.rvalid, self.rready = Signal(name=f"{p}rvalid"), Signal(name=f"{p}rready")
        self.start, self.reset_counters, self.done = Signal(), Signal(), Signal()
        self.insn_base, self.insn_count, self.ddr_base = Signal(32), Signal(32), Signal(32)
        self.counters = {r.name: Signal(32, name=f"cnt_{r.name.lower()}") for r in REGISTERS if r.access == "ro"}

    def elaborate(self, platform):
        """Write: AW and W together, then B. Read: AR, then R with the register's value."""
        m = Module()
        rw = {"INSN_BASE": self.insn_base, "INSN_COUNT": self.insn_count, "DDR_BASE": self.ddr_base}
        offs = {r.name: r.offset for r in REGISTERS}
        take = self.awvalid & self.wvalid & ~self.bvalid
        m.d.comb += [self.awready.eq(take), self.wready.eq(take)]
        with m.If(take):
            m.d.sync += self.bvalid.eq(1)
            with m.Switch(self.awaddr[2:]):
                for name, sig in rw.items():
                    with m.Case(offs[name] >> 2):
                        m.d.sync += sig.eq(self.wdata)
                with m.Case(offs["CTRL"] >> 2):
                    m.d.comb += [self.start.eq(self.wdata & CTRL_START != 0),
                                 self.reset_counters.eq(self.wdata & CTRL_RESET_COUNTERS != 0)]
        with m.Elif(self.bvalid & self.bready):
            m.d.sync += self.bvalid.eq(0)
        m.d.comb += self.arready.eq(~self.rvalid)
        with m.If(self.arvalid & ~self.rvalid):
            m.d.sync += [self.rvalid.eq(1), self.rdata.eq(0)]
            with m.Switch(self.araddr[2:]):
                for name, sig in {**rw, **self.counters}.items():
                    with m.Case(offs[name] >> 2):
                        m.d.sync += self.rdata.eq(sig)
                with m.Case(offs["CTRL"] >> 2):
                    m.d.sync += self.rdata.eq(Mux(self.done, CTRL_DONE, 0))
        with m.Elif(self.rvalid & self.rready):
            m.d.sync += self.rvalid.eq(0)
        return m
