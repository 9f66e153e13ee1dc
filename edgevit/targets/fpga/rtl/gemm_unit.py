"""The GEMM unit: executes GEMM (3) and TILE (4) instructions (docs/fpga-isa.md) against the ACT,
WGT and ACC scratchpads, with a start / busy / done handshake.

The unit takes the raw 256-bit instruction (`insn`) and reads its fields through `insn_layout(op)`,
an Amaranth struct view generated from `isa.LAYOUTS` (no decoding logic: the fields sit where
`isa.encode` put them). Raise `start` for one cycle with `insn` valid while `ready` is high; the unit
latches it, raises `busy`, and raises `done` for one cycle when that instruction's last result is
written. `busy` stays high while any instruction is in the unit (issuing or in the array pipeline);
it falls the cycle after the last `done`.

GEMM: in the start cycle the tile is read from WGT; then one step a cycle (ACT read of `bk` bytes at
the running input address, then the array's 3-stage pipeline): `done` comes `count + GEMM_OVERHEAD`
(= 4) cycles after `start`. Back-to-back GEMMs overlap: `ready` is also high in the last issue cycle
of a GEMM (and while its pipeline drains) when the instruction on `insn` is a GEMM, so the next GEMM's
tile fetch happens under the last step and its first step follows without a bubble (a GEMM every
`count` cycles). The array pipeline is continuous across instruction boundaries, so its ACC
read-after-write forwarding covers steps of different instructions (acc_stride 0, a GEMM reading the
row the previous one is still writing), and the tile register switches exactly between the last step
of one GEMM and the first of the next. Each step carries its own reset / unsigned / ACC row; `done`
pulses stay one per instruction and in order (a `last step` flag travels with the pipeline).
TILE and other opcodes start only when `ready` with the pipeline empty (the unit is idle): TILE reads
the source rows from ACT one a cycle into an assembly register (`bm` reads, or `bk * ceil(bm/bk)` when
transposed), then writes the whole tile to WGT in one cycle. Other opcodes finish at once without
effect (the compute module routes only GEMM / TILE here).

`GemmCore` wires a unit to its own scratchpads, and leaves the ports the other units need (ACT
write, WGT write, ACC read 1) on the outside: the top level, the simulators and tests use it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data

from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import HEADER, INSN_BITS, LAYOUTS, OPCODES
from edgevit.targets.fpga.rtl.gemm_array import LATENCY, GemmArray
from edgevit.targets.fpga.rtl.scratchpad import (ACC_BITS, ACT_ADDR_BITS, TILE_BITS, AccScratchpad, ActScratchpad,
                                                 ReadPort, WgtScratchpad, WritePort)

GEMM_OVERHEAD = 1 + LATENCY  # start (+ tile fetch) + ACT read latency + array pipeline; done is one cycle later


def insn_layout(op: str) -> data.StructLayout:
    """The bit layout of instruction `op` (header then its fields from bit 0, then `_pad` up to INSN_BITS),
    as an Amaranth struct: `data.View(insn_layout("GEMM"), insn)["count"]` is GEMM's count field."""
    fields = {name: width for name, width in HEADER + LAYOUTS[op]}
    return data.StructLayout({**fields, "_pad": INSN_BITS - sum(fields.values())})


class GemmUnit(Elaboratable):
    """GEMM / TILE executor. Control: insn (INSN_BITS), start (only while `ready`) -> busy, done (one pulse
    per instruction, in order), ready (may start `insn` this cycle: idle, or a GEMM after a GEMM in its
    last issue cycle / drain). Memory requests:
    act_rd (byte address, bk bytes back a cycle later), wgt_rd, wgt_wr (row mask), acc_rd, acc_wr;
    connect them to the scratchpads (`GemmCore` does)."""

    def __init__(self, cfg: OverlayConfig):
        self.cfg = cfg
        bm, bk = cfg.bm, cfg.bk
        self.insn = Signal(INSN_BITS)
        self.start = Signal()
        self.busy = Signal()
        self.done = Signal()
        self.ready = Signal()
        self.act_rd = ReadPort(ACT_ADDR_BITS, 8 * bk, "u_act_rd")
        self.wgt_rd = ReadPort(TILE_BITS, 8 * bm * bk, "u_wgt_rd")
        self.wgt_wr = WritePort(TILE_BITS, 8 * bm * bk, bm, "u_wgt_wr")
        self.acc_rd = ReadPort(ACC_BITS, 32 * bm, "u_acc_rd")
        self.acc_wr = WritePort(ACC_BITS, 32 * bm, 1, "u_acc_wr")
        self.array = GemmArray(bm, bk, ACC_BITS)

    def elaborate(self, platform):
        """The control FSM, address generators and the TILE assembly register."""
        m = Module()
        m.submodules.array = arr = self.array
        bm, bk = self.cfg.bm, self.cfg.bk
        nch = -(-bm // bk)  # ACT reads per transposed source row

        ins = Signal(INSN_BITS)
        g, t = data.View(insn_layout("GEMM"), ins), data.View(insn_layout("TILE"), ins)
        g_in, t_in = data.View(insn_layout("GEMM"), self.insn), data.View(insn_layout("TILE"), self.insn)

        # GEMM state: running addresses, steps left, the step whose ACT read is in flight (with its own
        # reset / unsigned / ACC row, so that steps of consecutive GEMMs can share the pipeline).
        inp_ptr, acc_ptr = Signal(ACT_ADDR_BITS), Signal(ACC_BITS)
        left = Signal(16)
        first = Signal()
        s_valid, s_acc, s_reset, s_uns = Signal(), Signal(ACC_BITS), Signal(), Signal()
        issue, fin = Signal(), Signal()  # a step issued this cycle; this cycle ends a GEMM's issue
        fins = [Signal(name=f"fin{i}") for i in range(1, LATENCY + 2)]  # fin delayed 1..LATENCY+1 (= done)
        m.d.sync += [s_valid.eq(issue), fins[0].eq(fin)] + [fins[i].eq(fins[i - 1]) for i in range(1, len(fins))]
        with m.If(issue):
            m.d.sync += [s_acc.eq(acc_ptr), s_reset.eq(g["reset"]), s_uns.eq(g["unsigned"])]
        in_flight = s_valid | arr.busy | Cat(*fins).any()   # GEMM work still in the pipeline
        gemm_next = g_in["op"] == OPCODES["GEMM"]
        accept = Signal()
        m.d.comb += accept.eq(self.start & self.ready)

        # ACC and array wiring.
        m.d.comb += [self.acc_rd.addr.eq(arr.acc_rd_addr), self.acc_rd.en.eq(arr.acc_rd_en),
                     arr.acc_rd_data.eq(self.acc_rd.data),
                     self.acc_wr.addr.eq(arr.acc_wr_addr), self.acc_wr.data.eq(arr.acc_wr_data),
                     self.acc_wr.en.eq(arr.acc_wr_en),
                     arr.w_tile.eq(self.wgt_rd.data),
                     arr.in_valid.eq(s_valid), arr.in_data.eq(self.act_rd.data), arr.in_acc.eq(s_acc),
                     arr.in_reset.eq(s_reset), arr.in_unsigned.eq(s_uns)]

        def start_gemm():
            """Take the GEMM on `insn`: fetch its tile now, issue its first step next cycle."""
            m.d.comb += [self.wgt_rd.addr.eq(g_in["wgt"]), self.wgt_rd.en.eq(1)]
            m.d.sync += [ins.eq(self.insn), inp_ptr.eq(g_in["inp"]), acc_ptr.eq(g_in["acc"]),
                         left.eq(g_in["count"]), first.eq(1)]
            m.next = "G_RUN"

        # TILE state: source pointers, counters, the read in flight, the assembly registers.
        row_ptr, rd_ptr = Signal(ACT_ADDR_BITS), Signal(ACT_ADDR_BITS)
        outer, chunk = Signal(8), Signal(range(max(nch, 2)))
        d_valid, d_outer, d_chunk, d_last = Signal(), Signal(8), Signal(range(max(nch, 2))), Signal()
        tile = Signal(8 * bm * bk)
        col = Signal(8 * nch * bk)
        t_issue, tile_done = Signal(), Signal()
        m.d.sync += d_valid.eq(t_issue)

        # TILE data path: the read issued last cycle arrives; mask it and shift it into the tile.
        with m.If(d_valid):
            src = self.act_rd.data
            with m.If(~t["transpose"]):  # a tile row m = d_outer: bytes k < cols
                keep = Cat(*[(k < t["cols"]) & (d_outer < t["rows"]) for k in range(bk)])
                row = Cat(*[Mux(keep[k], src.word_select(k, 8), 0) for k in range(bk)])
                m.d.sync += tile.eq(Cat(tile[8 * bk:], row))
            with m.Else():  # bytes m = d_chunk*bk + j of tile column k = d_outer: m < cols
                part = Cat(*[Mux((d_chunk * bk + j < t["cols"]) & (d_outer < t["rows"]), src.word_select(j, 8), 0)
                             for j in range(bk)])
                column = Cat(col[8 * bk:], part)
                m.d.sync += col.eq(column)
                with m.If(d_last):
                    m.d.sync += tile.eq(Cat(*[Cat(tile.word_select(r, 8 * bk)[8:], column.word_select(r, 8))
                                              for r in range(bm)]))

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.ready.eq(~in_flight | gemm_next)
                with m.If(accept):
                    m.d.sync += ins.eq(self.insn)
                    with m.Switch(g_in["op"]):
                        with m.Case(OPCODES["GEMM"]):
                            start_gemm()
                        with m.Case(OPCODES["TILE"]):
                            m.d.sync += [row_ptr.eq(t_in["src"]), rd_ptr.eq(t_in["src"]), outer.eq(0), chunk.eq(0)]
                            m.next = "T_READ"
                        with m.Default():
                            m.next = "DONE"
            with m.State("G_RUN"):
                m.d.comb += arr.w_load.eq(first)
                m.d.sync += first.eq(0)
                with m.If(left != 0):
                    m.d.comb += [issue.eq(1), self.act_rd.addr.eq(inp_ptr), self.act_rd.en.eq(1)]
                    m.d.sync += [inp_ptr.eq(inp_ptr + g["inp_stride"]),
                                 acc_ptr.eq(acc_ptr + g["acc_stride"]), left.eq(left - 1)]
                with m.If(left <= 1):
                    m.d.comb += [fin.eq(1), self.ready.eq(gemm_next)]
                    with m.If(accept):
                        start_gemm()
                    with m.Else():
                        m.next = "IDLE"
            with m.State("T_READ"):
                n_outer = Mux(t["transpose"], bk, bm)
                last_chunk = Mux(t["transpose"], chunk == nch - 1, 1)
                m.d.comb += [t_issue.eq(1), self.act_rd.addr.eq(rd_ptr), self.act_rd.en.eq(outer < t["rows"])]
                m.d.sync += [d_outer.eq(outer), d_chunk.eq(chunk), d_last.eq(last_chunk)]
                with m.If(last_chunk):
                    m.d.sync += [chunk.eq(0), outer.eq(outer + 1), row_ptr.eq(row_ptr + t["stride"]),
                                 rd_ptr.eq(row_ptr + t["stride"])]
                    with m.If(outer == n_outer - 1):
                        m.next = "T_TAIL"
                with m.Else():
                    m.d.sync += [chunk.eq(chunk + 1), rd_ptr.eq(rd_ptr + bk)]
            with m.State("T_TAIL"):
                m.next = "T_WRITE"
            with m.State("T_WRITE"):
                m.d.comb += [self.wgt_wr.addr.eq(t["wgt"]), self.wgt_wr.data.eq(tile),
                             self.wgt_wr.en.eq(Const((1 << bm) - 1, bm)), tile_done.eq(1)]
                m.next = "IDLE"
            with m.State("DONE"):
                m.d.comb += tile_done.eq(1)
                m.next = "IDLE"
        m.d.comb += [self.busy.eq(~fsm.ongoing("IDLE") | in_flight), self.done.eq(fins[-1] | tile_done)]
        return m


class GemmCore(Elaboratable):
    """A GemmUnit with its ACT, WGT and ACC scratchpads. Outside ports: the unit's insn / start / busy /
    done / ready; `act_wr` (ACT word write), `wgt_wr` (WGT row-masked write; the unit's TILE write wins when
    both write in one cycle), `acc_rd` (ACC read port 1, for the vector unit or a testbench).
    `act_init` / `wgt_init` / `acc_init` preload the memories (simulation)."""

    def __init__(self, cfg: OverlayConfig, act_init: bytes | None = None, wgt_init: list[bytes] | None = None,
                 acc_init: list[list[int]] | None = None):
        self.cfg = cfg
        self.unit = GemmUnit(cfg)
        self.act = ActScratchpad(cfg, read_ports=1, init=act_init)
        self.wgt = WgtScratchpad(cfg, init=wgt_init)
        self.acc = AccScratchpad(cfg, read_ports=2, init=acc_init)
        self.insn = Signal(INSN_BITS)
        self.start = Signal()
        self.busy = Signal()
        self.done = Signal()
        self.ready = Signal()
        self.act_wr = WritePort(len(self.act.write.addr), 8 * cfg.bk, cfg.bk, "act_wr")
        self.wgt_wr = WritePort(TILE_BITS, 8 * cfg.bm * cfg.bk, cfg.bm, "wgt_wr")
        self.acc_rd = ReadPort(ACC_BITS, 32 * cfg.bm, "acc_rd")

    def ports(self) -> list[Signal]:
        """The top-level ports, for Verilog conversion."""
        return [self.insn, self.start, self.busy, self.done, self.ready, self.act_wr.addr, self.act_wr.data, self.act_wr.en,
                self.wgt_wr.addr, self.wgt_wr.data, self.wgt_wr.en, self.acc_rd.addr, self.acc_rd.en,
                self.acc_rd.data]

    def elaborate(self, platform):
        """Wire the unit's requests to the memories."""
        m = Module()
        u = m.submodules.unit = self.unit
        m.submodules.act, m.submodules.wgt, m.submodules.acc = self.act, self.wgt, self.acc
        act_rd, acc_gemm, acc_ext = self.act.read[0], self.acc.read[0], self.acc.read[1]
        m.d.comb += [u.insn.eq(self.insn), u.start.eq(self.start), self.busy.eq(u.busy), self.done.eq(u.done),
                     self.ready.eq(u.ready),
                     act_rd.addr.eq(u.act_rd.addr), act_rd.en.eq(u.act_rd.en), u.act_rd.data.eq(act_rd.data),
                     self.wgt.read.addr.eq(u.wgt_rd.addr), self.wgt.read.en.eq(u.wgt_rd.en),
                     u.wgt_rd.data.eq(self.wgt.read.data),
                     acc_gemm.addr.eq(u.acc_rd.addr), acc_gemm.en.eq(u.acc_rd.en), u.acc_rd.data.eq(acc_gemm.data),
                     self.acc.write.addr.eq(u.acc_wr.addr), self.acc.write.data.eq(u.acc_wr.data),
                     self.acc.write.en.eq(u.acc_wr.en),
                     acc_ext.addr.eq(self.acc_rd.addr), acc_ext.en.eq(self.acc_rd.en), self.acc_rd.data.eq(acc_ext.data),
                     self.act.write.addr.eq(self.act_wr.addr), self.act.write.data.eq(self.act_wr.data),
                     self.act.write.en.eq(self.act_wr.en)]
        src = Mux(u.wgt_wr.en.any(), 1, 0)
        for name in ("addr", "data", "en"):
            m.d.comb += getattr(self.wgt.write, name).eq(Mux(src, getattr(u.wgt_wr, name), getattr(self.wgt_wr, name)))
        return m
