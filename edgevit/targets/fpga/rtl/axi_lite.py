"""The overlay's control and status registers: an AXI4-Lite slave generated from targets/fpga/registers.py.

The register file is `registers.REGISTERS` (docs/fpga-isa.md, "Control registers"), offsets and
access included: the host writes INSN_BASE, INSN_COUNT, DDR_BASE, then CTRL.start; the overlay runs
the stream and sets CTRL.done when FINISH retires (`finish`). Every read-only register is a counter:
CYCLES counts the cycles of the run, each other one the cycles its condition input (the register's
name in lower case: `stall_token`, `load_busy`, ...) is high during the run; all are zeroed by
CTRL.start and by CTRL.reset_counters. An `error` input ends the run without done. Byte strobes
apply to writes; an address outside the table answers SLVERR.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edgevit.targets.fpga.registers import AXI_LITE_BYTES, CTRL_DONE, CTRL_RESET_COUNTERS, CTRL_START, REGISTERS

ADDR_WIDTH = (AXI_LITE_BYTES - 1).bit_length()
OFFSETS = {r.name: r.offset for r in REGISTERS}
WRITABLE = tuple(r.name for r in REGISTERS if r.access == "rw" and r.name != "CTRL")
COUNTERS = tuple(r.name for r in REGISTERS if r.access == "ro")
CONDITIONS = {name: name.lower() for name in COUNTERS if name != "CYCLES"}     # counter -> its input
RESP_OKAY, RESP_SLVERR = 0b00, 0b10


def axi_lite_signature(addr_width: int = ADDR_WIDTH) -> wiring.Signature:
    """An AXI4-Lite port, 32-bit data, seen from the host (`Out` = driven by the host; the slave takes `In`)."""
    return wiring.Signature({
        "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
        "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1)})


class ControlRegs(wiring.Component):
    """The register file. Outputs: `start` (one-cycle pulse on CTRL.start while idle; also clears the
    token counters), `insn_base`, `insn_count`, `ddr_base`, `running`. Inputs: `finish` (FINISH
    retired: set done), `error` (stop the run), and one condition per counter (`CONDITIONS`)."""

    def __init__(self):
        conds = {sig: In(1) for sig in CONDITIONS.values()}
        ports = {name.lower(): Out(32) for name in WRITABLE}
        super().__init__({"bus": In(axi_lite_signature()), "start": Out(1), "running": Out(1), "done": Out(1),
                          "finish": In(1), "error": In(1), **ports, **conds})

    def elaborate(self, platform):
        m, bus = Module(), self.bus
        running, done = self.running, self.done
        counters = {name: Signal(32, name=name.lower()) for name in COUNTERS}
        rw = {name: getattr(self, name.lower()) for name in WRITABLE}
        ctrl = Signal(32)
        m.d.comb += ctrl.eq(done << (CTRL_DONE.bit_length() - 1))      # start and reset_counters read 0
        readable = {"CTRL": ctrl, **rw, **counters}

        # Write: take AW and W independently, act once both are held, then answer on B.
        aw_addr, aw_full, w_data, w_strb, w_full = Signal(ADDR_WIDTH), Signal(), Signal(32), Signal(4), Signal()
        m.d.comb += [bus.awready.eq(~aw_full & ~bus.bvalid), bus.wready.eq(~w_full & ~bus.bvalid)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_addr.eq(bus.awaddr), aw_full.eq(1)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_data.eq(bus.wdata), w_strb.eq(bus.wstrb), w_full.eq(1)]
        do_write = aw_full & w_full
        reg_addr = aw_addr & ~3
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1), bus.bresp.eq(RESP_OKAY)]
            with m.If(~Cat(*[reg_addr == off for off in OFFSETS.values()]).any()):
                m.d.sync += bus.bresp.eq(RESP_SLVERR)
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        for name, reg in rw.items():
            with m.If(do_write & (reg_addr == OFFSETS[name])):
                for b in range(4):
                    with m.If(w_strb[b]):
                        m.d.sync += reg[8 * b:8 * b + 8].eq(w_data[8 * b:8 * b + 8])
        ctrl_write = do_write & (reg_addr == OFFSETS["CTRL"]) & w_strb[0]
        m.d.comb += self.start.eq(ctrl_write & ((w_data & CTRL_START) != 0) & ~running)
        reset_counters = ctrl_write & ((w_data & CTRL_RESET_COUNTERS) != 0)

        # Run state and counters.
        with m.If(self.start):
            m.d.sync += [running.eq(1), done.eq(0)]
        with m.Elif(running & (self.finish | self.error)):
            m.d.sync += [running.eq(0), done.eq(self.finish & ~self.error)]
        for name, counter in counters.items():
            cond = running if name == "CYCLES" else running & getattr(self, CONDITIONS[name])
            with m.If(self.start | reset_counters):
                m.d.sync += counter.eq(0)
            with m.Elif(cond):
                m.d.sync += counter.eq(counter + 1)

        # Read: one outstanding read, answered the cycle after AR.
        m.d.comb += bus.arready.eq(~bus.rvalid)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [bus.rvalid.eq(1), bus.rresp.eq(RESP_SLVERR), bus.rdata.eq(0)]
            with m.Switch(bus.araddr & ~3):
                for name, off in OFFSETS.items():
                    with m.Case(off):
                        m.d.sync += [bus.rdata.eq(readable[name]), bus.rresp.eq(RESP_OKAY)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        return m
