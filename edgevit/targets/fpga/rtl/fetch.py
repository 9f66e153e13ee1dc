"""The overlay's instruction fetch: read the stream over AXI4, decode, dispatch to the module queues.

After `start`, `Fetch` reads `insn_count` instructions of 32 bytes (isa.INSN_BYTES) from the physical
address `insn_base` (registers.py: INSN_BASE) in INCR bursts of up to `burst_insns` instructions, buffers them (a burst is
only requested when the buffer has room for all of it, so the R channel never stalls), and hands each
in order to the command queue of its module (isa.MODULE_OF): `load`, `compute`, `store`. It blocks when
that queue is full (docs/fpga-isa.md: the compiler's token rule (1) makes this deadlock-free).

The decoder is generated from isa.py: `insn_layout(op)` places every field at the offset
`isa.field_offsets` gives, and each queue's read side is a `data.View` of `queue_layout(module)`, a union
of the layouts of that module's instructions (`view.gemm.acc`, `view.load.dram`, `view.header.op`).
Like `isa.decode`, the decoder refuses an unknown opcode, dependency flags a module cannot have, or
stray bits above the op's last field: it sets the sticky `error` and stops dispatching.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from edgevit.targets.fpga.isa import INSN_BITS, INSN_BYTES, MODULE_OF, MODULES, OPCODES, field_offsets
from edgevit.targets.fpga.rtl.axi_dma import BurstWalker, axi_read_signature


def insn_layout(op: str) -> data.FlexibleLayout:
    """The 256-bit layout of instruction `op`: every field of isa.field_offsets(op) at its offset."""
    return data.FlexibleLayout(INSN_BITS, {name: data.Field(unsigned(width), offset)
                                           for name, offset, width in field_offsets(op)})


def queue_layout(module: str) -> data.UnionLayout:
    """A module queue entry: the union of its instructions' layouts (lower-case op names) and `header`."""
    ops = {op.lower(): insn_layout(op) for op in OPCODES if MODULE_OF[op] == module}
    return data.UnionLayout({"header": insn_layout("FINISH"), **ops})


def _used_bits(op: str) -> int:
    name, offset, width = field_offsets(op)[-1]
    return offset + width


def _illegal_flags(module: str) -> tuple[str, ...]:
    """The dependency flags an instruction of `module` may not set (isa._check_deps)."""
    return {"load": ("pop_prev", "push_prev"), "store": ("pop_next", "push_next")}.get(module, ())


class Fetch(wiring.Component):
    """Instruction fetch + decode + dispatch. `start` pulses with `insn_base`, `insn_count` valid; `busy` until every instruction is dispatched (or `error`: a decode error, `axi_error`: an error
    response); queues: `<module>_rdy`,
    `<module>_data` (a View of queue_layout(module)), `<module>_en` (pop)."""

    def __init__(self, cfg, queue_depth: int = 8, burst_insns: int = 4):
        assert INSN_BYTES % cfg.bus_bytes == 0, "an instruction must be a whole number of bus beats"
        self.cfg, self.queue_depth, self.burst_insns = cfg, queue_depth, burst_insns
        self.beats_per_insn = INSN_BYTES // cfg.bus_bytes
        assert burst_insns * self.beats_per_insn <= 256 and burst_insns & (burst_insns - 1) == 0
        queues = {}
        for mod in MODULES:
            queues.update({f"{mod}_rdy": Out(1), f"{mod}_data": Out(queue_layout(mod)), f"{mod}_en": In(1)})
        super().__init__({"start": In(1), "insn_base": In(32), "insn_count": In(32),
                          "axi": Out(axi_read_signature(cfg.bus_bytes)), "busy": Out(1), "error": Out(1), "axi_error": Out(1),
                          "dispatched": Out(32), **queues})

    def elaborate(self, platform):
        m, B, P = Module(), self.cfg.bus_bytes, self.beats_per_insn
        depth = 2 * self.burst_insns
        m.submodules.walk = walk = BurstWalker(B, self.burst_insns * P, count_width=40)
        m.submodules.ibuf = ibuf = fifo.SyncFIFO(width=INSN_BITS, depth=depth)
        queues = {}
        for mod in MODULES:
            m.submodules[f"{mod}_q"] = q = queues[mod] = fifo.SyncFIFO(width=INSN_BITS, depth=self.queue_depth)
            m.d.comb += [getattr(self, f"{mod}_rdy").eq(q.r_rdy), getattr(self, f"{mod}_data").eq(q.r_data),
                         q.r_en.eq(getattr(self, f"{mod}_en"))]
        axi, count = self.axi, Signal(32)
        running = Signal()
        m.d.comb += [walk.start.eq(self.start), walk.base.eq(self.insn_base), walk.stride.eq(0),
                     walk.rows.eq(1), walk.row_bytes.eq(self.insn_count * INSN_BYTES)]
        with m.If(self.start):
            m.d.sync += [running.eq(self.insn_count != 0), count.eq(self.insn_count), self.dispatched.eq(0),
                         self.error.eq(0), self.axi_error.eq(0)]
        m.d.comb += self.busy.eq(running & ~self.error & ~self.axi_error)

        # AR: a burst goes out only when the buffer has room for all its instructions.
        inflight = Signal(range(depth + 1))
        burst_insns = walk.beats >> (P.bit_length() - 1)
        room = ibuf.level + inflight + burst_insns <= depth
        m.d.comb += [axi.araddr.eq(walk.addr), axi.arlen.eq(walk.beats - 1), axi.arsize.eq(B.bit_length() - 1),
                     axi.arburst.eq(1), axi.arvalid.eq(walk.valid & room),
                     walk.ready.eq(axi.arready & room), axi.rready.eq(1)]
        ar_fire = axi.arvalid & axi.arready
        # R: assemble P beats into one instruction (beat k holds bytes k*B .. k*B+B-1).
        beat = Signal(range(P))
        asm = Signal(max(INSN_BITS - 8 * B, 1))
        whole = Cat(asm[:INSN_BITS - 8 * B], axi.rdata) if P > 1 else axi.rdata
        r_fire = axi.rvalid & axi.rready
        insn_in = r_fire & (beat == P - 1)
        if P > 1:
            with m.If(r_fire):
                m.d.sync += [beat.eq(Mux(beat == P - 1, 0, beat + 1)), asm.eq(whole[8 * B:])]
        m.d.comb += [ibuf.w_en.eq(insn_in), ibuf.w_data.eq(whole)]
        m.d.sync += inflight.eq(inflight + Mux(ar_fire, burst_insns, 0) - insn_in)
        with m.If(r_fire & axi.rresp[1]):
            m.d.sync += self.axi_error.eq(1)

        # Decode the buffer's head (generated from isa.py) and push it into its module's queue.
        word = ibuf.r_data
        legal, target = Signal(), Signal(range(len(MODULES)))
        with m.Switch(word[:4]):
            for op, code in OPCODES.items():
                with m.Case(code):
                    mod = MODULE_OF[op]
                    bad = [word[off] for name, off, _ in field_offsets(op) if name in _illegal_flags(mod)]
                    stray = word[_used_bits(op):] != 0 if _used_bits(op) < INSN_BITS else 0
                    m.d.comb += [legal.eq(~Cat(*bad, stray).any()), target.eq(MODULES.index(mod))]
        go = Signal()
        for i, mod in enumerate(MODULES):
            m.d.comb += queues[mod].w_data.eq(word)
            m.d.comb += queues[mod].w_en.eq(go & (target == i))
        ready = Cat(*[queues[mod].w_rdy for mod in MODULES]).bit_select(target, 1)
        m.d.comb += go.eq(ibuf.r_rdy & legal & ready & self.busy)
        m.d.comb += ibuf.r_en.eq(go)
        with m.If(go):
            m.d.sync += self.dispatched.eq(self.dispatched + 1)
            with m.If(self.dispatched + 1 == count):
                m.d.sync += running.eq(0)
        with m.If(ibuf.r_rdy & ~legal & running):
            m.d.sync += self.error.eq(1)
        return m

