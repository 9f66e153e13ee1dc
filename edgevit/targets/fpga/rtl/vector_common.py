"""Shared pieces of the overlay's vector unit (docs/fpga-isa.md, "Vector instructions").

Memory ports. Every vector engine talks to the scratchpads through `VecPorts`, simple synchronous
ports with a one-cycle read latency (the data of a read issued in cycle t is on `*_rdata` in t+1):

- ACT read: `act_ren`, `act_raddr` (byte address) -> `act_rdata`, `vl` bytes from that address
  (byte i of the vector is ACT[addr + i]; no alignment, like GEMM's reads).
- ACT write: `act_wen`, `act_waddr`, `act_wdata` (`vl` bytes), `act_wmask` (byte enables, bit i
  writes ACT[addr + i]).
- ACC read: `acc_ren`, `acc_raddr` (row) -> `acc_rdata` (`bm` int32 lanes, lane m in bits 32m..).
- PARAM read: `param_ren`, `param_raddr` (word) -> `param_rdata` (one int32 word).

An idle engine drives every port output to 0, so the vector unit combines its engines' ports with
an OR. Element types are the ISA's dtype codes (0 int8, 1 int16, 2 int32, 3 uint8); a beat of an
elementwise engine handles `vl >> log2(widest element bytes)` elements, so one ACT access each.

Arithmetic helpers build Amaranth expressions of the integer semantics: `rshift_round` (round half
up, docs/integer-semantics.md), `clamp`, lane unpacking and packing.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

ACT_ADDR_BITS = 24
PARAM_ADDR_BITS = 24
ACC_ADDR_BITS = 16


class VecPorts:
    """The vector engines' memory ports (see the module docstring); `vl` ACT bytes, `bm` ACC lanes."""

    def __init__(self, vl: int, bm: int, prefix: str = ""):
        self.vl, self.bm = vl, bm
        p = prefix
        self.act_ren = Signal(name=f"{p}act_ren")
        self.act_raddr = Signal(ACT_ADDR_BITS, name=f"{p}act_raddr")
        self.act_rdata = Signal(8 * vl, name=f"{p}act_rdata")
        self.act_wen = Signal(name=f"{p}act_wen")
        self.act_waddr = Signal(ACT_ADDR_BITS, name=f"{p}act_waddr")
        self.act_wdata = Signal(8 * vl, name=f"{p}act_wdata")
        self.act_wmask = Signal(vl, name=f"{p}act_wmask")
        self.acc_ren = Signal(name=f"{p}acc_ren")
        self.acc_raddr = Signal(ACC_ADDR_BITS, name=f"{p}acc_raddr")
        self.acc_rdata = Signal(32 * bm, name=f"{p}acc_rdata")
        self.param_ren = Signal(name=f"{p}param_ren")
        self.param_raddr = Signal(PARAM_ADDR_BITS, name=f"{p}param_raddr")
        self.param_rdata = Signal(32, name=f"{p}param_rdata")

    OUTPUTS = ("act_ren", "act_raddr", "act_wen", "act_waddr", "act_wdata", "act_wmask", "acc_ren", "acc_raddr",
               "param_ren", "param_raddr")
    INPUTS = ("act_rdata", "acc_rdata", "param_rdata")


def field_signals(layout) -> dict[str, Signal]:
    """One unsigned Signal per instruction field of an ISA layout ((name, bits), ...)."""
    return {name: Signal(bits, name=f"f_{name}") for name, bits in layout}


def log2_size(dtype) -> "Value":
    """log2 of an element's bytes for an ISA dtype code (int8/uint8 0, int16 1, int32 2)."""
    return Mux(dtype == 3, 0, dtype)


def rshift_round(x, n):
    """Round-half-up arithmetic right shift of signed x by unsigned n (n == 0: x), the integer rule:
    floor((x + 2^(n-1)) / 2^n) == (floor(x / 2^(n-1)) + 1) >> 1."""
    nm1 = (n - 1)[:len(n)]
    return Mux(n == 0, x, ((x >> nm1) + 1) >> 1)


def clamp(x, lo, hi):
    """min(max(x, lo), hi) of signed values."""
    return Mux(x < lo, lo, Mux(x > hi, hi, x))


def unpack_lanes(m: Module, data, dtype, vl: int, width: int = 33, name: str = "lane") -> list[Signal]:
    """The `vl` element values of a `vl`-byte vector as signed(width) Signals for dtype code `dtype`:
    lane k is byte k (int8 / uint8), bytes 2k..2k+1 (int16) or 4k..4k+3 (int32); lanes past the
    vector are 0."""
    lanes = []
    for k in range(vl):
        v = Signal(signed(width), name=f"{name}{k}")
        with m.Switch(dtype):
            with m.Case(0):
                m.d.comb += v.eq(data[8 * k:8 * k + 8].as_signed())
            with m.Case(1):
                if 2 * k + 2 <= vl:
                    m.d.comb += v.eq(data[16 * k:16 * k + 16].as_signed())
            with m.Case(2):
                if 4 * k + 4 <= vl:
                    m.d.comb += v.eq(data[32 * k:32 * k + 32].as_signed())
            with m.Case(3):
                m.d.comb += v.eq(data[8 * k:8 * k + 8])
        lanes.append(v)
    return lanes


def pack_lanes(m: Module, values, dtype, vl: int, name: str = "packed") -> Signal:
    """The `vl`-byte vector holding `values` (list of vl Values) as dtype code `dtype` (low bytes of
    each value, little endian; lanes that do not fit are dropped)."""
    out = Signal(8 * vl, name=name)
    with m.Switch(dtype):
        with m.Case(0, 3):
            m.d.comb += out.eq(Cat(*[v[:8] for v in values]))
        with m.Case(1):
            m.d.comb += out.eq(Cat(*[v[:16] for v in values[:vl // 2]]))
        with m.Case(2):
            m.d.comb += out.eq(Cat(*[v[:32] for v in values[:max(1, vl // 4)]]))
    return out


def byte_mask(m: Module, nvalid, dtype, vl: int, name: str = "mask") -> Signal:
    """Byte enables for the first `nvalid` elements of dtype code `dtype`: bits < nvalid * size."""
    out = Signal(vl, name=name)
    nbytes = Signal(range(4 * vl + 1), name=f"{name}_bytes")
    m.d.comb += nbytes.eq(nvalid << log2_size(dtype))
    m.d.comb += out.eq(Cat(*[nbytes > i for i in range(vl)]))
    return out


def min_u(a, b):
    """min of two unsigned Values."""
    return Mux(a < b, a, b)


def bit_length(m: Module, x, name: str = "bitlen") -> Signal:
    """Number of significant bits of unsigned x (0 for 0): a priority encoder."""
    out = Signal(range(len(x) + 1), name=name)
    for i in range(len(x)):
        with m.If(x[i]):
            m.d.comb += out.eq(i + 1)
    return out


def delay(m: Module, sig, cycles: int, name: str = "dly") -> Signal:
    """`sig` delayed by `cycles` clock cycles (a register chain; cycles 0 returns sig)."""
    cur = sig
    for i in range(cycles):
        nxt = Signal.like(cur, name=f"{name}{i}")
        m.d.sync += nxt.eq(cur)
        cur = nxt
    return cur


class ByteTable(Elaboratable):
    """A 256-entry 8-bit table (int8 -> int8 LUT: GELU, LUT op) with `lanes` read ports.

    Loaded as 64 PARAM words (entry 4w + b in byte b of word w): `wr_en`, `wr_addr` (word), `wr_data`.
    Lane k: `rd_idx[k]` (entry index, x + 128) in cycle t gives `rd_data[k]` in t + 1."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        self.wr_en = Signal()
        self.wr_addr = Signal(6)
        self.wr_data = Signal(32)
        self.rd_idx = [Signal(8, name=f"tab_idx{k}") for k in range(lanes)]
        self.rd_data = [Signal(8, name=f"tab_data{k}") for k in range(lanes)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=32, depth=64, init=[])
        wp = mem.write_port()
        m.d.comb += [wp.en.eq(self.wr_en), wp.addr.eq(self.wr_addr), wp.data.eq(self.wr_data)]
        for k in range(self.lanes):
            rp = mem.read_port()
            sel = Signal(2, name=f"tab_sel{k}")
            m.d.sync += sel.eq(self.rd_idx[k][:2])
            m.d.comb += [rp.addr.eq(self.rd_idx[k][2:]), self.rd_data[k].eq(rp.data.word_select(sel, 8))]
        return m


__all__ = ["VecPorts", "ByteTable", "field_signals", "log2_size", "rshift_round", "clamp", "unpack_lanes", "pack_lanes",
           "byte_mask", "min_u", "bit_length", "delay", "Const", "unsigned"]
