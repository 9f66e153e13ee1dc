"""The estimator's model of back-to-back GEMMs (compiler/cycles.py): a GEMM after a GEMM starts `count`
cycles after it, as the unit's `ready` lets it (tests/targets/fpga/test_perf_gemm.py), unless the first
pushes a token; a vector instruction still waits for the last GEMM's done."""

from edgevit.targets.fpga.compiler import cycles
from edgevit.targets.fpga.compiler.cycles import GEMM_OVERHEAD, estimate_cycles
from edgevit.targets.fpga.isa import Insn
from tests.targets.fpga.comp_helpers import overlay

PYNQ = overlay("pynq-z2")


def _gemm(count, **flags):
    return Insn("GEMM", reset=1, wgt=0, acc=0, acc_stride=1, inp=0, inp_stride=16, count=count, **flags)


def test_gemms_back_to_back_then_requant_waits_for_the_last_done():
    stream = [_gemm(10), _gemm(7), _gemm(0), _gemm(5), Insn("REQUANT", rows=5, cols=8)]
    est = estimate_cycles(stream, PYNQ, timeline=True)
    s, e = est["start"], est["end"]
    assert [s[1] - s[0], s[2] - s[1], s[3] - s[2]] == [10, 7, 1]
    assert e[3] == s[3] + 5 + GEMM_OVERHEAD and s[4] == e[3] + 1
    assert est["busy_by_opcode"]["GEMM"] == e[3] - s[0]          # overlapping GEMMs counted once


def test_a_gemm_that_pushes_a_token_is_not_overlapped_unless_the_top_pushes_at_done(monkeypatch):
    stream = [_gemm(10, push_prev=1), _gemm(7)]
    s = estimate_cycles(stream, PYNQ, timeline=True)["start"]
    assert s[1] - s[0] == 10 + GEMM_OVERHEAD + 1
    monkeypatch.setattr(cycles, "GEMM_OVERLAP_PUSH", True)
    s = estimate_cycles(stream, PYNQ, timeline=True)["start"]
    assert s[1] - s[0] == 10
