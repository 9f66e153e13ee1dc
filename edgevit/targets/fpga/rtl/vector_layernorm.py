"""LAYERNORM (docs/fpga-isa.md): `layernorm_int` (docs/integer-semantics.md) per row, in hardware.

Rows are handled in groups of up to `group` rows, in two phases per group:

1. Statistics, one pass over each row (`vl >> log2(input bytes)` elements a cycle) summing
   S = sum x and Q = sum x^2; then a scalar engine computes, overlapped with the next row's pass,
   V = D (D Q - S^2) (= sum (D x - S)^2 exactly), W = (V << F) + E,
   s = min((62 - bitlen(W)) >> 1, 30 - F/2), q = isqrt(W << 2s) (Isqrt), R = (2^61 + (q >> 1)) / q
   (Divider, 32 quotient bits: R <= 2^31 when V > 0; when V == 0 every c is 0 and R is unused),
   and stores (S, R, s) of the row.
2. Normalisation, column blocks outer and the group's rows inner: a block of `ne` channels loads
   its gain and bias words (3 ne PARAM reads), then each row streams through the lane pipeline
   c = D x - S, U = rshift(c R, 31 - F/2 - s), y = clamp(rshift(U G + B, n) + zp, qmin, qmax).

Cycles per row ~ max(D / ne + 3, scalar) + (D / ne) (3 ne + 7) / group + D / ne, the scalar part
being 32 / isqrt_steps + 32 / div_steps + 5.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal, signed
from amaranth.lib.memory import Memory

from edgevit.targets.fpga.isa import LAYOUTS
from edgevit.targets.fpga.rtl.divider import Divider
from edgevit.targets.fpga.rtl.isqrt import Isqrt
from edgevit.targets.fpga.rtl.vector_common import (VecPorts, bit_length, byte_mask, clamp, delay, field_signals,
                                                    log2_size, min_u, pack_lanes, rshift_round, unpack_lanes)

PIPE = 6            # cycles from the ACT read to the ACT write in the normalisation pipeline
HEADER_WORDS = 7    # frac_bits, eps_fixed (lo, hi), out_shift, zp, qmin, qmax


class LayerNormEngine(Elaboratable):
    """The LAYERNORM instruction over `VecPorts`; `group` rows share one load of the channel words."""

    def __init__(self, vl: int, bm: int, group: int = 64, isqrt_steps: int = 2, div_steps: int = 2):
        self.vl, self.bm, self.group = vl, bm, group
        self.isqrt_steps, self.div_steps = isqrt_steps, div_steps
        self.ports = VecPorts(vl, bm)
        self.f = field_signals(LAYOUTS["LAYERNORM"])
        self.start = Signal()
        self.busy = Signal()

    def elaborate(self, platform):
        m = Module()
        vl, G, f, p = self.vl, self.group, self.f, self.ports
        m.submodules.isqrt = isq = Isqrt(self.isqrt_steps)
        m.submodules.div = div = Divider(64, 32, 32, self.div_steps)
        m.submodules.stats = stats = Memory(shape=27 + 32 + 5, depth=G, init=[])
        st_w = stats.write_port()
        st_r = stats.read_port()

        es_in, es_out = log2_size(f["src_dtype"]), log2_size(f["dtype"])
        es_max = Mux(es_in > es_out, es_in, es_out)
        D = f["cols"]

        # ---- header
        frac, out_n = Signal(6), Signal(6)
        eps = Signal(64)
        zp, qmin, qmax = (Signal(signed(32), name=n) for n in ("zp", "qmin", "qmax"))
        half_f = frac >> 1

        # ---- group bookkeeping
        g_rows = Signal(range(G + 1))          # rows in the current group
        rows_left = Signal(16)
        g_src, g_dst = Signal(24), Signal(24)  # addresses of the group's first row
        m.d.comb += g_rows.eq(min_u(rows_left, G))

        # ---- statistics pass (FSM "STATS") and its accumulators
        ne_in = Signal(range(vl + 1))
        m.d.comb += ne_in.eq(vl >> es_in)
        s_row = Signal(range(G + 1))           # row of the group being read
        s_col = Signal(16)
        s_addr = Signal(24)
        s_issue, s_first, s_last = Signal(), Signal(), Signal()
        in_flight = Signal()                   # a row's reads were issued, its sums not yet handed off
        nv_in = Signal(range(vl + 1))
        m.d.comb += nv_in.eq(min_u(ne_in, D - s_col))
        lanes = unpack_lanes(m, p.act_rdata, f["src_dtype"], vl, width=17, name="sx")
        nv_d = delay(m, nv_in, 1, name="snv")
        first_d, last_d, issue_d = delay(m, s_first, 1, "sf"), delay(m, s_last, 1, "sl"), delay(m, s_issue, 1, "si")
        xs = [Mux(nv_d > k, x, 0) for k, x in enumerate(lanes)]
        sum_x = Signal(signed(27))
        sum_q = Signal(41)
        m.d.comb += [sum_x.eq(sum(xs)), sum_q.eq(sum(x * x for x in xs))]
        acc_s, acc_q = Signal(signed(27)), Signal(41)
        with m.If(issue_d):
            m.d.sync += [acc_s.eq(Mux(first_d, sum_x, acc_s + sum_x)), acc_q.eq(Mux(first_d, sum_q, acc_q + sum_q))]
        row_done = delay(m, issue_d & last_d, 1, "sdone")   # acc_s / acc_q final in this cycle

        # handoff register to the scalar engine
        h_full = Signal()
        h_s, h_q = Signal(signed(27)), Signal(41)
        h_idx = Signal(range(G))
        done_idx = Signal(range(G + 1))        # which group row is being handed off
        take = Signal()
        with m.If(row_done):
            m.d.sync += [h_full.eq(1), h_s.eq(acc_s), h_q.eq(acc_q), h_idx.eq(done_idx), in_flight.eq(0),
                         done_idx.eq(done_idx + 1)]
        with m.Elif(take):
            m.d.sync += h_full.eq(0)

        # ---- scalar engine: V, W, s, isqrt, divide -> stats[row]
        sc_s, sc_idx = Signal(signed(27)), Signal(range(G))
        dq, ss = Signal(52), Signal(54)
        v = Signal(64)
        w = Signal(64)
        sh = Signal(5)
        q = Signal(31)
        stats_written = Signal(range(G + 1))
        bl = bit_length(m, w[:62], "wbits")
        s_cand = Signal(6)
        m.d.comb += s_cand.eq((62 - bl) >> 1)
        s_sel = Signal(5)
        m.d.comb += s_sel.eq(Mux(s_cand < 30 - half_f, s_cand, 30 - half_f))
        with m.FSM(name="scalar"):
            with m.State("WAIT"):
                with m.If(h_full):
                    m.d.comb += take.eq(1)
                    m.d.sync += [sc_s.eq(h_s), sc_idx.eq(h_idx), dq.eq(D * h_q), ss.eq(h_s * h_s)]
                    m.next = "V"
            with m.State("V"):
                m.d.sync += v.eq(D * (dq - ss)[:52])
                m.next = "W"
            with m.State("W"):
                m.d.sync += w.eq(((v << frac)[:64] + eps)[:64])
                m.next = "SQRT"
            with m.State("SQRT"):
                m.d.comb += [isq.start.eq(1), isq.x.eq((w << (s_sel << 1))[:62])]
                m.d.sync += sh.eq(s_sel)
                m.next = "SQRT_WAIT"
            with m.State("SQRT_WAIT"):
                with m.If(isq.done):
                    m.d.comb += [div.start.eq(1), div.dividend.eq((1 << 61) + (isq.root >> 1)),
                                 div.divisor.eq(isq.root)]
                    m.next = "DIV_WAIT"
            with m.State("DIV_WAIT"):
                with m.If(div.done):
                    m.d.comb += [st_w.en.eq(1), st_w.addr.eq(sc_idx),
                                 st_w.data.eq(Cat(sc_s, div.quotient, sh))]
                    m.d.sync += stats_written.eq(stats_written + 1)
                    m.next = "WAIT"

        # ---- normalisation pipeline
        ne = Signal(range(vl + 1))
        m.d.comb += ne.eq(vl >> es_max)
        c0 = Signal(16)
        nv = Signal(range(vl + 1))
        m.d.comb += nv.eq(min_u(ne, D - c0))
        gain = [Signal(signed(32), name=f"gain{k}") for k in range(vl)]
        bias = [Signal(signed(64), name=f"bias{k}") for k in range(vl)]
        n_row = Signal(range(G + 1))
        n_src, n_dst = Signal(24), Signal(24)
        n_issue = Signal()
        pi = Signal(range(3 * vl + HEADER_WORDS + 1))
        pd = Signal.like(pi)
        p_hdr, p_chan = Signal(), Signal()
        drain = Signal(range(PIPE + 2))
        m.d.sync += [pd.eq(pi), p_hdr.eq(0), p_chan.eq(0)]

        with m.FSM(name="main"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pi.eq(0), rows_left.eq(f["rows"]), g_src.eq(f["src"]), g_dst.eq(f["dst"])]
                    m.next = "HDR"
            with m.State("HDR"):
                m.d.comb += [self.busy.eq(1), p.param_ren.eq(1), p.param_raddr.eq(f["param"] + pi)]
                m.d.sync += [p_hdr.eq(1), pi.eq(pi + 1)]
                with m.If(pi == HEADER_WORDS - 1):
                    m.next = "GROUP"
            with m.State("GROUP"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [s_row.eq(0), s_col.eq(0), s_addr.eq(g_src), done_idx.eq(0), stats_written.eq(0)]
                with m.If(rows_left == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "STATS"
            with m.State("STATS"):
                m.d.comb += self.busy.eq(1)
                with m.If(s_row == g_rows):
                    with m.If(stats_written == g_rows):
                        m.d.sync += [c0.eq(0), pi.eq(0)]
                        m.next = "CHAN"
                with m.Elif((s_col != 0) | (~h_full & ~in_flight)):
                    m.d.comb += [p.act_ren.eq(1), p.act_raddr.eq(s_addr + (s_col << es_in)), s_issue.eq(1),
                                 s_first.eq(s_col == 0), s_last.eq(s_col + ne_in >= D)]
                    m.d.sync += in_flight.eq(1)
                    with m.If(s_col + ne_in >= D):
                        m.d.sync += [s_col.eq(0), s_row.eq(s_row + 1), s_addr.eq(s_addr + f["src_stride"])]
                    with m.Else():
                        m.d.sync += s_col.eq(s_col + ne_in)
            with m.State("CHAN"):
                m.d.comb += self.busy.eq(1)
                with m.If(pi < 3 * nv):
                    m.d.comb += [p.param_ren.eq(1), p.param_raddr.eq(f["chan"] + 3 * c0 + pi)]
                    m.d.sync += [p_chan.eq(1), pi.eq(pi + 1)]
                with m.Else():
                    m.d.sync += [n_row.eq(0), n_src.eq(g_src + (c0 << es_in)), n_dst.eq(g_dst + (c0 << es_out))]
                    m.next = "NORM"
            with m.State("NORM"):
                m.d.comb += self.busy.eq(1)
                with m.If(n_row < g_rows):
                    m.d.comb += [n_issue.eq(1), p.act_ren.eq(1), p.act_raddr.eq(n_src), st_r.addr.eq(n_row)]
                    m.d.sync += [n_row.eq(n_row + 1), n_src.eq(n_src + f["src_stride"]),
                                 n_dst.eq(n_dst + f["dst_stride"])]
                with m.Else():
                    m.d.sync += drain.eq(PIPE + 1)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 1):
                    m.d.sync += [c0.eq(c0 + ne), pi.eq(0)]
                    with m.If(c0 + ne >= D):
                        m.d.sync += [rows_left.eq(rows_left - g_rows), g_src.eq(s_addr),
                                     g_dst.eq(g_dst + g_rows * f["dst_stride"])]
                        m.next = "GROUP"
                    with m.Else():
                        m.next = "CHAN"

        wd = p.param_rdata
        with m.If(p_hdr):
            with m.Switch(pd):
                for i, (sig, part) in enumerate(((frac, None), (eps, 0), (eps, 1), (out_n, None), (zp, None),
                                                 (qmin, None), (qmax, None))):
                    with m.Case(i):
                        if part is None:
                            m.d.sync += sig.eq(wd)
                        else:
                            m.d.sync += sig.word_select(part, 32).eq(wd)
        with m.If(p_chan):
            with m.Switch(pd):
                for k in range(vl):
                    with m.Case(3 * k):
                        m.d.sync += gain[k].eq(wd)
                    with m.Case(3 * k + 1):
                        m.d.sync += bias[k][:32].eq(wd)
                    with m.Case(3 * k + 2):
                        m.d.sync += bias[k][32:].eq(wd)

        # lanes: t issue; t+1 data, stats -> c; t+2 c R; t+3 U; t+4 U G + B; t+5 y; t+6 write
        st_s = st_r.data[:27].as_signed()
        st_rr = st_r.data[27:59]
        st_sh = st_r.data[59:64]
        r2 = delay(m, st_rr, 1, "nr")
        ushift = delay(m, (31 - half_f - st_sh)[:6], 2, "nu")
        xin = unpack_lanes(m, p.act_rdata, f["src_dtype"], vl, width=17, name="nx")
        outs = []
        for k in range(vl):
            c = Signal(signed(28), name=f"c{k}")
            cr = Signal(signed(61), name=f"cr{k}")
            u = Signal(signed(34), name=f"u{k}")
            ug = Signal(signed(66), name=f"ug{k}")
            y = Signal(signed(33), name=f"y{k}")
            m.d.sync += [c.eq(D * xin[k] - st_s), cr.eq(c * r2), u.eq(rshift_round(cr, ushift)),
                         ug.eq(u * gain[k] + bias[k]), y.eq(clamp(rshift_round(ug, out_n) + zp, qmin, qmax))]
            outs.append(y)
        valid = delay(m, n_issue, PIPE, "nvalid")
        waddr = delay(m, n_dst, PIPE, "nwaddr")
        mask = delay(m, byte_mask(m, nv, f["dtype"], vl, "nmask"), PIPE, "nmaskd")
        with m.If(valid):
            m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(waddr), p.act_wmask.eq(mask),
                         p.act_wdata.eq(pack_lanes(m, outs, f["dtype"], vl, "npack"))]
        return m
