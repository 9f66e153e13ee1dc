"""The overlay's top level (docs/fpga-isa.md): fetch -> three command queues -> the load, compute and
store modules, their dependency tokens, the scratchpads, one AXI4 master and the AXI4-Lite registers.

    top = Overlay(cfg)                     # an amaranth Elaboratable
    verilog = overlay_verilog(cfg)         # the Verilog of module `edgevit_overlay` (ports: clk, rst,
                                           # m_axi_* AXI4 master, s_axil_* AXI4-Lite slave, irq)

Data path. The fetcher (fetch.Fetch: its decoder is generated from isa.py and refuses what isa.decode
refuses) streams INSN_COUNT instructions from INSN_BASE and moves each into the queue of its module
(LOAD -> load, STORE -> store, the rest -> compute), blocking while that queue is full. Each module
runs its queue in order (`Sequencer`): it waits until every counter it pops is non-zero
(tokens.TokenCounters; a push past 255 sets the overlay's error), pops them, starts its unit, waits
until the unit is idle again, then pushes; consecutive GEMMs overlap (gemm_unit's `ready`). Units: load = DmaLoad (DDR -> ACT / WGT /
PARAM), compute = GemmUnit (GEMM, TILE) or VectorUnit (REQUANT, ADD, LAYERNORM, SOFTMAX, COPY,
MEANPOOL, LUT) or MergeUnit (MERGE) one instruction at a time, store = DmaStore (ACT -> DDR).
FINISH (compute) sets CTRL.done once its pops are satisfied. The MERGE engine holds at most
MERGE_MAX_TOKENS tokens of at most MERGE_MAX_HEAD_DIM head dimensions (its local memories); the
verilator runner refuses streams beyond that.

Memories (overlay_mem): ACT has a DMA-side and a compute-side read and write port, WGT a DMA write,
the TILE write and the GEMM read, PARAM the DMA write and the vector unit's read, ACC (scratchpad.
AccScratchpad) the GEMM read-modify-write port and the vector unit's read.

Counters (registers.py), counted from start to done: CYCLES; STALL_TOKEN / STALL_DMA (the compute
module holds an instruction whose tokens are missing, while neither / either DMA engine is busy);
LOAD_BUSY, STORE_BUSY (the module is executing); GEMM_BUSY, VECTOR_BUSY (the unit is busy).
"""

from __future__ import annotations

from contextlib import contextmanager

from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib.wiring import Flow

from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import INSN_BITS, OPCODES
from edgevit.targets.fpga.rtl.axi_dma import DmaLoad, DmaStore
from edgevit.targets.fpga.rtl.gemm_unit import GemmUnit
from edgevit.targets.fpga.rtl.merge_unit import MergeUnit
from edgevit.targets.fpga.rtl.axi_lite import ControlRegs, axi_lite_signature
from edgevit.targets.fpga.rtl.fetch import Fetch
from edgevit.targets.fpga.rtl.overlay_ctl import AxiRead, ReadArbiter
from edgevit.targets.fpga.rtl.overlay_mem import OverlayAct, OverlayParam, OverlayWgt, log2
from edgevit.targets.fpga.rtl.scratchpad import AccScratchpad
from edgevit.targets.fpga.rtl.tokens import TokenCounters, header_bit
from edgevit.targets.fpga.rtl.vector_common import VecPorts
from edgevit.targets.fpga.rtl.vector_unit import VectorUnit

TOP_NAME = "edgevit_overlay"
MERGE_MAX_TOKENS, MERGE_MAX_HEAD_DIM = 256, 64
QUEUE_DEPTH, FETCH_BURST_INSNS = 16, 16  # per module queue; instructions per fetch burst
MODULE_NAMES = ("load", "compute", "store")
AXI_W_PORTS = (("awaddr", 32), ("awlen", 8), ("awsize", 3), ("awburst", 2), ("awvalid", 1), ("awready", 1),
               ("wdata", None), ("wstrb", None), ("wlast", 1), ("wvalid", 1), ("wready", 1), ("bresp", 2),
               ("bvalid", 1), ("bready", 1))
W_INPUTS = ("awready", "wready", "bresp", "bvalid")


class Sequencer:
    """One module's in-order execution of its queue head: token checks, pop, start, wait, push.

    Inputs: `insn` / `valid` (queue head), `busy` (its unit). Outputs: `pop` (take the head, start the
    unit this cycle with `head`; also in the cycle the unit finishes the previous one), `cur` (the
    instruction since its start), `active` (executing), `waiting` (a head whose tokens are missing)."""

    def __init__(self, name: str):
        self.name = name
        self.cur = Signal(INSN_BITS, name=f"{name}_cur")
        self.active, self.pop, self.waiting = Signal(name=f"{name}_active"), Signal(name=f"{name}_pop"), Signal(
            name=f"{name}_waiting")

    def build(self, m: Module, head, valid, busy, port, overlap=0) -> None:
        """The logic (combinational checks on the head, the `active` flag, the token pulses). `overlap`:
        the head may also start while the unit is still busy with `cur` (back-to-back GEMMs); the caller
        guarantees `cur` pushes no token then, so no push is lost when `cur` changes. `port`: this
        module's tokens.TokenCounters port (pop granted combinationally, push when the unit goes idle)."""
        finished = self.active & ~busy
        free = ~self.active | finished          # the next instruction starts in the cycle the last one ends
        m.d.comb += [port.pop_req.eq(valid & (free | (self.active & overlap))),
                     port.pop_prev.eq(head[header_bit("pop_prev")]), port.pop_next.eq(head[header_bit("pop_next")]),
                     self.pop.eq(port.pop_ok), self.waiting.eq(valid & free & ~port.pop_ok),
                     port.push_en.eq(finished), port.push_prev.eq(self.cur[header_bit("push_prev")]),
                     port.push_next.eq(self.cur[header_bit("push_next")])]
        with m.If(self.pop):
            m.d.sync += [self.cur.eq(head), self.active.eq(1)]
        with m.Elif(finished):
            m.d.sync += self.active.eq(0)


class Overlay(Elaboratable):
    """The whole accelerator for one OverlayConfig; `ports()` lists its Verilog ports."""

    def __init__(self, cfg: OverlayConfig):
        self.cfg = cfg
        B = cfg.bus_bytes
        self.regs = ControlRegs()
        self.lite = {n: Signal(mb.shape, name=f"s_axil_{n}") for n, mb in axi_lite_signature().members.items()}
        self.rbus = AxiRead(B, "m_axi_")
        self.wbus = {n: Signal(w if w else (8 * B if n == "wdata" else B), name=f"m_axi_{n}") for n, w in AXI_W_PORTS}
        self.irq = Signal(name="irq")
        self.error = Signal(name="error")

    def ports(self) -> list[Signal]:
        """Every top-level port (clk and rst are added by the conversion)."""
        r = self.rbus
        rd = [r.araddr, r.arlen, r.arsize, r.arburst, r.arvalid, r.arready, r.rdata, r.rresp, r.rlast, r.rvalid,
              r.rready]
        return rd + list(self.wbus.values()) + list(self.lite.values()) + [self.irq, self.error]

    def elaborate(self, platform):
        """Wire the fetcher, queues, sequencers, units, memories, counters."""
        cfg, m = self.cfg, Module()
        B, bsh = cfg.bus_bytes, log2(cfg.bus_bytes, "bus_bytes")
        m.submodules.regs = regs = self.regs
        m.submodules.fetch = fetch = Fetch(cfg, queue_depth=QUEUE_DEPTH, burst_insns=FETCH_BURST_INSNS)
        m.submodules.arb = arb = ReadArbiter(B)
        m.submodules.tokens = tokens = TokenCounters()
        m.submodules.dma_load = dl = DmaLoad(cfg)
        m.submodules.dma_store = ds = DmaStore(cfg)
        m.submodules.gemm = gemm = GemmUnit(cfg)
        m.submodules.vector = vec = VectorUnit(cfg.vl, cfg.bm)
        m.submodules.merge = mrg = MergeUnit(cfg.vl, cfg.bm, max_tokens=MERGE_MAX_TOKENS,
                                             max_head_dim=MERGE_MAX_HEAD_DIM)
        m.submodules.act = act = OverlayAct(cfg)
        m.submodules.wgt = wgt = OverlayWgt(cfg)
        m.submodules.param = param = OverlayParam(cfg)
        m.submodules.acc = acc = AccScratchpad(cfg, read_ports=2)

        # Run control: the AXI4-Lite slave (ports s_axil_*), start / done / error.
        for name, member in axi_lite_signature().members.items():
            if member.flow == Flow.Out:          # driven by the host
                m.d.comb += getattr(regs.bus, name).eq(self.lite[name])
            else:
                m.d.comb += self.lite[name].eq(getattr(regs.bus, name))
        finish = Signal()
        m.d.comb += [fetch.start.eq(regs.start), fetch.insn_base.eq(regs.insn_base),
                     fetch.insn_count.eq(regs.insn_count), regs.finish.eq(finish), regs.error.eq(self.error),
                     self.irq.eq(regs.done), tokens.clear.eq(regs.start)]
        with m.If(regs.start):
            m.d.sync += self.error.eq(0)

        # AXI read: the arbiter between fetch and LOAD; AXI write: the STORE engine.
        for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rready"):
            m.d.comb += getattr(self.rbus, name).eq(getattr(arb.bus, name))
        for name in ("arready", "rdata", "rresp", "rlast", "rvalid"):
            m.d.comb += getattr(arb.bus, name).eq(getattr(self.rbus, name))
        f_axi, l_axi = arb.masters
        for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rready"):
            m.d.comb += [getattr(f_axi, name).eq(getattr(fetch.axi, name)), getattr(l_axi, name).eq(getattr(dl.axi, name))]
        for name in ("arready", "rdata", "rresp", "rlast", "rvalid"):
            m.d.comb += [getattr(fetch.axi, name).eq(getattr(f_axi, name)), getattr(dl.axi, name).eq(getattr(l_axi, name))]
        for name, _ in AXI_W_PORTS:
            if name in W_INPUTS:
                m.d.comb += getattr(ds.axi, name).eq(self.wbus[name])
            else:
                m.d.comb += self.wbus[name].eq(getattr(ds.axi, name))

        # The module queues (inside Fetch): head `<module>_data`, `<module>_rdy`, popped by `<module>_en`.
        head = {name: getattr(fetch, f"{name}_data").as_value() for name in MODULE_NAMES}
        seq = {name: Sequencer(name) for name in MODULE_NAMES}
        for name in MODULE_NAMES:
            m.d.comb += getattr(fetch, f"{name}_en").eq(seq[name].pop)
        # Load module: the DMA LOAD engine into ACT / WGT / PARAM.
        s = seq["load"]
        s.build(m, head["load"], fetch.load_rdy, dl.busy, tokens.load)
        m.d.comb += [dl.start.eq(s.pop), dl.insn.eq(Mux(s.pop, head["load"], s.cur)),
                     dl.ddr_base.eq(regs.ddr_base), dl.wr_ready.eq(1)]
        waddr = (dl.wr_addr << bsh)[:32]
        for mem_code, port in ((0, act.wr_dma), (1, wgt.wr_dma), (2, param.wr_dma)):
            m.d.comb += [port.addr.eq(waddr), port.data.eq(dl.wr_data),
                         port.en.eq(Mux(dl.wr_en & (dl.wr_mem == mem_code), dl.wr_be, 0))]
        m.d.comb += vec.param_written.eq(dl.wr_en & (dl.wr_mem == 2))

        # Store module: the DMA STORE engine from ACT.
        s = seq["store"]
        s.build(m, head["store"], fetch.store_rdy, ds.busy, tokens.store)
        m.d.comb += [ds.start.eq(s.pop), ds.insn.eq(Mux(s.pop, head["store"], s.cur)),
                     ds.ddr_base.eq(regs.ddr_base), act.rd_dma.addr.eq((ds.rd_addr << bsh)[:32]),
                     act.rd_dma.en.eq(ds.rd_en), ds.rd_data.eq(act.rd_dma.data)]

        # Compute module: GEMM, vector or MERGE unit, one instruction at a time; FINISH ends the run.
        s, hc = seq["compute"], head["compute"]
        cop = hc[:4]
        is_gemm = (cop == OPCODES["GEMM"]) | (cop == OPCODES["TILE"])
        is_finish, is_merge = cop == OPCODES["FINISH"], cop == OPCODES["MERGE"]
        unit_busy = gemm.busy | vec.busy | mrg.busy
        # Back-to-back GEMMs: the next GEMM starts under the current one's last step / drain (gemm.ready)
        # unless the current one pushes a token (pushed when the unit goes idle, so it must be the last).
        cur_gemm, head_gemm = s.cur[:4] == OPCODES["GEMM"], cop == OPCODES["GEMM"]
        overlap = cur_gemm & head_gemm & gemm.ready & ~s.cur[6] & ~s.cur[7]
        s.build(m, hc, fetch.compute_rdy, unit_busy, tokens.compute, overlap=overlap)
        m.d.comb += [finish.eq(s.pop & is_finish),
                     gemm.insn.eq(hc), gemm.start.eq(s.pop & is_gemm),
                     mrg.insn.eq(hc), mrg.start.eq(s.pop & is_merge),
                     vec.insn.eq(hc), vec.start.eq(s.pop & ~is_gemm & ~is_finish & ~is_merge)]

        # Compute-side memory ports, shared by the units (only one runs at a time; idle ones drive 0).
        vp = VecPorts(cfg.vl, cfg.bm, prefix="vec_")
        for name in VecPorts.OUTPUTS:
            m.d.comb += getattr(vp, name).eq(getattr(vec.ports, name) | getattr(mrg.ports, name))
        for name in VecPorts.INPUTS:
            m.d.comb += [getattr(vec.ports, name).eq(getattr(vp, name)), getattr(mrg.ports, name).eq(getattr(vp, name))]
        m.d.comb += [act.rd_compute.addr.eq(Mux(gemm.act_rd.en, gemm.act_rd.addr, vp.act_raddr)),
                     act.rd_compute.en.eq(gemm.act_rd.en | vp.act_ren),
                     gemm.act_rd.data.eq(act.rd_compute.data), vp.act_rdata.eq(act.rd_compute.data[:8 * cfg.vl]),
                     act.wr_compute.addr.eq(vp.act_waddr), act.wr_compute.data.eq(vp.act_wdata),
                     act.wr_compute.en.eq(Mux(vp.act_wen, vp.act_wmask, 0)),
                     wgt.rd_addr.eq(gemm.wgt_rd.addr), wgt.rd_en.eq(gemm.wgt_rd.en), gemm.wgt_rd.data.eq(wgt.rd_data),
                     wgt.tile_addr.eq(gemm.wgt_wr.addr), wgt.tile_data.eq(gemm.wgt_wr.data),
                     wgt.tile_en.eq(gemm.wgt_wr.en),
                     acc.read[0].addr.eq(gemm.acc_rd.addr), acc.read[0].en.eq(gemm.acc_rd.en),
                     gemm.acc_rd.data.eq(acc.read[0].data),
                     acc.write.addr.eq(gemm.acc_wr.addr), acc.write.data.eq(gemm.acc_wr.data),
                     acc.write.en.eq(gemm.acc_wr.en),
                     acc.read[1].addr.eq(vp.acc_raddr), acc.read[1].en.eq(vp.acc_ren), vp.acc_rdata.eq(acc.read[1].data),
                     param.rd_addr.eq(vp.param_raddr), param.rd_en.eq(vp.param_ren), vp.param_rdata.eq(param.rd_data)]
        with m.If(fetch.error | fetch.axi_error | tokens.overflow | dl.resp_error | ds.resp_error):
            m.d.sync += self.error.eq(1)

        # Counters.
        dma_busy = seq["load"].active | seq["store"].active
        conds = {"STALL_TOKEN": seq["compute"].waiting & ~dma_busy,
                 "STALL_DMA": seq["compute"].waiting & dma_busy, "LOAD_BUSY": seq["load"].active,
                 "STORE_BUSY": seq["store"].active, "GEMM_BUSY": gemm.busy, "VECTOR_BUSY": vec.busy | mrg.busy}
        for name, cond in conds.items():
            m.d.comb += getattr(regs, name.lower()).eq(cond)
        return m


@contextmanager
def _no_zero_memory_init():
    """Within: Amaranth writes no init for an all-zero memory (it otherwise emits one `mem[i] = 0;` line per
    word). Block RAM powers up to 0 and the Verilator build uses --x-initial 0, so the contents agree."""
    from amaranth.back import rtlil

    emit = rtlil.ModuleEmitter.emit_memory

    def emit_nonzero(self, cell_idx, cell):
        if any(cell.init):
            emit(self, cell_idx, cell)

    rtlil.ModuleEmitter.emit_memory = emit_nonzero
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = emit


def overlay_verilog(cfg: OverlayConfig) -> str:
    """The Verilog of the overlay for `cfg` (top module TOP_NAME); ToolMissing without amaranth / Yosys."""
    from edgevit.targets.fpga.rtl.verilator import to_verilog

    top = Overlay(cfg)
    with _no_zero_memory_init():
        return to_verilog(top, top.ports(), TOP_NAME)


def main(argv: list[str] | None = None) -> int:
    """`python -m edgevit.targets.fpga.rtl.overlay OVERLAY_JSON -o overlay.v`: the Verilog of the overlay an
    artifact was compiled for (its rtl/overlay.json), from the cache when it was generated before."""
    import argparse
    import json
    from pathlib import Path

    from edgevit.targets.fpga.rtl.overlay_sim import overlay_verilog_cached

    ap = argparse.ArgumentParser(prog="python -m edgevit.targets.fpga.rtl.overlay", description=main.__doc__)
    ap.add_argument("overlay_json", type=Path, help="an artifact's rtl/overlay.json")
    ap.add_argument("-o", "--out", type=Path, required=True, help="the Verilog file to write")
    args = ap.parse_args(argv)
    cfg = OverlayConfig.from_dict(json.loads(args.overlay_json.read_text(encoding="utf-8"))["overlay"])
    args.out.write_text(overlay_verilog_cached(cfg), encoding="utf-8")
    print(f"{args.out}: module {TOP_NAME}, {cfg.bm} x {cfg.bk} PEs, {cfg.vl} vector lanes, {8 * cfg.bus_bytes}-bit AXI")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
