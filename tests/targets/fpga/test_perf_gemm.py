"""Back-to-back GEMMs on the GEMM unit (rtl/gemm_unit.py, `ready` handshake) in amaranth.sim: a GEMM every
`count` cycles, `done` one per instruction at start + count + GEMM_OVERHEAD, and bit-exact ACC / WGT against
the NumPy model of docs/fpga-isa.md on random streams whose GEMMs hit the rows the previous one still writes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("amaranth", reason="the fpga extra (make setup) is not installed")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgevit.targets.fpga.isa import Insn, encode  # noqa: E402
from edgevit.targets.fpga.rtl.gemm_unit import GEMM_OVERHEAD  # noqa: E402
from tests.targets.fpga.hwgemm_model import SMALL, run_model, simulate_core  # noqa: E402

CFG = SMALL
SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


def _memories(seed: int):
    rng = np.random.default_rng(seed)
    act = rng.integers(0, 256, CFG.act_bytes, dtype=np.uint8)
    wgt = rng.integers(-128, 128, (CFG.wgt_tiles, CFG.bm, CFG.bk), dtype=np.int64).astype(np.int8)
    acc = rng.integers(-(1 << 31), 1 << 31, (CFG.acc_rows, CFG.bm), dtype=np.int64)
    return act, wgt, acc


def run_stream(act, wgt, acc, insns):
    """Feed `insns` to GemmCore as fast as `ready` allows (start held high while an instruction waits).
    Returns (wgt, acc, starts, dones): the cycles each instruction was accepted and each `done` pulse."""

    async def feed(ctx, core, out):
        starts, dones, i, cycle = [], [], 0, 0
        while len(dones) < len(insns):
            if i < len(insns):
                ctx.set(core.insn, int.from_bytes(encode(insns[i]), "little"))
                ctx.set(core.start, 1)
                if ctx.get(core.ready):
                    starts.append(cycle)
                    i += 1
            else:
                ctx.set(core.start, 0)
            if ctx.get(core.done):
                dones.append(cycle)
            await ctx.tick()
            cycle += 1
            assert cycle < 20_000, "stream never finished"
        ctx.set(core.start, 0)
        await ctx.tick()
        out["busy_after"] = ctx.get(core.busy)
        out["starts"], out["dones"] = starts, dones

    wgt_out, acc_out, out = simulate_core(CFG, act, wgt, acc, feed)
    assert not out["busy_after"], "busy stays high after the last done"
    return wgt_out, acc_out, out["starts"], out["dones"]


@st.composite
def gemms(draw, max_count=6):
    """A GEMM inside the small overlay, its ACC rows in 0..11 so that consecutive GEMMs overlap often."""
    count = draw(st.integers(0, max_count))
    acc_stride = draw(st.sampled_from([0, 0, 1, 2]))
    acc = draw(st.integers(0, max(0, 12 - 1 - max(count - 1, 0) * acc_stride)))
    inp_stride = draw(st.sampled_from([0, 1, 16, 33]))
    inp = draw(st.integers(0, CFG.act_bytes - CFG.bk - max(count - 1, 0) * inp_stride))
    return Insn("GEMM", reset=draw(st.integers(0, 1)), unsigned=draw(st.integers(0, 1)),
                wgt=draw(st.integers(0, CFG.wgt_tiles - 1)), acc=acc, acc_stride=acc_stride, inp=inp,
                inp_stride=inp_stride, count=count)


def _expected_starts(insns):
    """GEMM i + 1 is accepted max(count_i, 1) cycles after GEMM i (a count-0 GEMM still takes its cycle)."""
    starts = [0]
    for ins in insns[:-1]:
        starts.append(starts[-1] + max(ins.count, 1))
    return starts


@SETTINGS
@given(insns=st.lists(gemms(), min_size=2, max_size=6), seed=st.integers(0, 2**16))
def test_back_to_back_gemms_are_exact_and_take_count_cycles_each(insns, seed):
    act, wgt, acc = _memories(seed)
    want_wgt, want_acc = run_model(CFG, act, wgt, acc, insns)
    got_wgt, got_acc, starts, dones = run_stream(act, wgt, acc, insns)
    np.testing.assert_array_equal(got_acc, want_acc)
    np.testing.assert_array_equal(got_wgt, want_wgt)
    assert starts == _expected_starts(insns)
    assert dones == [s + max(i.count, 1) + GEMM_OVERHEAD for s, i in zip(starts, insns)]


def test_next_gemm_reads_the_row_the_previous_one_is_still_writing():
    # Every GEMM accumulates into row 3 (acc_stride 0), each with a different tile and input:
    # the first step of GEMM i+1 reads row 3 while the last step of GEMM i is one stage ahead.
    insns = [Insn("GEMM", reset=int(j == 0), unsigned=j % 2, wgt=j % CFG.wgt_tiles, acc=3, acc_stride=0,
                  inp=11 * j, inp_stride=5, count=1 + j % 3) for j in range(8)]
    act, wgt, acc = _memories(3)
    _, want_acc = run_model(CFG, act, wgt, acc, insns)
    _, got_acc, starts, dones = run_stream(act, wgt, acc, insns)
    np.testing.assert_array_equal(got_acc, want_acc)
    assert dones[-1] - starts[0] == sum(i.count for i in insns) + GEMM_OVERHEAD


def test_tile_waits_for_the_pipeline_and_gemm_after_tile_sees_it():
    insns = [Insn("GEMM", reset=1, wgt=1, acc=0, acc_stride=1, inp=0, inp_stride=16, count=3),
             Insn("TILE", transpose=0, wgt=1, src=40, stride=16, rows=CFG.bm, cols=CFG.bk),
             Insn("GEMM", reset=0, wgt=1, acc=0, acc_stride=1, inp=64, inp_stride=16, count=3),
             Insn("GEMM", reset=0, wgt=2, acc=1, acc_stride=1, inp=7, inp_stride=3, count=2)]
    act, wgt, acc = _memories(5)
    want_wgt, want_acc = run_model(CFG, act, wgt, acc, insns)
    got_wgt, got_acc, starts, dones = run_stream(act, wgt, acc, insns)
    np.testing.assert_array_equal(got_wgt, want_wgt)
    np.testing.assert_array_equal(got_acc, want_acc)
    assert starts[1] == dones[0] + 1         # TILE only once the GEMM pipeline is empty
    assert starts[3] - starts[2] == 3        # GEMM after GEMM: back to back
