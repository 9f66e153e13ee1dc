"""The overlay's scratchpads as the top level wires them: a DMA-side and a compute-side port on each
(docs/fpga-isa.md, "Memories"), sized by an `OverlayConfig`.

- `OverlayAct`: ACT, `act_bytes` bytes as words of `bk` bytes in two banks (even / odd words), so an
  access of up to `bk` bytes at ANY byte address touches one word of each bank. Two unaligned read
  ports (`rd_compute`: `bk` bytes for GEMM / TILE, the vector unit takes the low `vl`; `rd_dma`: the
  STORE engine's bus words) and two unaligned byte-masked write ports (`wr_compute`: the vector
  unit's `vl` bytes; `wr_dma`: the LOAD engine's bus words). Every read's data is valid the cycle
  after its `en` and held while `en` is low.
- `OverlayWgt`: WGT, one tile (`bm*bk` bytes) a word: the GEMM array's tile read, the TILE write (a
  row mask) and the LOAD engine's bus-word write at any bus-aligned byte address of the space.
- `OverlayParam`: PARAM, int32 words stored as bus words: the LOAD engine's bus-word write and the
  vector unit's one-word read.

Simultaneous writes of the two ports to the same byte never happen in a correct stream (the
dependency tokens order them); the compute port wins in simulation if they do.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib.memory import Memory

from edgevit.targets.fpga.config import OverlayConfig

ADDR_BITS = 32


def log2(x: int, what: str) -> int:
    """log2 of a power of two (ValueError naming `what` otherwise)."""
    if x <= 0 or x & (x - 1):
        raise ValueError(f"{what} = {x} must be a power of two")
    return x.bit_length() - 1


def shift_units(x, amount, unit: int, left: bool):
    """`x` shifted by `amount` (a Signal) units of `unit` bits, as log2 stages of 2-way Muxes (same width
    as `x`). Equal to `x << amount*unit` (or >>), but each output bit depends on O(log) input bits, where
    Amaranth's variable shift makes every output bit depend on every input bit (quadratic netlist edges:
    the conversion of a big overlay took many minutes in its combinational-cycle check)."""
    for k in range(len(amount)):
        step = unit << k
        if step >= len(x):
            return Mux(amount[k:].any(), 0, x)
        moved = Cat(Const(0, step), x[:len(x) - step]) if left else Cat(x[step:], Const(0, step))
        x = Mux(amount[k], moved, x)
    return x


class BytePort:
    """An unaligned access of `nbytes` bytes at a byte address: `addr`, `en` (a read enable, or a write
    byte mask of `nbytes` bits), `data`."""

    def __init__(self, nbytes: int, name: str, write: bool):
        self.nbytes = nbytes
        self.addr = Signal(ADDR_BITS, name=f"{name}_addr")
        self.en = Signal(nbytes if write else 1, name=f"{name}_en")
        self.data = Signal(8 * nbytes, name=f"{name}_data")


class OverlayAct(Elaboratable):
    """ACT with ports rd_compute (bk bytes), rd_dma (bus_bytes), wr_compute (vl bytes), wr_dma (bus_bytes)."""

    def __init__(self, cfg: OverlayConfig):
        self.W = cfg.bk
        self.shift = log2(cfg.bk, "bk")
        if cfg.act_bytes % (2 * cfg.bk):
            raise ValueError(f"act_bytes = {cfg.act_bytes} must be a multiple of 2*bk = {2 * cfg.bk}")
        depth = cfg.act_bytes // (2 * cfg.bk) + 1  # one spare word: reading the last bytes touches word+1
        self.banks = [Memory(shape=8 * cfg.bk, depth=depth, init=[]) for _ in range(2)]
        self.rd_compute = BytePort(cfg.bk, "act_rdc", write=False)
        self.rd_dma = BytePort(cfg.bus_bytes, "act_rdd", write=False)
        self.wr_dma = BytePort(cfg.bus_bytes, "act_wrd", write=True)
        self.wr_compute = BytePort(cfg.vl, "act_wrc", write=True)

    def _read(self, m: Module, port: BytePort, i: int) -> None:
        W, shift = self.W, self.shift
        even, odd = (bank.read_port() for bank in self.banks)
        word = port.addr[shift:]
        parity, offset = Signal(name=f"act_rd{i}_par"), Signal(shift, name=f"act_rd{i}_off")
        m.d.comb += [even.addr.eq((word + 1) >> 1), odd.addr.eq(word >> 1), even.en.eq(port.en), odd.en.eq(port.en)]
        with m.If(port.en):
            m.d.sync += [parity.eq(word[0]), offset.eq(port.addr[:shift])]
        pair = Mux(parity, Cat(odd.data, even.data), Cat(even.data, odd.data))
        m.d.comb += port.data.eq(shift_units(pair, offset, 8, left=False)[:8 * port.nbytes])

    def _write(self, m: Module, port: BytePort, wports) -> None:
        """Shift the bytes and their mask into a two-word window; the low word goes to the bank of its
        parity, the high word (word + 1) to the other bank."""
        W, shift, n = self.W, self.shift, port.nbytes
        word, off = port.addr[shift:], port.addr[:shift]
        data2 = shift_units(Cat(port.data, Const(0, 8 * (2 * W - n))), off, 8, left=True)
        mask2 = shift_units(Cat(port.en, Const(0, 2 * W - n)), off, 1, left=True)
        lo_d, hi_d, lo_m, hi_m = data2[:8 * W], data2[8 * W:], mask2[:W], mask2[W:]
        even, odd = wports
        odd_word = word[0]
        m.d.comb += [
            even.addr.eq(Mux(odd_word, (word + 1) >> 1, word >> 1)), odd.addr.eq(word >> 1),
            even.data.eq(Mux(odd_word, hi_d, lo_d)), odd.data.eq(Mux(odd_word, lo_d, hi_d)),
            even.en.eq(Mux(odd_word, hi_m, lo_m)), odd.en.eq(Mux(odd_word, lo_m, hi_m))]

    def elaborate(self, platform):
        """Two banks, each with two read and two write ports."""
        m = Module()
        for b, bank in enumerate(self.banks):
            m.submodules[f"bank{b}"] = bank
        self._read(m, self.rd_compute, 0)
        self._read(m, self.rd_dma, 1)
        self._write(m, self.wr_dma, [bank.write_port(granularity=8) for bank in self.banks])
        self._write(m, self.wr_compute, [bank.write_port(granularity=8) for bank in self.banks])
        return m


class OverlayWgt(Elaboratable):
    """WGT: `rd` (tile index -> tile), `wr_tile` (tile index, tile, bm-bit row mask: TILE), `wr_dma`
    (byte address in the WGT space, bus_bytes bytes, byte mask: LOAD)."""

    def __init__(self, cfg: OverlayConfig):
        self.cfg = cfg
        self.tb = cfg.tile_bytes
        log2(self.tb, "tile bytes")
        self.mem = Memory(shape=8 * self.tb, depth=cfg.wgt_tiles, init=[])
        self.rd_addr, self.rd_en, self.rd_data = Signal(16), Signal(), Signal(8 * self.tb)
        self.tile_addr, self.tile_data, self.tile_en = Signal(16), Signal(8 * self.tb), Signal(cfg.bm)
        self.wr_dma = BytePort(cfg.bus_bytes, "wgt_wrd", write=True)

    def elaborate(self, platform):
        """One memory; TILE and LOAD writes on two byte-granular ports."""
        m = Module()
        m.submodules.mem = self.mem
        cfg, tb, B = self.cfg, self.tb, self.cfg.bus_bytes
        rd = self.mem.read_port()
        m.d.comb += [rd.addr.eq(self.rd_addr), rd.en.eq(self.rd_en), self.rd_data.eq(rd.data)]
        wt = self.mem.write_port(granularity=8)
        m.d.comb += [wt.addr.eq(self.tile_addr), wt.data.eq(self.tile_data),
                     wt.en.eq(Cat(*[self.tile_en[r].replicate(cfg.bk) for r in range(cfg.bm)]))]
        wd = self.mem.write_port(granularity=8)
        sh = log2(tb, "tile bytes")
        off = self.wr_dma.addr[:sh]
        m.d.comb += [wd.addr.eq(self.wr_dma.addr[sh:]),
                     wd.data.eq(shift_units(Cat(self.wr_dma.data, Const(0, 8 * max(tb - B, 0))), off, 8, left=True)[:8 * tb]),
                     wd.en.eq(shift_units(Cat(self.wr_dma.en, Const(0, max(tb - B, 0))), off, 1, left=True)[:tb])]
        return m


class OverlayParam(Elaboratable):
    """PARAM: `wr_dma` (byte address, bus_bytes bytes aligned to the bus, byte mask) and the vector
    unit's word read (`rd_addr` word index, `rd_en` -> `rd_data` one cycle later, held)."""

    def __init__(self, cfg: OverlayConfig):
        self.B = cfg.bus_bytes
        self.wsh = log2(cfg.bus_bytes // 4, "bus words per PARAM row")
        self.mem = Memory(shape=8 * self.B, depth=-(-cfg.param_words * 4 // self.B), init=[])
        self.wr_dma = BytePort(cfg.bus_bytes, "param_wrd", write=True)
        self.rd_addr, self.rd_en, self.rd_data = Signal(24), Signal(), Signal(32)

    def elaborate(self, platform):
        """One bus-wide memory; the read selects the word of the row."""
        m = Module()
        m.submodules.mem = self.mem
        bsh = log2(self.B, "bus_bytes")
        wp = self.mem.write_port(granularity=8)
        m.d.comb += [wp.addr.eq(self.wr_dma.addr[bsh:]), wp.data.eq(self.wr_dma.data), wp.en.eq(self.wr_dma.en)]
        rp = self.mem.read_port()
        sel = Signal(max(self.wsh, 1))
        m.d.comb += [rp.addr.eq(self.rd_addr >> self.wsh), rp.en.eq(self.rd_en)]
        if self.wsh:
            with m.If(self.rd_en):
                m.d.sync += sel.eq(self.rd_addr[:self.wsh])
            m.d.comb += self.rd_data.eq(rp.data.word_select(sel, 32))
        else:
            m.d.comb += self.rd_data.eq(rp.data)
        return m
