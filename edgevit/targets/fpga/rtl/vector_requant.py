"""REQUANT (docs/fpga-isa.md): int32 accumulators in ACC -> int8/int16 in ACT, `vl` lanes a cycle.

Per element (row r, column c), with the channel's bias, multiplier, shift at PARAM chan + 3c:

    y = clamp(rounding_rshift((int64)(ACC + bias) * multiplier, 31 - shift) + zp, qmin, qmax)
    gelu: y = table[y + 128]

Schedule: column blocks outer, rows inner. The header (zp, qmin, qmax; with `gelu` the 64-word
table) is read once; each block of `ne = vl >> log2(output bytes)` columns loads its 3 ne channel
words, then streams one ACC row a cycle through the lane pipeline (read, + bias, x multiplier,
round / clamp, table) and writes `ne` elements a cycle. Cycles ~ 3 + (64 with gelu) +
ceil(cols / ne) * (3 ne + rows + 8).
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Mux, Signal, signed

from edgevit.targets.fpga.isa import LAYOUTS
from edgevit.targets.fpga.rtl.vector_common import (ByteTable, VecPorts, byte_mask, clamp, delay, field_signals,
                                                    log2_size, min_u, pack_lanes, rshift_round)

PIPE = 5          # cycles from the ACC read to the ACT write


class RequantEngine(Elaboratable):
    """The REQUANT instruction over `VecPorts` (vl ACT bytes, bm ACC lanes; bm a multiple of vl)."""

    def __init__(self, vl: int, bm: int):
        assert bm % vl == 0 and vl & (vl - 1) == 0 and bm & (bm - 1) == 0
        self.vl, self.bm = vl, bm
        self.ports = VecPorts(vl, bm)
        self.f = field_signals(LAYOUTS["REQUANT"])
        self.start = Signal()
        self.busy = Signal()

    def elaborate(self, platform):
        m = Module()
        vl, bm, f, p = self.vl, self.bm, self.f, self.ports
        m.submodules.table = table = ByteTable(vl)
        es = log2_size(f["dtype"])
        ne = Signal(range(vl + 1))
        m.d.comb += ne.eq(vl >> es)

        zp, qmin, qmax = (Signal(signed(32), name=n) for n in ("zp", "qmin", "qmax"))
        bias = [Signal(signed(32), name=f"bias{k}") for k in range(vl)]
        mult = [Signal(signed(32), name=f"mult{k}") for k in range(vl)]
        nsh = [Signal(6, name=f"nshift{k}") for k in range(vl)]

        c0 = Signal(16)                        # first column of the block
        nv = Signal(range(vl + 1))             # valid columns in the block
        m.d.comb += nv.eq(min_u(ne, f["cols"] - c0))
        row = Signal(16)
        acc_row = Signal(16)                   # ACC row of (row, block)
        dst_row = Signal(24)                   # ACT address of (row, column 0)
        acc_per_row = Signal(16)
        m.d.comb += acc_per_row.eq((f["cols"] + bm - 1) >> (bm.bit_length() - 1))
        pi = Signal(range(3 * vl + 70))        # PARAM read counter
        pd = Signal.like(pi)                   # ... of the word arriving this cycle
        pvalid = Signal()
        drain = Signal(range(PIPE + 2))

        issue = Signal()
        hdr_word = Signal()
        m.d.sync += [pvalid.eq(0), hdr_word.eq(0), pd.eq(pi)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pi.eq(0), c0.eq(0)]
                    m.next = "HDR"
            with m.State("HDR"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [p.param_ren.eq(1), p.param_raddr.eq(f["param"] + pi)]
                m.d.sync += [pvalid.eq(1), hdr_word.eq(1), pi.eq(pi + 1)]
                with m.If(pi == Mux(f["gelu"], 66, 2)):
                    m.d.sync += pi.eq(0)
                    m.next = "CHAN"
            with m.State("CHAN"):
                m.d.comb += self.busy.eq(1)
                with m.If(pi < 3 * nv):
                    m.d.comb += [p.param_ren.eq(1), p.param_raddr.eq(f["chan"] + 3 * c0 + pi)]
                    m.d.sync += [pvalid.eq(1), pi.eq(pi + 1)]
                with m.Else():
                    m.d.sync += [row.eq(0), acc_row.eq(f["acc"] + (c0 >> (bm.bit_length() - 1))),
                                 dst_row.eq(f["dst"] + (c0 << es))]
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += self.busy.eq(1)
                with m.If(row < f["rows"]):
                    m.d.comb += [issue.eq(1), p.acc_ren.eq(1), p.acc_raddr.eq(acc_row)]
                    m.d.sync += [row.eq(row + 1), acc_row.eq(acc_row + acc_per_row),
                                 dst_row.eq(dst_row + f["dst_stride"])]
                with m.Else():
                    m.d.sync += drain.eq(PIPE + 1)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 1):
                    m.d.sync += [c0.eq(c0 + ne), pi.eq(0)]
                    with m.If(c0 + ne >= f["cols"]):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "CHAN"
        # PARAM words arriving: header (read in HDR) or channel words (CHAN).
        w = p.param_rdata
        with m.If(pvalid & hdr_word):
            with m.Switch(pd):
                with m.Case(0):
                    m.d.sync += zp.eq(w)
                with m.Case(1):
                    m.d.sync += qmin.eq(w)
                with m.Case(2):
                    m.d.sync += qmax.eq(w)
            m.d.comb += [table.wr_en.eq(pd >= 3), table.wr_addr.eq(pd - 3), table.wr_data.eq(w)]
        with m.If(pvalid & ~hdr_word):
            with m.Switch(pd):
                for k in range(vl):
                    with m.Case(3 * k):
                        m.d.sync += bias[k].eq(w)
                    with m.Case(3 * k + 1):
                        m.d.sync += mult[k].eq(w)
                    with m.Case(3 * k + 2):
                        m.d.sync += nsh[k].eq(31 - w.as_signed())

        # The lane pipeline: t issue, t+1 data -> +bias, t+2 x mult, t+3 round/clamp, t+4 table, t+5 write.
        lane_off = Signal(range(bm))
        m.d.comb += lane_off.eq(c0 & (bm - 1))
        outs = []
        for k in range(vl):
            a = p.acc_rdata.word_select(lane_off + k, 32).as_signed() if bm > 1 else p.acc_rdata.as_signed()
            s1 = Signal(signed(33), name=f"s1_{k}")
            s2 = Signal(signed(65), name=f"s2_{k}")
            y = Signal(signed(33), name=f"y_{k}")
            m.d.sync += [s1.eq(a + bias[k]), s2.eq(s1 * mult[k]),
                         y.eq(clamp(rshift_round(s2, nsh[k]) + zp, qmin, qmax))]
            m.d.comb += table.rd_idx[k].eq((y + 128)[:8])
            y_late = delay(m, y, 1, name=f"ylate{k}_")
            g = Signal(signed(33), name=f"g_{k}")
            m.d.comb += g.eq(Mux(f["gelu"], table.rd_data[k].as_signed(), y_late))
            outs.append(g)
        valid = delay(m, issue, PIPE, name="valid")
        waddr = delay(m, dst_row, PIPE, name="waddr")
        mask = delay(m, byte_mask(m, nv, f["dtype"], vl), PIPE, name="wmask")
        with m.If(valid):
            m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(waddr), p.act_wmask.eq(mask),
                         p.act_wdata.eq(pack_lanes(m, outs, f["dtype"], vl))]
        return m
