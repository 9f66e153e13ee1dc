"""The small vector instructions (docs/fpga-isa.md): COPY, LUT and MEANPOOL.

- COPY: `rows` rows of `row_bytes` bytes, `vl` bytes a cycle (read, then write one cycle later).
- LUT: y = table[x + 128] on int8, the 256-entry table (64 PARAM words at `param`) loaded into a
  `vl`-port ByteTable first; `vl` elements a cycle.
- MEANPOOL: per column, acc_d = sum_n x[n, d] - N in_zero_point, y_d = requantize(acc_d, M, shift,
  zp) clamped to [qmin, qmax] (header: in_zero_point, multiplier, shift, zp, qmin, qmax); column
  blocks of `ne` elements outer, the N rows inner (one read a cycle), then 3 cycles to rescale and
  write the block.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal, signed

from edgevit.targets.fpga.isa import LAYOUTS
from edgevit.targets.fpga.rtl.vector_common import (ByteTable, VecPorts, byte_mask, clamp, delay, field_signals,
                                                    log2_size, min_u, pack_lanes, rshift_round, unpack_lanes)


class _RowStream:
    """A row-major walk over `rows` x `length` units, `step` units a beat: `issue` advances it."""

    def __init__(self, m, f_rows, length, step, src0, src_stride, dst0, dst_stride):
        self.row, self.col = Signal(16, name="w_row"), Signal(16, name="w_col")
        self.src, self.dst = Signal(24, name="w_src"), Signal(24, name="w_dst")
        self.issue = Signal(name="w_issue")
        self.nv = Signal(16, name="w_nv")
        self.done = Signal(name="w_done")
        self.reset = Signal(name="w_reset")
        m.d.comb += [self.nv.eq(min_u(step, length - self.col)), self.done.eq((self.row == f_rows) | (length == 0))]
        with m.If(self.reset):
            m.d.sync += [self.row.eq(0), self.col.eq(0), self.src.eq(src0), self.dst.eq(dst0)]
        with m.Elif(self.issue):
            with m.If(self.col + step >= length):
                m.d.sync += [self.col.eq(0), self.row.eq(self.row + 1), self.src.eq(self.src + src_stride),
                             self.dst.eq(self.dst + dst_stride)]
            with m.Else():
                m.d.sync += self.col.eq(self.col + step)


class CopyEngine(Elaboratable):
    """The COPY instruction over `VecPorts`."""

    def __init__(self, vl: int, bm: int):
        self.vl, self.bm = vl, bm
        self.ports = VecPorts(vl, bm)
        self.f = field_signals(LAYOUTS["COPY"])
        self.start = Signal()
        self.busy = Signal()

    def elaborate(self, platform):
        m = Module()
        vl, f, p = self.vl, self.f, self.ports
        w = _RowStream(m, f["rows"], f["row_bytes"], vl, f["src"], f["src_stride"], f["dst"], f["dst_stride"])
        m.d.comb += w.reset.eq(self.start & ~self.busy)
        running = Signal()
        with m.If(self.start):
            m.d.sync += running.eq(1)
        with m.Elif(w.done):
            m.d.sync += running.eq(0)
        with m.If(running & ~w.done):
            m.d.comb += [w.issue.eq(1), p.act_ren.eq(1), p.act_raddr.eq(w.src + w.col)]
        valid = delay(m, w.issue, 1, "cv")
        m.d.comb += self.busy.eq(running | valid)
        waddr = delay(m, w.dst + w.col, 1, "cwa")
        mask = delay(m, byte_mask(m, w.nv, 0, vl, "cmask"), 1, "cm")
        with m.If(valid):
            m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(waddr), p.act_wmask.eq(mask), p.act_wdata.eq(p.act_rdata)]
        return m


class LutEngine(Elaboratable):
    """The LUT instruction (int8 -> int8 table) over `VecPorts`."""

    def __init__(self, vl: int, bm: int):
        self.vl, self.bm = vl, bm
        self.ports = VecPorts(vl, bm)
        self.f = field_signals(LAYOUTS["LUT"])
        self.start = Signal()
        self.busy = Signal()

    def elaborate(self, platform):
        m = Module()
        vl, f, p = self.vl, self.f, self.ports
        m.submodules.table = table = ByteTable(vl)
        w = _RowStream(m, f["rows"], f["cols"], vl, f["src"], f["src_stride"], f["dst"], f["dst_stride"])
        pi = Signal(7)
        m.d.comb += [table.wr_en.eq(delay(m, p.param_ren, 1, "lpv")), table.wr_addr.eq(delay(m, pi, 1, "lpd")),
                     table.wr_data.eq(p.param_rdata)]
        drain = Signal(2)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += pi.eq(0)
                    m.d.comb += w.reset.eq(1)
                    m.next = "TABLE"
            with m.State("TABLE"):
                m.d.comb += [self.busy.eq(1), p.param_ren.eq(1), p.param_raddr.eq(f["param"] + pi)]
                m.d.sync += pi.eq(pi + 1)
                with m.If(pi == 63):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(w.done):
                    m.d.sync += drain.eq(3)
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += [w.issue.eq(1), p.act_ren.eq(1), p.act_raddr.eq(w.src + w.col)]
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 1):
                    m.next = "IDLE"
        # t read; t+1 data -> table index; t+2 entry -> write
        for k in range(vl):
            m.d.comb += table.rd_idx[k].eq(p.act_rdata[8 * k:8 * k + 8] ^ 0x80)
        valid = delay(m, w.issue, 2, "lv")
        waddr = delay(m, w.dst + w.col, 2, "lwa")
        mask = delay(m, byte_mask(m, w.nv, 0, vl, "lmask"), 2, "lm")
        with m.If(valid):
            m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(waddr), p.act_wmask.eq(mask),
                         p.act_wdata.eq(Cat(*table.rd_data))]
        return m


class MeanPoolEngine(Elaboratable):
    """The MEANPOOL instruction over `VecPorts`."""

    def __init__(self, vl: int, bm: int):
        self.vl, self.bm = vl, bm
        self.ports = VecPorts(vl, bm)
        self.f = field_signals(LAYOUTS["MEANPOOL"])
        self.start = Signal()
        self.busy = Signal()

    def elaborate(self, platform):
        m = Module()
        vl, f, p = self.vl, self.f, self.ports
        ei, eo = log2_size(f["src_dtype"]), log2_size(f["dtype"])
        ne = Signal(range(vl + 1))
        m.d.comb += ne.eq(vl >> Mux(ei > eo, ei, eo))
        izp, zp, qmin, qmax = (Signal(signed(32), name=n) for n in ("izp", "zp", "qmin", "qmax"))
        mult, nsh = Signal(signed(32)), Signal(6)
        pi = Signal(3)
        p_hdr = delay(m, p.param_ren, 1, "mph")
        pd = delay(m, pi, 1, "mpd")
        with m.If(p_hdr):
            with m.Switch(pd):
                for i, sig in enumerate((izp, mult, nsh, zp, qmin, qmax)):
                    with m.Case(i):
                        m.d.sync += sig.eq(31 - p.param_rdata.as_signed() if sig is nsh else p.param_rdata)
        c0, row = Signal(16), Signal(16)
        src = Signal(24)
        nv = Signal(range(vl + 1))
        m.d.comb += nv.eq(min_u(ne, f["cols"] - c0))
        issue, first = Signal(), Signal()
        acc = [Signal(signed(32), name=f"macc{k}") for k in range(vl)]
        prod = [Signal(signed(64), name=f"mprod{k}") for k in range(vl)]
        outs = [Signal(signed(33), name=f"my{k}") for k in range(vl)]
        wait = Signal(3)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pi.eq(0), c0.eq(0)]
                    m.next = "HDR"
            with m.State("HDR"):
                m.d.comb += [self.busy.eq(1), p.param_ren.eq(1), p.param_raddr.eq(f["param"] + pi)]
                m.d.sync += pi.eq(pi + 1)
                with m.If(pi == 5):
                    m.next = "BLOCK"
            with m.State("BLOCK"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [row.eq(0), src.eq(f["src"] + (c0 << ei))]
                m.next = "ROWS"
                with m.If(c0 >= f["cols"]):
                    m.next = "IDLE"
            with m.State("ROWS"):
                m.d.comb += self.busy.eq(1)
                with m.If(row < f["rows"]):
                    m.d.comb += [issue.eq(1), first.eq(row == 0), p.act_ren.eq(1), p.act_raddr.eq(src)]
                    m.d.sync += [row.eq(row + 1), src.eq(src + f["src_stride"])]
                with m.Else():
                    m.d.sync += wait.eq(4)
                    m.next = "FINISH"
            with m.State("FINISH"):       # t: last sum lands; t+1 product; t+2 rounded; t+3 write
                m.d.comb += self.busy.eq(1)
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(f["dst"] + (c0 << eo)),
                                 p.act_wmask.eq(byte_mask(m, nv, f["dtype"], vl, "mmask")),
                                 p.act_wdata.eq(pack_lanes(m, outs, f["dtype"], vl, "mpack"))]
                    m.d.sync += c0.eq(c0 + ne)
                    m.next = "BLOCK"
        lanes = unpack_lanes(m, p.act_rdata, f["src_dtype"], vl, width=17, name="mx")
        v1, f1 = delay(m, issue, 1, "mv"), delay(m, first, 1, "mf")
        n_izp = Signal(signed(50))
        m.d.comb += n_izp.eq(f["rows"] * izp)
        for k in range(vl):
            with m.If(v1):
                m.d.sync += acc[k].eq(Mux(f1, 0, acc[k]) + lanes[k])
            m.d.sync += [prod[k].eq((acc[k] - n_izp) * mult),
                         outs[k].eq(clamp(rshift_round(prod[k], nsh) + zp, qmin, qmax))]
        return m
