"""SOFTMAX (docs/fpga-isa.md): attention scores in ACC -> uint8 probabilities in ACT, per row
(`softmax_from_scores` of docs/integer-semantics.md, optionally with the token-merging size bias).

Local memories, `vl` read ports each: the exp table (up to `table_max` int32 entries, copied from
PARAM `table_base`; kept across instructions while `table_base` / `table_size` are unchanged and no
`param_written` pulse arrived) and, with `has_sizes`, the per-key bias log_size[size_j - 1] (up to
`max_keys` keys, built once per instruction from the sizes in ACT and the log_size table in PARAM).

Per row three back-to-back passes over the keys, `vl` keys a cycle (one ACC read each):

    MAX   m = max_j s_j                              s_j = score_j (+ bias_j)
    EXP   i_j = min(rshift(min(m - s_j, INT32_MAX) * M, 31 - shift), T - 1);  S = sum table[i_j]
          then R = ((255 << 40) + (S >> 1)) / S      (Divider, 48 quotient bits)
    NORM  q_j = min(rshift(table[i_j] * R, 40), 255)  written as uint8 to dst + r * dst_stride + j

Cycles per row ~ 3 ceil(N / vl) + 8 + 48 / div_steps.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Mux, Signal, signed
from amaranth.lib.memory import Memory

from edgevit.targets.fpga.isa import LAYOUTS
from edgevit.targets.fpga.rtl.divider import Divider
from edgevit.targets.fpga.rtl.vector_common import (VecPorts, byte_mask, delay, field_signals, min_u, pack_lanes,
                                                    rshift_round)

RECIP_BITS = 40
INT32_MAX = (1 << 31) - 1
HEADER_WORDS = 6          # multiplier, shift, table_base, table_size, log_size_base, log_size_len
EXP_LAT = 5               # issue -> table entry available
NORM_LAT = 7              # issue -> write


class SoftmaxEngine(Elaboratable):
    """The SOFTMAX instruction over `VecPorts` (bm a multiple of vl); `param_written` invalidates the
    cached exp table (pulse it when a LOAD writes PARAM)."""

    def __init__(self, vl: int, bm: int, table_max: int = 1024, max_keys: int = 1024, div_steps: int = 4):
        assert bm % vl == 0 and 48 % div_steps == 0
        self.vl, self.bm, self.table_max, self.max_keys, self.div_steps = vl, bm, table_max, max_keys, div_steps
        self.ports = VecPorts(vl, bm)
        self.f = field_signals(LAYOUTS["SOFTMAX"])
        self.start = Signal()
        self.busy = Signal()
        self.param_written = Signal()

    def elaborate(self, platform):
        m = Module()
        vl, bm, f, p = self.vl, self.bm, self.f, self.ports
        lbm = bm.bit_length() - 1
        m.submodules.div = div = Divider(64, 32, 48, self.div_steps)
        m.submodules.table = tab = Memory(shape=32, depth=self.table_max, init=[])
        m.submodules.bias = bmem = Memory(shape=32, depth=self.max_keys, init=[])
        tab_w, bias_w = tab.write_port(), bmem.write_port()
        tab_r = [tab.read_port() for _ in range(vl)]
        bias_r = [bmem.read_port() for _ in range(vl)]
        N = f["cols"]

        mult, nshift = Signal(31), Signal(6)
        t_base, t_size, l_base = Signal(24), Signal(17), Signal(24)
        cached, c_base, c_size = Signal(), Signal(24), Signal(17)
        with m.If(self.param_written):
            m.d.sync += cached.eq(0)

        pi = Signal(24)
        pd = Signal(24)
        p_hdr, p_tab = Signal(), Signal()
        m.d.sync += [pd.eq(pi), p_hdr.eq(0), p_tab.eq(0)]
        wd = p.param_rdata
        with m.If(p_hdr):
            with m.Switch(pd):
                for i, sig in enumerate((mult, nshift, t_base, t_size, l_base)):
                    with m.Case(i):
                        m.d.sync += sig.eq(31 - wd.as_signed() if sig is nshift else wd)
        m.d.comb += [tab_w.en.eq(p_tab), tab_w.addr.eq(pd), tab_w.data.eq(wd)]

        # size bias: ACT read of size_j (t), PARAM read of log_size[size - 1] (t+1), write bias_j (t+2)
        sz_issue = Signal()
        sz_j = Signal(16)
        sz_v1 = delay(m, sz_issue, 1, "szv")
        sz_v2 = delay(m, sz_v1, 1, "szw")
        sz_j2 = delay(m, sz_j, 2, "szj")
        with m.If(sz_v1):
            m.d.comb += [p.param_ren.eq(1), p.param_raddr.eq(l_base + p.act_rdata[:32] - 1)]
        m.d.comb += [bias_w.en.eq(sz_v2), bias_w.addr.eq(sz_j2), bias_w.data.eq(wd)]

        # row passes
        row = Signal(16)
        j0 = Signal(16)
        acc_base = Signal(16)                  # ACC row of (row, key 0)
        dst_row = Signal(24)
        per_row = Signal(16)
        m.d.comb += per_row.eq((N + bm - 1) >> lbm)
        nv = Signal(range(vl + 1))
        m.d.comb += nv.eq(min_u(vl, N - j0))
        issue, first, last = Signal(), Signal(), Signal()
        in_exp, in_norm, in_sum = Signal(), Signal(), Signal()
        m.d.comb += [first.eq(j0 == 0), last.eq(j0 + vl >= N)]
        with m.If(issue):
            m.d.comb += [p.acc_ren.eq(1), p.acc_raddr.eq(acc_base + (j0 >> lbm))]
            m.d.sync += j0.eq(Mux(last, 0, j0 + vl))
        for k in range(vl):
            m.d.comb += bias_r[k].addr.eq(j0 + k)
        wait = Signal(range(NORM_LAT + 3))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += pi.eq(0)
                    m.next = "HDR"
            with m.State("HDR"):
                m.d.comb += [self.busy.eq(1), p.param_ren.eq(1), p.param_raddr.eq(f["param"] + pi)]
                m.d.sync += [p_hdr.eq(1), pi.eq(pi + 1)]
                with m.If(pi == HEADER_WORDS - 1):
                    m.next = "HDR_WAIT"
            with m.State("HDR_WAIT"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [pi.eq(0), sz_j.eq(0), row.eq(0), j0.eq(0), acc_base.eq(f["acc"]), dst_row.eq(f["dst"])]
                with m.If(~p_hdr):                         # the last header word has landed
                    with m.If(cached & (c_base == t_base) & (c_size == t_size)):
                        m.next = "SIZES"
                    with m.Else():
                        m.next = "TABLE"
            with m.State("TABLE"):
                m.d.comb += [self.busy.eq(1), p.param_ren.eq(1), p.param_raddr.eq(t_base + pi)]
                m.d.sync += [p_tab.eq(1), pi.eq(pi + 1)]
                with m.If(pi + 1 == t_size):
                    m.d.sync += [cached.eq(1), c_base.eq(t_base), c_size.eq(t_size)]
                    m.next = "SIZES"
            with m.State("SIZES"):
                m.d.comb += self.busy.eq(1)
                with m.If(f["has_sizes"] & (sz_j < N)):
                    m.d.comb += [sz_issue.eq(1), p.act_ren.eq(1), p.act_raddr.eq(f["sizes"] + (sz_j << 2))]
                    m.d.sync += sz_j.eq(sz_j + 1)
                with m.Elif(~sz_v1 & ~sz_v2 & ~p_tab):
                    m.next = "ROW"
            with m.State("ROW"):
                m.d.comb += self.busy.eq(1)
                with m.If(row == f["rows"]):
                    m.d.sync += wait.eq(NORM_LAT + 1)
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "MAX"
            with m.State("MAX"):
                m.d.comb += [self.busy.eq(1), issue.eq(1)]
                with m.If(last):
                    m.next = "EXP"
            with m.State("EXP"):
                m.d.comb += [self.busy.eq(1), issue.eq(1), in_exp.eq(1)]
                with m.If(last):
                    m.d.sync += wait.eq(EXP_LAT + 1)
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.comb += [self.busy.eq(1), in_sum.eq(1)]
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.next = "DIV"
            with m.State("DIV"):
                m.d.comb += self.busy.eq(1)
                with m.If(div.done):
                    m.next = "NORM"
            with m.State("NORM"):
                m.d.comb += [self.busy.eq(1), issue.eq(1), in_norm.eq(1)]
                with m.If(last):
                    m.d.sync += [row.eq(row + 1), acc_base.eq(acc_base + per_row),
                                 dst_row.eq(dst_row + f["dst_stride"])]
                    m.next = "ROW"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.next = "IDLE"

        # lane pipeline: t issue; t+1 score (+ bias) -> max / d; t+2 d M; t+3 index; t+4 table read;
        # t+5 e -> sum / e R; t+6 q; t+7 write
        lane_off = delay(m, j0 & (bm - 1), 1, "laneoff")
        valid1, first1 = delay(m, issue, 1, "v1"), delay(m, first, 1, "f1")
        nv1 = delay(m, nv, 1, "nv1")
        in_max1 = delay(m, issue & ~in_exp & ~in_norm, 1, "mx1")
        run_max = Signal(signed(33))
        s_lanes = []
        for k in range(vl):
            s = Signal(signed(33), name=f"s{k}")
            raw = p.acc_rdata.word_select(lane_off + k, 32).as_signed()
            m.d.comb += s.eq(Mux(nv1 > k, raw + Mux(f["has_sizes"], bias_r[k].data.as_signed(), 0), -(1 << 32)))
            s_lanes.append(s)
        row_max = s_lanes[0]
        for s in s_lanes[1:]:
            row_max = Mux(s > row_max, s, row_max)
        with m.If(valid1 & in_max1):
            m.d.sync += run_max.eq(Mux(first1 | (row_max > run_max), row_max, run_max))

        tsize_m1 = Signal(17)
        m.d.comb += tsize_m1.eq(t_size - 1)
        e_lanes = []
        valid5 = delay(m, valid1, 4, "v5")
        live5 = [delay(m, nv1 > k, 4, f"live{k}_") for k in range(vl)]
        for k in range(vl):
            d = Signal(32, name=f"d{k}")
            dm = Signal(63, name=f"dm{k}")
            idx = Signal(range(self.table_max), name=f"idx{k}")
            diff = run_max - s_lanes[k]
            m.d.sync += [d.eq(Mux(diff > INT32_MAX, INT32_MAX, diff)), dm.eq(d * mult)]
            rounded = rshift_round(dm.as_signed(), nshift)
            m.d.sync += idx.eq(Mux(rounded > tsize_m1, tsize_m1, rounded))
            m.d.comb += tab_r[k].addr.eq(idx)
            e = Signal(32, name=f"e{k}")
            m.d.comb += e.eq(Mux(live5[k], tab_r[k].data, 0))
            e_lanes.append(e)

        # EXP: the row sum, then the divider
        exp5, first5 = delay(m, in_exp & issue, 5, "x5"), delay(m, first & issue, 5, "fs5")
        row_sum = Signal(32)
        with m.If(valid5 & exp5):
            m.d.sync += row_sum.eq(Mux(first5, 0, row_sum) + sum(e_lanes))
        with m.If(in_sum & (wait == 1)):
            m.d.comb += [div.start.eq(1), div.dividend.eq((255 << RECIP_BITS) + (row_sum >> 1)),
                         div.divisor.eq(row_sum)]

        # NORM: probabilities
        outs = []
        for k in range(vl):
            er = Signal(64, name=f"er{k}")
            y = Signal(9, name=f"y{k}")
            m.d.sync += er.eq(e_lanes[k] * div.quotient)
            rounded = (er + (1 << (RECIP_BITS - 1))) >> RECIP_BITS
            m.d.sync += y.eq(Mux(rounded > 255, 255, rounded))
            outs.append(y)
        valid7 = delay(m, in_norm & issue, NORM_LAT, "nv7")
        waddr = delay(m, dst_row + j0, NORM_LAT, "nwa")
        mask = delay(m, byte_mask(m, nv, 3, vl, "nmask"), NORM_LAT, "nmaskd")
        with m.If(valid7):
            m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(waddr), p.act_wmask.eq(mask),
                         p.act_wdata.eq(pack_lanes(m, outs, 3, vl, "npack"))]
        return m
