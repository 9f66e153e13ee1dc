"""The overlay's DMA engines: LOAD (DDR -> scratchpad) and STORE (ACT -> DDR) as AXI4 masters.

A LOAD or STORE (docs/fpga-isa.md) is a two-dimensional copy: row `r` moves `row_bytes` bytes between
DDR `DDR_BASE + dram + r*dram_stride` and the scratchpad. Each side walks its own copy of the same
byte sequence, so the engines need no per-beat bookkeeping between them:

- `BurstWalker` cuts every row into AXI4 INCR bursts over the bus-aligned words covering it: at most
  `max_beats` (<= 256) beats, never crossing a 4 KB boundary (AXI4 A3.4.1).
- `BeatWalker` walks the same words one at a time and says which bytes of each belong to the row
  (`off`, `n`): the first word of an unaligned row starts at `off = addr % bus_bytes`.
- `Realigner` turns a stream of partial source words into destination words with byte enables, so a
  row may start at any byte offset on both sides.

The scratchpad side is a `bus_bytes`-wide word port addressed by word index (byte address //
bus_bytes) with byte enables; the overlay routes it by `mem` (0 ACT, 1 WGT, 2 PARAM). The AXI ports
carry only the signals the engines drive; the top level ties AxID = 0, AxCACHE = 0b0011, AxPROT = 0.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from edgevit.targets.fpga.isa import field_offsets

BURST_INCR = 0b01
PAGE_BYTES = 4096


def axi_read_signature(bus_bytes: int, addr_width: int = 32) -> wiring.Signature:
    """AR + R channels of an AXI4 read master (`Out` = driven by the master)."""
    return wiring.Signature({
        "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arvalid": Out(1), "arready": In(1),
        "rdata": In(8 * bus_bytes), "rresp": In(2), "rlast": In(1), "rvalid": In(1), "rready": Out(1)})


def axi_write_signature(bus_bytes: int, addr_width: int = 32) -> wiring.Signature:
    """AW + W + B channels of an AXI4 write master (`Out` = driven by the master)."""
    return wiring.Signature({
        "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(8 * bus_bytes), "wstrb": Out(bus_bytes), "wlast": Out(1), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1)})


def plan_bursts(addr: int, nbytes: int, bus_bytes: int, max_beats: int = 256) -> list[tuple[int, int]]:
    """Reference model of `BurstWalker` for one row: [(aligned address, beats)] covering [addr, addr+nbytes)."""
    cur, end, out = addr - addr % bus_bytes, -(-(addr + nbytes) // bus_bytes) * bus_bytes, []
    while nbytes and cur < end:
        beats = min((end - cur) // bus_bytes, max_beats, (PAGE_BYTES - cur % PAGE_BYTES) // bus_bytes)
        out.append((cur, beats))
        cur += beats * bus_bytes
    return out


def _log2(x: int) -> int:
    assert x > 0 and x & (x - 1) == 0, f"{x} is not a power of two"
    return x.bit_length() - 1


class BurstWalker(wiring.Component):
    """The AXI bursts of a 2-D transfer: after `start`, `valid` with (`addr`, `beats`) until all rows are cut.

    Inputs are sampled at `start`: `base` (byte address of row 0), `stride`, `rows`, `row_bytes`.
    `ready` advances to the next burst."""

    def __init__(self, bus_bytes: int, max_beats: int = 256, count_width: int = 16):
        assert 1 <= max_beats <= 256
        self.bus_bytes, self.max_beats = bus_bytes, max_beats
        super().__init__({"start": In(1), "base": In(32), "stride": In(32), "rows": In(16),
                          "row_bytes": In(count_width), "valid": Out(1), "ready": In(1),
                          "addr": Out(32), "beats": Out(9)})

    def elaborate(self, platform):
        m, B, sh = Module(), self.bus_bytes, _log2(self.bus_bytes)
        rows_left, row_addr = Signal(16), Signal(32)
        cur, end, row_bytes, stride = Signal(32), Signal(32), Signal.like(self.row_bytes), Signal(32)

        def row_start(addr, nbytes):
            return [cur.eq(addr & ~(B - 1)), end.eq((addr + nbytes + B - 1) & ~(B - 1)), row_addr.eq(addr)]

        left = Signal(32)
        to_page = Signal(range(PAGE_BYTES // B + 1))
        m.d.comb += [left.eq((end - cur)[:32] >> sh), to_page.eq((PAGE_BYTES - cur[:12]) >> sh)]
        beats = Signal(9)
        cap = Mux(to_page < self.max_beats, to_page, self.max_beats)  # min(max_beats, to_page, left),
        m.d.comb += beats.eq(Mux(left < cap, left, cap))              # no combinational loop through beats
        m.d.comb += [self.addr.eq(cur), self.beats.eq(beats), self.valid.eq(rows_left != 0)]

        with m.If(self.start):
            with m.If((self.rows != 0) & (self.row_bytes != 0)):
                m.d.sync += [rows_left.eq(self.rows), row_bytes.eq(self.row_bytes), stride.eq(self.stride)]
                m.d.sync += row_start(self.base, self.row_bytes)
        with m.Elif(self.valid & self.ready):
            nxt = (cur + (beats << sh))[:32]
            m.d.sync += cur.eq(nxt)
            with m.If(nxt == end):
                m.d.sync += rows_left.eq(rows_left - 1)
                m.d.sync += row_start((row_addr + stride)[:32], row_bytes)
        return m


class BeatWalker(wiring.Component):
    """The bus words of a 2-D transfer one at a time: `valid` with the word's byte address `addr`
    (aligned), the row's bytes in it (`off`, `n`: bytes [off, off+n)) and `last` (the transfer's final word)."""

    def __init__(self, bus_bytes: int, count_width: int = 16):
        self.bus_bytes = bus_bytes
        super().__init__({"start": In(1), "base": In(32), "stride": In(32), "rows": In(16),
                          "row_bytes": In(count_width), "valid": Out(1), "ready": In(1), "addr": Out(32),
                          "off": Out(range(bus_bytes)), "n": Out(range(bus_bytes + 1)), "last": Out(1)})

    def elaborate(self, platform):
        m, B = Module(), self.bus_bytes
        rows_left, row_addr, stride = Signal(16), Signal(32), Signal(32)
        row_bytes, remaining = Signal.like(self.row_bytes), Signal.like(self.row_bytes)
        pos, off = Signal(32), Signal(range(B))
        room = B - off
        m.d.comb += [self.valid.eq(rows_left != 0), self.addr.eq(pos), self.off.eq(off),
                     self.n.eq(Mux(remaining < room, remaining, room)),
                     self.last.eq((rows_left == 1) & (remaining <= room))]

        def row_start(addr, nbytes):
            return [pos.eq(addr & ~(B - 1)), off.eq(addr[:_log2(B)] if B > 1 else 0), remaining.eq(nbytes),
                    row_addr.eq(addr)]

        with m.If(self.start):
            with m.If((self.rows != 0) & (self.row_bytes != 0)):
                m.d.sync += [rows_left.eq(self.rows), row_bytes.eq(self.row_bytes), stride.eq(self.stride)]
                m.d.sync += row_start(self.base, self.row_bytes)
        with m.Elif(self.valid & self.ready):
            with m.If(remaining <= room):
                m.d.sync += rows_left.eq(rows_left - 1)
                m.d.sync += row_start((row_addr + stride)[:32], row_bytes)
            with m.Else():
                m.d.sync += [pos.eq(pos + B), off.eq(0), remaining.eq(remaining - room)]
        return m


def _shr_bytes(x, k, width_bytes: int):
    """x >> 8k, `width_bytes` bytes wide (k a Value)."""
    return Cat(x, Const(0, 8 * width_bytes)).bit_select(k * 8, 8 * width_bytes)


def _shl_bytes(x, k, width_bytes: int):
    """(x << 8k) truncated to `width_bytes` bytes (k a Value, k <= width_bytes)."""
    w = 8 * width_bytes
    padded = Cat(Const(0, w), x, Const(0, max(0, w - len(x))))
    return padded.bit_select((w - k * 8).as_unsigned(), w)


class Realigner(wiring.Component):
    """A byte stream between two alignments. In: words with valid bytes [i_off, i_off+i_n). Out: when the
    consumer asks for `o_n` bytes at offset `o_off`, `o_valid` with `o_data` and byte enables `o_be`."""

    def __init__(self, bus_bytes: int):
        B = self.bus_bytes = bus_bytes
        super().__init__({"i_valid": In(1), "i_ready": Out(1), "i_data": In(8 * B), "i_off": In(range(B)),
                          "i_n": In(range(B + 1)), "want": In(1), "o_off": In(range(B)), "o_n": In(range(B + 1)),
                          "o_valid": Out(1), "o_ready": In(1), "o_data": Out(8 * B), "o_be": Out(B)})

    def elaborate(self, platform):
        m, B = Module(), self.bus_bytes
        buf, n = Signal(16 * B), Signal(range(2 * B + 1))    # n valid bytes at the bottom of buf, zeros above
        m.d.comb += [self.i_ready.eq(n < B), self.o_valid.eq(self.want & (n >= self.o_n) & (self.o_n != 0)),
                     self.o_data.eq(_shl_bytes(buf[:8 * B] & Cat(*[(i < self.o_n).replicate(8) for i in range(B)]),
                                               self.o_off, B)),    # stable while waiting: bytes not enabled are 0
                     self.o_be.eq(Cat(*[(self.o_off <= i) & (i < self.o_off + self.o_n) for i in range(B)]))]
        emit, accept = self.o_valid & self.o_ready, self.i_valid & self.i_ready
        taken = Mux(emit, self.o_n, 0)
        keep = (n - taken)[:len(n)]
        mask = Cat(*[(i < self.i_n).replicate(8) for i in range(B)])
        packed = _shr_bytes(self.i_data, self.i_off, B) & mask
        m.d.sync += [buf.eq(_shr_bytes(buf, taken, 2 * B) | Mux(accept, _shl_bytes(packed, keep, 2 * B), 0)),
                     n.eq(keep + Mux(accept, self.i_n, 0))]
        return m


def _field(insn, name: str, op: str = "LOAD"):
    """Field `name` of a LOAD/STORE instruction word, sliced at the offset isa.field_offsets gives."""
    for fname, offset, width in field_offsets(op):
        if fname == name:
            return insn[offset:offset + width]
    raise KeyError(name)


class _DmaBase(wiring.Component):
    """Command decoding common to both engines: `start` (one cycle, `insn` held until `done`), `ddr_base`."""

    def _command(self, m, cfg):
        insn = self.insn
        mem = _field(insn, "mem")
        sram, rows, row_bytes = _field(insn, "sram"), _field(insn, "rows"), _field(insn, "row_bytes")
        sram_base = Mux(mem == 1, sram * cfg.tile_bytes, Mux(mem == 2, sram * 4, sram))[:32]
        sram_stride = Mux(mem == 0, _field(insn, "sram_stride"), row_bytes)
        dram = (self.ddr_base + _field(insn, "dram"))[:32]
        return dict(mem=mem, sram_base=sram_base, sram_stride=sram_stride, dram=dram,
                    dram_stride=_field(insn, "dram_stride"), rows=rows, row_bytes=row_bytes)

    def _connect(self, m, walker, cmd, side: str):
        base, stride = (cmd["dram"], cmd["dram_stride"]) if side == "dram" else (cmd["sram_base"], cmd["sram_stride"])
        m.d.comb += [walker.start.eq(self.start), walker.base.eq(base), walker.stride.eq(stride),
                     walker.rows.eq(cmd["rows"]), walker.row_bytes.eq(cmd["row_bytes"])]


class DmaLoad(_DmaBase):
    """LOAD: AXI4 reads from DDR, realigned and written to the scratchpad word port `wr_*` (word index,
    `bus_bytes` data, byte enables, routed by `wr_mem`). `done` pulses one cycle after the last write."""

    def __init__(self, cfg, max_beats: int = 256):
        self.cfg, self.max_beats = cfg, max_beats
        B = cfg.bus_bytes
        super().__init__({"start": In(1), "insn": In(256), "ddr_base": In(32), "busy": Out(1), "done": Out(1),
                          "axi": Out(axi_read_signature(B)), "wr_en": Out(1), "wr_ready": In(1),
                          "wr_mem": Out(2), "wr_addr": Out(32), "wr_data": Out(8 * B), "wr_be": Out(B),
                          "resp_error": Out(1)})

    def elaborate(self, platform):
        m, B = Module(), self.cfg.bus_bytes
        m.submodules.ar = ar = BurstWalker(B, self.max_beats)
        m.submodules.src = src = BeatWalker(B)
        m.submodules.dst = dst = BeatWalker(B)
        m.submodules.align = al = Realigner(B)
        cmd = self._command(m, self.cfg)
        self._connect(m, ar, cmd, "dram")
        self._connect(m, src, cmd, "dram")
        self._connect(m, dst, cmd, "sram")
        axi = self.axi
        m.d.comb += [axi.araddr.eq(ar.addr), axi.arlen.eq(ar.beats - 1), axi.arsize.eq(_log2(B)),
                     axi.arburst.eq(BURST_INCR), axi.arvalid.eq(ar.valid), ar.ready.eq(axi.arready)]
        m.d.comb += [al.i_valid.eq(axi.rvalid & src.valid), al.i_data.eq(axi.rdata), al.i_off.eq(src.off),
                     al.i_n.eq(src.n), axi.rready.eq(al.i_ready & src.valid), src.ready.eq(axi.rvalid & al.i_ready)]
        m.d.comb += [al.want.eq(dst.valid), al.o_off.eq(dst.off), al.o_n.eq(dst.n), al.o_ready.eq(self.wr_ready),
                     dst.ready.eq(al.o_valid & self.wr_ready), self.wr_en.eq(al.o_valid),
                     self.wr_addr.eq(dst.addr >> _log2(B)), self.wr_data.eq(al.o_data), self.wr_be.eq(al.o_be)]
        mem = Signal(2)
        running = Signal()
        with m.If(self.start):
            m.d.sync += [mem.eq(cmd["mem"]), running.eq(1), self.resp_error.eq(0)]
        with m.Elif(running & ~ar.valid & ~src.valid & ~dst.valid):
            m.d.sync += running.eq(0)
        m.d.comb += [self.wr_mem.eq(mem), self.busy.eq(running),
                     self.done.eq(running & ~ar.valid & ~src.valid & ~dst.valid)]
        with m.If(axi.rvalid & axi.rready & axi.rresp[1]):
            m.d.sync += self.resp_error.eq(1)
        return m


class DmaStore(_DmaBase):
    """STORE: reads ACT through the word port `rd_*` (data one cycle after `rd_en`), realigns and writes
    DDR with AXI4 write bursts; `done` pulses once every write response has arrived."""

    def __init__(self, cfg, max_beats: int = 256, fifo_depth: int = 4):
        self.cfg, self.max_beats, self.fifo_depth = cfg, max_beats, fifo_depth
        B = cfg.bus_bytes
        super().__init__({"start": In(1), "insn": In(256), "ddr_base": In(32), "busy": Out(1), "done": Out(1),
                          "axi": Out(axi_write_signature(B)), "rd_en": Out(1), "rd_addr": Out(32),
                          "rd_data": In(8 * B), "resp_error": Out(1)})

    def elaborate(self, platform):
        m, B = Module(), self.cfg.bus_bytes
        m.submodules.aw = aw = BurstWalker(B, self.max_beats)
        m.submodules.wb = wb = BurstWalker(B, self.max_beats)     # the same bursts again, for WLAST
        m.submodules.src = src = BeatWalker(B)
        m.submodules.dst = dst = BeatWalker(B)
        m.submodules.align = al = Realigner(B)
        ob = len(src.off)
        m.submodules.q = q = fifo.SyncFIFO(width=8 * B + ob + len(src.n), depth=self.fifo_depth)
        cmd = self._command(m, self.cfg)
        for walker, side in ((aw, "dram"), (wb, "dram"), (src, "sram"), (dst, "dram")):
            self._connect(m, walker, cmd, side)
        axi = self.axi
        # ACT reads: one in flight at most, issued only when the FIFO will have room for its data.
        pend, pend_off, pend_n = Signal(), Signal.like(src.off), Signal.like(src.n)
        issue = src.valid & (q.level + pend < self.fifo_depth)
        m.d.comb += [self.rd_en.eq(issue), self.rd_addr.eq(src.addr >> _log2(B)), src.ready.eq(issue)]
        m.d.sync += [pend.eq(issue), pend_off.eq(src.off), pend_n.eq(src.n)]
        m.d.comb += [q.w_en.eq(pend), q.w_data.eq(Cat(self.rd_data, pend_off, pend_n))]
        m.d.comb += [al.i_valid.eq(q.r_rdy), al.i_data.eq(q.r_data[:8 * B]), al.i_off.eq(q.r_data[8 * B:8 * B + ob]),
                     al.i_n.eq(q.r_data[8 * B + ob:]), q.r_en.eq(al.i_ready)]
        # AW runs ahead; a W burst starts only after its AW went out (aw_ahead counts those not yet written).
        aw_ahead, outstanding, beat = Signal(20), Signal(20), Signal(9)
        m.d.comb += [axi.awaddr.eq(aw.addr), axi.awlen.eq(aw.beats - 1), axi.awsize.eq(_log2(B)),
                     axi.awburst.eq(BURST_INCR), axi.awvalid.eq(aw.valid), aw.ready.eq(axi.awready)]
        wlast = beat == wb.beats - 1
        wgo = wb.valid & (aw_ahead != 0)
        m.d.comb += [al.want.eq(dst.valid & wgo), al.o_off.eq(dst.off), al.o_n.eq(dst.n), al.o_ready.eq(axi.wready),
                     axi.wvalid.eq(al.o_valid), axi.wdata.eq(al.o_data), axi.wstrb.eq(al.o_be), axi.wlast.eq(wlast),
                     dst.ready.eq(al.o_valid & axi.wready)]
        w_fire, aw_fire = axi.wvalid & axi.wready, axi.awvalid & axi.awready
        m.d.comb += wb.ready.eq(w_fire & wlast)
        with m.If(w_fire):
            m.d.sync += beat.eq(Mux(wlast, 0, beat + 1))
        m.d.sync += aw_ahead.eq(aw_ahead + aw_fire - (w_fire & wlast))
        m.d.comb += axi.bready.eq(1)
        b_fire = axi.bvalid & axi.bready
        m.d.sync += outstanding.eq(outstanding + aw_fire - b_fire)
        with m.If(b_fire & axi.bresp[1]):
            m.d.sync += self.resp_error.eq(1)
        running = Signal()
        idle = ~aw.valid & ~wb.valid & ~src.valid & ~dst.valid & (outstanding == 0) & ~pend & ~q.r_rdy
        with m.If(self.start):
            m.d.sync += [running.eq(1), self.resp_error.eq(0)]
        with m.Elif(running & idle):
            m.d.sync += running.eq(0)
        m.d.comb += [self.busy.eq(running), self.done.eq(running & idle)]
        return m
