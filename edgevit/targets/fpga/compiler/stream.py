"""The instruction list builder: dependency tokens, and the WGT / PARAM / ACC scratchpad rings.

Every instruction is added with the scratchpad ranges it reads and writes. The builder remembers, per
scratchpad unit (ACT in 16-byte granules, WGT tiles, PARAM words) and per module, the last instruction
that read and that wrote it. A new instruction that conflicts with an earlier one of a neighbouring module
(load <-> compute <-> store; a write and any other access) waits for it with a token
(docs/fpga-isa.md, "Modules, queues and dependency tokens"):

    compute after load    l2c: the load pushes (push_next), the compute pops (pop_prev)
    load after compute    c2l: the compute pushes (push_prev), the load pops (pop_next)
    store after compute   c2s: the compute pushes (push_next), the store pops (pop_prev)
    compute after store   s2c: the store pushes (push_prev), the compute pops (pop_next)

Tokens are consumed in order, so the builder marks exactly the last conflicting instruction (when it is
later than the one the previous wait of that queue covered): marks increase along the stream and each is
popped once, which keeps rule (1) (a pop follows its push) and lets loads run ahead (WGT slots rotate
over the whole scratchpad). ACC is touched by compute only, so it needs no tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevit.targets.fpga.compiler.common import FpgaCompileError, ceil_div
from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import MEM_CODES, MODULE_OF, Insn

ACT_GRANULE = 16
SPACES = ("act", "wgt", "param")
# (producer module, consumer module) -> (queue, producer's push flag, consumer's pop flag)
QUEUES = {("load", "compute"): ("l2c", "push_next", "pop_prev"),
          ("compute", "load"): ("c2l", "push_prev", "pop_next"),
          ("compute", "store"): ("c2s", "push_next", "pop_prev"),
          ("store", "compute"): ("s2c", "push_prev", "pop_next")}
NEIGHBOURS = {"load": ("compute",), "compute": ("load", "store"), "store": ("compute",)}
MAX_LOAD_ROW_BYTES = (1 << 16) - 4


@dataclass
class _Entry:
    op: str
    fields: dict
    region: str | None = None   # DDR region the `dram` field is relative to (relocated in `finish`)
    tag: str = ""               # "op:kernel" that emitted it (for the cycle estimate)


class StreamBuilder:
    """Collects instructions with their scratchpad accesses and sets the dependency flags (module doc)."""

    def __init__(self, cfg: OverlayConfig) -> None:
        self.cfg = cfg
        sizes = {"act": ceil_div(cfg.act_bytes, ACT_GRANULE), "wgt": cfg.wgt_tiles, "param": cfg.param_words}
        self._last = {(space, mod, kind): np.full(sizes[space], -1, dtype=np.int64)
                      for space in SPACES for mod in ("load", "compute", "store") for kind in ("r", "w")}
        self._synced = {q: -1 for q in QUEUES}
        self._pops: dict[tuple[str, str], list[tuple[int, int]]] = {q: [] for q in QUEUES}
        self.entries: list[_Entry] = []
        self._wgt_next = 0
        self._param_next = 0
        self._param_limit = cfg.param_words   # words [limit, param_words) hold pinned blocks
        self.acc = AccAllocator(cfg.acc_rows)
        self.tag = ""              # set by the compiler per kernel; recorded on every entry

    # ---- instructions -------------------------------------------------------------
    def add(self, op: str, reads=(), writes=(), region: str | None = None, **fields: int) -> int:
        """Append instruction `op` with `fields`; `reads`/`writes` are (space, start, stop) ranges in the
        space's unit (ACT bytes, WGT tiles, PARAM words). Returns its index in the stream."""
        module = MODULE_OF[op]
        idx = len(self.entries)
        need: dict[str, int] = {}
        for accesses, kinds in ((reads, ("w",)), (writes, ("r", "w"))):
            for space, lo, hi in accesses:
                a, b = self._units(space, lo, hi)
                for other in ("load", "compute", "store"):
                    if other == module:
                        continue
                    last = max(int(self._last[(space, other, k)][a:b].max(initial=-1)) for k in kinds)
                    if last < 0:
                        continue
                    if other not in NEIGHBOURS[module]:  # load <-> store: through the compute that waited
                        other, last = "compute", self._relay(other, last, idx, op, space, lo, hi)
                    need[other] = max(need.get(other, -1), last)
        entry = _Entry(op, dict(fields), region, self.tag)
        self.entries.append(entry)
        for other, last in need.items():
            queue = (other, module)
            if last > self._synced[queue]:
                _, push, pop = QUEUES[queue]
                self.entries[last].fields[push] = 1
                entry.fields[pop] = 1
                self._synced[queue] = last
                self._pops[queue].append((last, idx))
        for accesses, kind in ((reads, "r"), (writes, "w")):
            for space, lo, hi in accesses:
                a, b = self._units(space, lo, hi)
                self._last[(space, module, kind)][a:b] = idx
        return idx

    def _relay(self, producer: str, last: int, idx: int, op: str, space: str, lo: int, hi: int) -> int:
        """The first compute instruction that waited for `producer` instruction `last` (or a later one): a
        store after a load (or a load after a store) waits for that compute instead."""
        for prod, consumer in self._pops[(producer, "compute")]:
            if prod >= last:
                return consumer
        raise FpgaCompileError(f"instruction {idx} ({op}) conflicts with {producer} instruction {last} on "
                               f"{space}[{lo}:{hi}] and no compute instruction orders them")

    def _units(self, space: str, lo: int, hi: int) -> tuple[int, int]:
        limit = {"act": self.cfg.act_bytes, "wgt": self.cfg.wgt_tiles, "param": self.cfg.param_words}[space]
        if not 0 <= lo < hi <= limit:
            raise FpgaCompileError(f"access {space}[{lo}:{hi}] is outside the scratchpad (size {limit})")
        if space == "act":
            return lo // ACT_GRANULE, ceil_div(hi, ACT_GRANULE)
        return lo, hi

    # ---- loads of constants ---------------------------------------------------------
    def load_act(self, dram: int, sram: int, rows: int, row_bytes: int, dram_stride: int, sram_stride: int,
                 region: str = "weights") -> int:
        """LOAD `rows` rows of `row_bytes` from DDR (`region`-relative offset) into ACT."""
        span = (rows - 1) * sram_stride + row_bytes
        return self.add("LOAD", writes=[("act", sram, sram + span)], region=region, mem=MEM_CODES["act"],
                        sram=sram, dram=dram, rows=rows, row_bytes=row_bytes, dram_stride=dram_stride,
                        sram_stride=sram_stride)

    def load_tile(self, dram: int) -> int:
        """LOAD one bm x bk tile from the weight image into the next WGT slot; returns the slot."""
        slot = self._wgt_next
        self._wgt_next = (self._wgt_next + 1) % self.cfg.wgt_tiles
        tb = self.cfg.tile_bytes
        self.add("LOAD", writes=[("wgt", slot, slot + 1)], region="weights", mem=MEM_CODES["wgt"], sram=slot,
                 dram=dram, rows=1, row_bytes=tb, dram_stride=tb, sram_stride=0)
        return slot

    def load_tiles(self, slot: int, dram: int, count: int) -> int:
        """LOAD `count` consecutive tiles of the weight image (offset `dram`) into WGT slots slot..slot+count
        (one row a tile); returns the instruction index."""
        tb = self.cfg.tile_bytes
        return self.add("LOAD", writes=[("wgt", slot, slot + count)], region="weights", mem=MEM_CODES["wgt"],
                        sram=slot, dram=dram, rows=count, row_bytes=tb, dram_stride=tb, sram_stride=0)

    def next_tile_slot(self) -> int:
        """The next WGT slot of the ring (for TILE, which builds a tile from ACT)."""
        slot = self._wgt_next
        self._wgt_next = (self._wgt_next + 1) % self.cfg.wgt_tiles
        return slot

    def reserve_param(self, nwords: int) -> int:
        """First word index of `nwords` PARAM words in the ring below the pinned blocks (wrapping to 0 when
        its end is reached); loads into it wait for every compute that still reads those words (the tokens
        of `add`)."""
        if nwords > self._param_limit:
            raise FpgaCompileError(f"a PARAM block of {nwords} words exceeds the overlay's {self._param_limit} "
                                   f"(of {self.cfg.param_words}; {self.cfg.param_words - self._param_limit} pinned)")
        if self._param_next + nwords > self._param_limit:
            self._param_next = 0
        base = self._param_next
        self._param_next += nwords
        return base

    def pin_param(self, nwords: int, budget: int) -> int | None:
        """First word of `nwords` PARAM words pinned at the top of PARAM for the rest of the stream (the ring
        shrinks below them), or None when the pinned words would pass `budget`."""
        pinned = self.cfg.param_words - self._param_limit
        if pinned + nwords > budget:
            return None
        self._param_limit -= nwords
        return self._param_limit

    def load_param(self, base: int, dram: int, nwords: int) -> None:
        """LOAD `nwords` int32 words from the weight image (offset `dram`) to PARAM[base:]."""
        per_load = MAX_LOAD_ROW_BYTES // 4
        for start in range(0, nwords, per_load):
            n = min(per_load, nwords - start)
            self.add("LOAD", writes=[("param", base + start, base + start + n)], region="weights",
                     mem=MEM_CODES["param"], sram=base + start, dram=dram + 4 * start, rows=1, row_bytes=4 * n,
                     dram_stride=4 * n, sram_stride=0)

    def move_bytes(self, op: str, dram: int, sram: int, nbytes: int, region: str) -> None:
        """LOAD (DDR -> ACT) or STORE (ACT -> DDR) of `nbytes` contiguous bytes, split into rows that fit
        the 16-bit row_bytes field."""
        chunk = MAX_LOAD_ROW_BYTES
        done = 0
        while done < nbytes:
            row = min(chunk, nbytes - done)
            rows = min((nbytes - done) // row, (1 << 16) - 1)
            span = [("act", sram + done, sram + done + rows * row)]
            self.add(op, reads=span if op == "STORE" else (), writes=span if op == "LOAD" else (), region=region,
                     mem=MEM_CODES["act"], sram=sram + done, dram=dram + done, rows=rows, row_bytes=row,
                     dram_stride=row, sram_stride=row)
            done += rows * row

    # ---- the end ----------------------------------------------------------------------
    def finish(self, regions: dict[str, int]) -> list[Insn]:
        """Append FINISH (popping the last store's token) and return the instructions with every `dram`
        field relocated by its region's DDR offset."""
        stores = [i for i, e in enumerate(self.entries) if e.op == "STORE"]
        fin = _Entry("FINISH", {}, None, "finish")
        if stores:
            self.entries[stores[-1]].fields["push_prev"] = 1
            fin.fields["pop_next"] = 1
        self.entries.append(fin)
        out = []
        for e in self.entries:
            fields = dict(e.fields)
            if e.region is not None:
                fields["dram"] = fields["dram"] + regions[e.region]
            out.append(Insn(e.op, **fields))
        return out


class AccAllocator:
    """First-fit allocation of ACC row ranges (compute-only scratchpad: no tokens, just capacity)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._used: dict[int, int] = {}  # start -> length

    def alloc(self, n: int, what: str) -> int:
        """Start row of a free range of `n` rows; FpgaCompileError naming `what` when ACC is full."""
        start = 0
        for s, ln in sorted(self._used.items()):
            if s - start >= n:
                break
            start = max(start, s + ln)
        if start + n > self.rows:
            raise FpgaCompileError(f"{what}: needs {n} ACC rows but only {self.rows - sum(self._used.values())} "
                                   f"of {self.rows} are free")
        self._used[start] = n
        return start

    def free(self, start: int) -> None:
        """Release the range that starts at `start`."""
        del self._used[start]
