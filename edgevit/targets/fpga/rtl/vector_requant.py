"""REQUANT (docs/fpga-isa.md): int32 accumulators in ACC -> int8/int16 in ACT, `vl` lanes a cycle.

Per element (row r, column c), with the channel's bias, multiplier, shift at PARAM chan + 3c:

    y = clamp(rounding_rshift((int64)(ACC + bias) * multiplier, 31 - shift) + zp, qmin, qmax)
    gelu: y = table[y + 128]

Schedule: column blocks outer, rows inner. The header (zp, qmin, qmax; with `gelu` the 64-word
table) is read once. The channel words of a block of `ne = vl >> log2(output bytes)` columns go to one
of two register banks: a loader reads block b + 1's 3 ne words from PARAM into the other bank while the
streamer sends block b's rows, one ACC row a cycle, through the lane pipeline (read, + bias, x
multiplier, round / clamp, table; each row carries its bank) and writes `ne` elements a cycle. The
streamer goes from block to block without a bubble when the next bank is full; the loader refills a bank
from the cycle after its block's last row was issued (the word order keeps that row's values in time). Cycles (measured, tests/targets/fpga/test_perf_requant.py):
4 + (64 with gelu) + 3 nv_0 + 1 + sum over the later blocks of max(rows, 3 nv + 1) + rows + PIPE + 2 with
nv a block's columns, i.e. ~ ceil(cols / ne) * max(rows, 3 ne + 1) + 3 ne + 12 (compiler/cycles.requant_cycles).
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
        """Header read, the channel-word loader, the row streamer and the lane pipeline (module docstring)."""
        m = Module()
        vl, bm, f, p = self.vl, self.bm, self.f, self.ports
        lbm = bm.bit_length() - 1
        m.submodules.table = table = ByteTable(vl)
        es = log2_size(f["dtype"])
        ne = Signal(range(vl + 1))
        m.d.comb += ne.eq(vl >> es)

        zp, qmin, qmax = (Signal(signed(32), name=n) for n in ("zp", "qmin", "qmax"))
        bias = [[Signal(signed(32), name=f"bias{b}_{k}") for k in range(vl)] for b in range(2)]
        mult = [[Signal(signed(32), name=f"mult{b}_{k}") for k in range(vl)] for b in range(2)]
        nsh = [[Signal(6, name=f"nshift{b}_{k}") for k in range(vl)] for b in range(2)]
        full = [Signal(name=f"full{b}") for b in range(2)]

        # Loader: block at column l_c0 into bank l_bank. Streamer: block at column c0 from bank s_bank.
        l_c0, l_bank, c0, s_bank = Signal(16), Signal(), Signal(16), Signal()
        l_nv, nv = Signal(range(vl + 1)), Signal(range(vl + 1))   # valid columns of the blocks
        m.d.comb += [l_nv.eq(min_u(ne, f["cols"] - l_c0)), nv.eq(min_u(ne, f["cols"] - c0))]
        row = Signal(16)
        acc_row = Signal(16)                   # ACC row of (row, block)
        dst_row = Signal(24)                   # ACT address of (row, column c0)
        acc_per_row = Signal(16)
        m.d.comb += acc_per_row.eq((f["cols"] + bm - 1) >> lbm)
        pi = Signal(range(3 * vl + 70))        # PARAM read counter
        pd = Signal.like(pi)                   # ... of the word arriving this cycle
        pvalid, p_last, p_bank = Signal(), Signal(), Signal()
        drain = Signal(range(PIPE + 3))

        issue = Signal()
        hdr_word = Signal()
        run = Signal()
        m.d.sync += [pvalid.eq(0), hdr_word.eq(0), p_last.eq(0), pd.eq(pi)]
        # The bank of the row in each pipeline stage (issue = stage 0; bias used at 1, mult 2, shift 3).
        b_d = [s_bank] + [Signal(name=f"b_d{i}") for i in range(1, 4)]
        for i in range(1, 4):
            m.d.sync += b_d[i].eq(b_d[i - 1])
        bank_full = Mux(l_bank, full[1], full[0])

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pi.eq(0), c0.eq(0), l_c0.eq(0), s_bank.eq(0), l_bank.eq(0), row.eq(0),
                                 full[0].eq(0), full[1].eq(0)]
                    m.next = "HDR"
            with m.State("HDR"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [p.param_ren.eq(1), p.param_raddr.eq(f["param"] + pi)]
                m.d.sync += [pvalid.eq(1), hdr_word.eq(1), pi.eq(pi + 1)]
                with m.If(pi == Mux(f["gelu"], 66, 2)):
                    m.d.sync += [pi.eq(0), acc_row.eq(f["acc"]), dst_row.eq(f["dst"])]
                    with m.If((f["rows"] == 0) | (f["cols"] == 0)):
                        m.d.sync += drain.eq(PIPE + 2)
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), run.eq(1)]
                with m.If(Mux(s_bank, full[1], full[0])):
                    m.d.comb += [issue.eq(1), p.acc_ren.eq(1), p.acc_raddr.eq(acc_row)]
                    m.d.sync += [row.eq(row + 1), acc_row.eq(acc_row + acc_per_row),
                                 dst_row.eq(dst_row + f["dst_stride"])]
                    with m.If(row == f["rows"] - 1):   # the block's last row: on to the next bank
                        nxt = c0 + ne
                        m.d.sync += [row.eq(0), c0.eq(nxt), s_bank.eq(~s_bank), acc_row.eq(f["acc"] + (nxt >> lbm)),
                                     dst_row.eq(f["dst"] + (nxt << es))]
                        for b in range(2):
                            with m.If(s_bank == b):
                                m.d.sync += full[b].eq(0)
                        with m.If(nxt >= f["cols"]):
                            m.d.sync += drain.eq(PIPE + 2)
                            m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 1):
                    m.next = "IDLE"

        # The loader (in RUN): 3 nv words of the block at l_c0 into bank l_bank once it is empty. No wait for
        # the old block's rows still in the pipeline: a bank empties after its last row's issue (cycle t), so
        # the first read is at t + 1 or later and, words arriving in order bias, mult, shift of lane 0 first,
        # lane 0's bias / mult / shift are written at the ends of t + 2 / t + 3 / t + 4, each after that
        # row used them (ends of t + 1 / t + 2 / t + 3); later lanes later still.
        with m.If(run & (l_c0 < f["cols"]) & ~bank_full & (pi < 3 * l_nv)):
            m.d.comb += [p.param_ren.eq(1), p.param_raddr.eq(f["chan"] + 3 * l_c0 + pi)]
            m.d.sync += [pvalid.eq(1), pi.eq(pi + 1), p_bank.eq(l_bank), p_last.eq(pi == 3 * l_nv - 1)]

        # PARAM words arriving: header (read in HDR) or channel words (loader).
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
            for b in range(2):
                with m.If(p_bank == b):
                    with m.Switch(pd):
                        for k in range(vl):
                            with m.Case(3 * k):
                                m.d.sync += bias[b][k].eq(w)
                            with m.Case(3 * k + 1):
                                m.d.sync += mult[b][k].eq(w)
                            with m.Case(3 * k + 2):
                                m.d.sync += nsh[b][k].eq(31 - w.as_signed())
            with m.If(p_last):                 # the block's last word: the bank is full, next block
                m.d.sync += [l_c0.eq(l_c0 + ne), l_bank.eq(~l_bank), pi.eq(0)]
                for b in range(2):
                    with m.If(p_bank == b):
                        m.d.sync += full[b].eq(1)

        # The lane pipeline: t issue, t+1 data -> +bias, t+2 x mult, t+3 round/clamp, t+4 table, t+5 write.
        # Each stage uses the bank of its own row (b_d[i]).
        lane_off = delay(m, c0 & (bm - 1), 1, name="lane_off")
        outs = []
        for k in range(vl):
            a = p.acc_rdata.word_select(lane_off + k, 32).as_signed() if bm > 1 else p.acc_rdata.as_signed()
            s1 = Signal(signed(33), name=f"s1_{k}")
            s2 = Signal(signed(65), name=f"s2_{k}")
            y = Signal(signed(33), name=f"y_{k}")
            m.d.sync += [s1.eq(a + Mux(b_d[1], bias[1][k], bias[0][k])),
                         s2.eq(s1 * Mux(b_d[2], mult[1][k], mult[0][k])),
                         y.eq(clamp(rshift_round(s2, Mux(b_d[3], nsh[1][k], nsh[0][k])) + zp, qmin, qmax))]
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
