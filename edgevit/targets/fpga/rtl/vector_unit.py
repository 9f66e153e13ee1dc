"""The overlay's vector unit: REQUANT, ADD, LAYERNORM, SOFTMAX, COPY, MEANPOOL and LUT (docs/fpga-isa.md).

The compute module hands it one decoded 256-bit instruction (`insn`, the 32 bytes of isa.encode as a
little-endian integer) with a `start` pulse; the unit latches it, starts the engine of its opcode
and stays `busy` until that engine is idle. Fields are sliced with isa.field_offsets, so the unit
follows isa.py. Engines share the unit's `VecPorts` (each drives 0 when idle, so their outputs are
ORed). `param_written` (pulse on any LOAD into PARAM) invalidates SOFTMAX's cached exp table.
MERGE is not handled here (its own engine, later).
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import Elaboratable, Module, Signal

from edgevit.targets.fpga.isa import INSN_BITS, OPCODES, field_offsets
from edgevit.targets.fpga.rtl.vector_add import AddEngine
from edgevit.targets.fpga.rtl.vector_common import VecPorts
from edgevit.targets.fpga.rtl.vector_layernorm import LayerNormEngine
from edgevit.targets.fpga.rtl.vector_misc import CopyEngine, LutEngine, MeanPoolEngine
from edgevit.targets.fpga.rtl.vector_requant import RequantEngine
from edgevit.targets.fpga.rtl.vector_softmax import SoftmaxEngine

VECTOR_OPS = ("REQUANT", "ADD", "LAYERNORM", "SOFTMAX", "COPY", "MEANPOOL", "LUT")


class VectorUnit(Elaboratable):
    """Every vector engine behind one instruction input and one set of memory ports.

    vl: vector lanes (ACT bytes a cycle); bm: ACC lanes (a multiple of vl); ln_group: LayerNorm rows
    sharing a channel-word load; table_max / max_keys: SOFTMAX's exp-table and key limits;
    isqrt_steps / div_steps (LayerNorm), softmax_div_steps: iterations per cycle of the scalar units."""

    def __init__(self, vl: int, bm: int, ln_group: int = 64, table_max: int = 1024, max_keys: int = 1024,
                 isqrt_steps: int = 2, div_steps: int = 2, softmax_div_steps: int = 4):
        self.vl, self.bm = vl, bm
        self.engines = {
            "REQUANT": RequantEngine(vl, bm),
            "ADD": AddEngine(vl, bm),
            "LAYERNORM": LayerNormEngine(vl, bm, ln_group, isqrt_steps, div_steps),
            "SOFTMAX": SoftmaxEngine(vl, bm, table_max, max_keys, softmax_div_steps),
            "COPY": CopyEngine(vl, bm),
            "MEANPOOL": MeanPoolEngine(vl, bm),
            "LUT": LutEngine(vl, bm),
        }
        self.ports = VecPorts(vl, bm)
        self.insn = Signal(INSN_BITS)
        self.start = Signal()
        self.busy = Signal()
        self.param_written = Signal()
        self.f: dict[str, Signal] = {}          # fields come through `insn` (run_engine compatibility)

    def elaborate(self, platform):
        m = Module()
        held = Signal(INSN_BITS)
        started = Signal()                       # the cycle after start: the engine sees its start
        for name, eng in self.engines.items():
            m.submodules[name.lower()] = eng
        op = held[:4]
        with m.If(self.start & ~self.busy):
            m.d.sync += [held.eq(self.insn), started.eq(1)]
        with m.Else():
            m.d.sync += started.eq(0)
        for name, eng in self.engines.items():
            for fname, offset, width in field_offsets(name)[5:]:
                m.d.comb += eng.f[fname].eq(held[offset:offset + width])
            m.d.comb += eng.start.eq(started & (op == OPCODES[name]))
        m.d.comb += self.engines["SOFTMAX"].param_written.eq(self.param_written)
        m.d.comb += self.busy.eq(started | reduce(lambda a, b: a | b, [e.busy for e in self.engines.values()]))
        for name in VecPorts.OUTPUTS:
            m.d.comb += getattr(self.ports, name).eq(
                reduce(lambda a, b: a | b, [getattr(e.ports, name) for e in self.engines.values()]))
        for name in VecPorts.INPUTS:
            for e in self.engines.values():
                m.d.comb += getattr(e.ports, name).eq(getattr(self.ports, name))
        return m
