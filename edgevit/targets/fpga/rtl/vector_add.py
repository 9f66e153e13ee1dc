"""ADD (docs/fpga-isa.md): `add_int` of two ACT regions, residual and positional adds.

    y = clamp(rounding_rshift((int64)a*ka + (int64)b*kb + bias, shift) + zp, qmin, qmax)

Header (8 PARAM words at `param`): ka, kb, bias (lo, hi), shift, zp, qmin, qmax. A beat handles
`ne = vl >> log2(widest of a, b, output bytes)` elements and takes two cycles, since both inputs
come through the one ACT read port: read a, read b, then the lane pipeline (products and sum,
round / clamp) writes the beat. Cycles ~ 9 + 2 rows ceil(cols / ne) + 4.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Mux, Signal, signed

from edgevit.targets.fpga.isa import LAYOUTS
from edgevit.targets.fpga.rtl.vector_common import (VecPorts, byte_mask, clamp, delay, field_signals, log2_size,
                                                    min_u, pack_lanes, rshift_round, unpack_lanes)

HEADER_WORDS = 8
PIPE = 4            # cycles from the read of a to the write


class AddEngine(Elaboratable):
    """The ADD instruction over `VecPorts`."""

    def __init__(self, vl: int, bm: int):
        self.vl, self.bm = vl, bm
        self.ports = VecPorts(vl, bm)
        self.f = field_signals(LAYOUTS["ADD"])
        self.start = Signal()
        self.busy = Signal()

    def elaborate(self, platform):
        m = Module()
        vl, f, p = self.vl, self.f, self.ports
        ea, eb, eo = log2_size(f["a_dtype"]), log2_size(f["b_dtype"]), log2_size(f["dtype"])
        emax = Signal(2)
        m.d.comb += emax.eq(Mux(ea > eb, ea, eb))
        ne = Signal(range(vl + 1))
        m.d.comb += ne.eq(vl >> Mux(eo > emax, eo, emax))

        ka, kb = Signal(signed(32)), Signal(signed(32))
        bias = Signal(signed(64))
        nsh = Signal(6)
        zp, qmin, qmax = (Signal(signed(32), name=n) for n in ("zp", "qmin", "qmax"))
        pi = Signal(range(HEADER_WORDS + 1))
        pd = Signal.like(pi)
        p_hdr = Signal()
        m.d.sync += [pd.eq(pi), p_hdr.eq(0)]
        wd = p.param_rdata
        with m.If(p_hdr):
            with m.Switch(pd):
                for i, (sig, part) in enumerate(((ka, None), (kb, None), (bias, 0), (bias, 1), (nsh, None),
                                                 (zp, None), (qmin, None), (qmax, None))):
                    with m.Case(i):
                        m.d.sync += (sig.eq(wd) if part is None else sig.word_select(part, 32).eq(wd))

        row, col = Signal(16), Signal(16)
        a_row, b_row, d_row = Signal(24), Signal(24), Signal(24)
        nv = Signal(range(vl + 1))
        m.d.comb += nv.eq(min_u(ne, f["cols"] - col))
        read_a, read_b = Signal(), Signal()
        drain = Signal(range(PIPE + 2))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pi.eq(0), row.eq(0), col.eq(0), a_row.eq(f["a"]), b_row.eq(f["b"]),
                                 d_row.eq(f["dst"])]
                    m.next = "HDR"
            with m.State("HDR"):
                m.d.comb += [self.busy.eq(1), p.param_ren.eq(1), p.param_raddr.eq(f["param"] + pi)]
                m.d.sync += [p_hdr.eq(1), pi.eq(pi + 1)]
                with m.If(pi == HEADER_WORDS - 1):
                    m.next = "A"
            with m.State("A"):
                m.d.comb += self.busy.eq(1)
                with m.If((row == f["rows"]) | (f["cols"] == 0)):
                    m.d.sync += drain.eq(PIPE + 1)
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += [read_a.eq(1), p.act_ren.eq(1), p.act_raddr.eq(a_row + (col << ea))]
                    m.next = "B"
            with m.State("B"):
                m.d.comb += [self.busy.eq(1), read_b.eq(1), p.act_ren.eq(1), p.act_raddr.eq(b_row + (col << eb))]
                with m.If(col + ne >= f["cols"]):
                    m.d.sync += [col.eq(0), row.eq(row + 1), a_row.eq(a_row + f["a_stride"]),
                                 b_row.eq(b_row + f["b_stride"]), d_row.eq(d_row + f["dst_stride"])]
                with m.Else():
                    m.d.sync += col.eq(col + ne)
                m.next = "A"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 1):
                    m.next = "IDLE"

        # t read a; t+1 read b, a lanes latched; t+2 b lanes -> sum; t+3 round/clamp; t+4 write
        a_lanes = unpack_lanes(m, p.act_rdata, f["a_dtype"], vl, width=17, name="la")
        b_lanes = unpack_lanes(m, p.act_rdata, f["b_dtype"], vl, width=17, name="lb")
        outs = []
        for k in range(vl):
            a_keep = Signal(signed(17), name=f"akeep{k}")
            s = Signal(signed(66), name=f"sum{k}")
            y = Signal(signed(33), name=f"y{k}")
            m.d.sync += [a_keep.eq(a_lanes[k]), s.eq(a_keep * ka + b_lanes[k] * kb + bias),
                         y.eq(clamp(rshift_round(s, nsh) + zp, qmin, qmax))]
            outs.append(y)
        valid = delay(m, read_b, PIPE - 1, "valid")
        waddr = delay(m, d_row + (col << eo), PIPE - 1, "waddr")
        mask = delay(m, byte_mask(m, nv, f["dtype"], vl, "amask"), PIPE - 1, "amaskd")
        with m.If(valid):
            m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(waddr), p.act_wmask.eq(mask),
                         p.act_wdata.eq(pack_lanes(m, outs, f["dtype"], vl, "apack"))]
        return m
