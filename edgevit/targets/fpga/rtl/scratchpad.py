"""The overlay's on-chip memories ACT, WGT and ACC (docs/fpga-isa.md, "Memories"), sized by an
`OverlayConfig`, as Amaranth memories (block RAM on the FPGA).

- `ActScratchpad`: `act_bytes` bytes, stored as words of `bk` bytes in two banks (even and odd
  words). A read port returns the `bk` bytes at ANY byte address one cycle later: it reads the word
  holding the address and the next one (one from each bank, in the same cycle) and shifts by the
  byte offset. A write port writes one word with a byte mask.
- `WgtScratchpad`: `wgt_tiles` tiles, one tile (`bm*bk` bytes, `W[m][k]` at byte `m*bk + k`) a word:
  the GEMM array loads a whole tile in one read. Writes have a row mask (`bm` bits, `bk` bytes each).
- `AccScratchpad`: `acc_rows` rows of `bm` int32 (lane `m` at bits `32m..32m+31`). Read port 0
  belongs to the GEMM array and is transparent to the write port (its read-modify-write pipeline);
  further read ports (the vector unit's REQUANT / SOFTMAX) are plain synchronous reads.

Every read port has `addr`, `en` (hold the data when low) and `data` (valid the cycle after `en`).
`init` arguments preload the contents (tests, simulation).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib.memory import Memory

from edgevit.targets.fpga.config import OverlayConfig

ACT_ADDR_BITS = 24  # the ISA's ACT byte addresses
TILE_BITS = 16      # WGT tile indices
ACC_BITS = 16       # ACC row indices


class ReadPort:
    """A read request/response: addr and en driven by the reader, data by the memory (next cycle)."""

    def __init__(self, addr_bits: int, data_bits: int, name: str):
        self.addr = Signal(addr_bits, name=f"{name}_addr")
        self.en = Signal(name=f"{name}_en")
        self.data = Signal(data_bits, name=f"{name}_data")


class WritePort:
    """A write: addr, data and en (a mask: one bit per byte for ACT, per row for WGT, 1 bit for ACC)."""

    def __init__(self, addr_bits: int, data_bits: int, en_bits: int, name: str):
        self.addr = Signal(addr_bits, name=f"{name}_addr")
        self.data = Signal(data_bits, name=f"{name}_data")
        self.en = Signal(en_bits, name=f"{name}_en")


def _log2(x: int, what: str) -> int:
    if x <= 0 or x & (x - 1):
        raise ValueError(f"{what} = {x} must be a power of two")
    return x.bit_length() - 1


class ActScratchpad(Elaboratable):
    """ACT: `cfg.act_bytes` bytes; `read_ports` unaligned bk-byte read ports (`read[i]`, byte
    addressed), one word write port `write` (word index = byte address // bk, bk-bit byte mask)."""

    def __init__(self, cfg: OverlayConfig, read_ports: int = 1, init: bytes | None = None):
        self.bk = cfg.bk
        self.shift = _log2(cfg.bk, "bk")
        if cfg.act_bytes % (2 * cfg.bk):
            raise ValueError(f"act_bytes = {cfg.act_bytes} must be a multiple of 2*bk = {2 * cfg.bk}")
        self.words = cfg.act_bytes // cfg.bk
        bank_depth = self.words // 2 + 1  # one spare word: reading the last bk bytes touches word+1
        data = bytes(init or b"").ljust((bank_depth * 2) * cfg.bk, b"\0")
        word = [int.from_bytes(data[i * cfg.bk:(i + 1) * cfg.bk], "little") for i in range(bank_depth * 2)]
        self.banks = [Memory(shape=8 * cfg.bk, depth=bank_depth, init=word[b::2]) for b in range(2)]
        self.read = [ReadPort(ACT_ADDR_BITS, 8 * cfg.bk, f"act_rd{i}") for i in range(read_ports)]
        self.write = WritePort(ACT_ADDR_BITS - self.shift, 8 * cfg.bk, cfg.bk, "act_wr")
        self._rd = [[bank.read_port() for bank in self.banks] for _ in self.read]
        self._wr = [bank.write_port(granularity=8) for bank in self.banks]

    def elaborate(self, platform):
        """Two banks; each read port reads both and shifts; the write goes to the word's bank."""
        m = Module()
        for b, bank in enumerate(self.banks):
            m.submodules[f"bank{b}"] = bank
        bk, shift = self.bk, self.shift
        for port, (even, odd) in zip(self.read, self._rd):
            word = port.addr[shift:]
            parity, offset = Signal(), Signal(shift)
            m.d.comb += [even.addr.eq((word + 1) >> 1), odd.addr.eq(word >> 1), even.en.eq(port.en),
                         odd.en.eq(port.en)]
            with m.If(port.en):
                m.d.sync += [parity.eq(word[0]), offset.eq(port.addr[:shift])]
            pair = Mux(parity, Cat(odd.data, even.data), Cat(even.data, odd.data))
            m.d.comb += port.data.eq(pair.bit_select(offset * 8, 8 * bk))
        w = self.write
        for b, port in enumerate(self._wr):
            m.d.comb += [port.addr.eq(w.addr >> 1), port.data.eq(w.data),
                         port.en.eq(Mux(w.addr[0] == b, w.en, 0))]
        return m


class WgtScratchpad(Elaboratable):
    """WGT: `cfg.wgt_tiles` tiles of bm*bk bytes; read port `read` (tile index -> whole tile) and write
    port `write` (tile index, tile data, bm-bit row mask)."""

    def __init__(self, cfg: OverlayConfig, init: list[bytes] | None = None):
        tile_bytes = cfg.bm * cfg.bk
        words = [int.from_bytes(t, "little") for t in (init or [])]
        self.mem = Memory(shape=8 * tile_bytes, depth=cfg.wgt_tiles, init=words)
        self.read = ReadPort(TILE_BITS, 8 * tile_bytes, "wgt_rd")
        self.write = WritePort(TILE_BITS, 8 * tile_bytes, cfg.bm, "wgt_wr")
        self._rd = self.mem.read_port()
        self._wr = self.mem.write_port(granularity=8 * cfg.bk)

    def elaborate(self, platform):
        """One memory, one read and one row-masked write port."""
        m = Module()
        m.submodules.mem = self.mem
        m.d.comb += [self._rd.addr.eq(self.read.addr), self._rd.en.eq(self.read.en), self.read.data.eq(self._rd.data),
                     self._wr.addr.eq(self.write.addr), self._wr.data.eq(self.write.data),
                     self._wr.en.eq(self.write.en)]
        return m


class AccScratchpad(Elaboratable):
    """ACC: `cfg.acc_rows` rows of bm int32; `read[0]` (GEMM, transparent to `write`), `read[1:]` plain."""

    def __init__(self, cfg: OverlayConfig, read_ports: int = 2, init: list[list[int]] | None = None):
        self.bm = cfg.bm
        rows = [sum((v & 0xFFFFFFFF) << (32 * i) for i, v in enumerate(row)) for row in (init or [])]
        self.mem = Memory(shape=32 * cfg.bm, depth=cfg.acc_rows, init=rows)
        self.write = WritePort(ACC_BITS, 32 * cfg.bm, 1, "acc_wr")
        self._wr = self.mem.write_port()
        self.read = [ReadPort(ACC_BITS, 32 * cfg.bm, f"acc_rd{i}") for i in range(read_ports)]
        self._rd = [self.mem.read_port(transparent_for=(self._wr,) if i == 0 else ()) for i in range(read_ports)]

    def elaborate(self, platform):
        """One memory; read port 0 sees a write to its row in the same cycle."""
        m = Module()
        m.submodules.mem = self.mem
        for port, rd in zip(self.read, self._rd):
            m.d.comb += [rd.addr.eq(port.addr), rd.en.eq(port.en), port.data.eq(rd.data)]
        m.d.comb += [self._wr.addr.eq(self.write.addr), self._wr.data.eq(self.write.data),
                     self._wr.en.eq(self.write.en)]
        return m
