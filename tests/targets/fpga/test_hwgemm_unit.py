"""The GEMM unit (rtl/gemm_unit.py) in amaranth.sim against the NumPy model of docs/fpga-isa.md's GEMM and
TILE, on a small overlay (bm 4, bk 16): random data and instructions, cycle counts, ACC hazards."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("amaranth", reason="the fpga extra (make setup) is not installed")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgevit.targets.fpga.isa import Insn  # noqa: E402
from edgevit.targets.fpga.rtl.gemm_unit import GEMM_OVERHEAD  # noqa: E402
from tests.targets.fpga.hwgemm_model import SMALL, run_model, run_rtl  # noqa: E402

CFG = SMALL
SETTINGS = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _memories(seed: int):
    rng = np.random.default_rng(seed)
    act = rng.integers(0, 256, CFG.act_bytes, dtype=np.uint8)
    wgt = rng.integers(-128, 128, (CFG.wgt_tiles, CFG.bm, CFG.bk), dtype=np.int64).astype(np.int8)
    acc = rng.integers(-(1 << 31), 1 << 31, (CFG.acc_rows, CFG.bm), dtype=np.int64)
    return act, wgt, acc


@st.composite
def gemms(draw):
    """A GEMM whose reads and writes stay inside the small overlay's ACT and ACC."""
    count = draw(st.integers(1, 8))
    acc_stride = draw(st.sampled_from([0, 1, 2, 3]))
    acc = draw(st.integers(0, CFG.acc_rows - 1 - (count - 1) * acc_stride))
    inp_stride = draw(st.sampled_from([0, 1, 7, 16, 33, 48]))
    inp = draw(st.integers(0, CFG.act_bytes - CFG.bk - (count - 1) * inp_stride))
    return Insn("GEMM", reset=draw(st.integers(0, 1)), unsigned=draw(st.integers(0, 1)),
                wgt=draw(st.integers(0, CFG.wgt_tiles - 1)), acc=acc, acc_stride=acc_stride, inp=inp,
                inp_stride=inp_stride, count=count)


@st.composite
def tiles(draw):
    """A TILE (either orientation) whose source stays inside ACT."""
    transpose = draw(st.integers(0, 1))
    n_rows, n_cols = (CFG.bk, CFG.bm) if transpose else (CFG.bm, CFG.bk)
    rows, cols = draw(st.integers(0, n_rows)), draw(st.integers(0, n_cols))
    stride = draw(st.sampled_from([1, 5, 16, 24]))
    span = max(n_rows - 1, 0) * stride + max(CFG.bk * -(-CFG.bm // CFG.bk), CFG.bk)
    src = draw(st.integers(0, CFG.act_bytes - span))
    return Insn("TILE", transpose=transpose, wgt=draw(st.integers(0, CFG.wgt_tiles - 1)), src=src, stride=stride,
                rows=rows, cols=cols)


def _check(insns, seed=0):
    act, wgt, acc = _memories(seed)
    want_wgt, want_acc = run_model(CFG, act, wgt, acc, insns)
    got_wgt, got_acc, trace = run_rtl(CFG, act, wgt, acc, insns)
    np.testing.assert_array_equal(got_wgt, want_wgt)
    np.testing.assert_array_equal(got_acc, want_acc)
    return trace


@SETTINGS
@given(insns=st.lists(st.one_of(gemms(), tiles()), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_random_gemm_and_tile_streams_match_the_model(insns, seed):
    _check(insns, seed)


@SETTINGS
@given(tile=tiles(), seed=st.integers(0, 2**16))
def test_tile_then_gemm_reads_the_built_tile(tile, seed):
    gemm = Insn("GEMM", reset=1, wgt=tile.wgt, acc=0, acc_stride=1, inp=seed % 64, inp_stride=16, count=4)
    _check([tile, gemm], seed)


@pytest.mark.parametrize("count", [1, 3, 12])
def test_gemm_issues_one_step_a_cycle(count):
    gemm = Insn("GEMM", reset=0, wgt=2, acc=1, acc_stride=2, inp=3, inp_stride=16, count=count)
    (done, writes), = _check([gemm])
    assert done == count + GEMM_OVERHEAD
    assert writes == list(range(writes[0], writes[0] + count))  # one ACC row written per cycle after the fill
    assert writes[0] == GEMM_OVERHEAD  # fill: start (with the tile fetch), ACT read, 3 array stages


def test_back_to_back_steps_into_one_row_see_each_others_writes():
    # acc_stride 0: every step reads the row the previous step wrote one cycle earlier.
    _check([Insn("GEMM", reset=1, unsigned=1, wgt=0, acc=5, acc_stride=0, inp=17, inp_stride=9, count=7),
            Insn("GEMM", reset=0, wgt=3, acc=5, acc_stride=0, inp=100, inp_stride=0, count=3)], seed=7)


def test_extreme_values_wrap_like_int32():
    act, wgt, acc = _memories(1)
    act[:CFG.bk] = 0x80  # int8 -128 / uint8 128
    wgt[:] = -128
    acc[0] = [(1 << 31) - 1] * CFG.bm
    insns = [Insn("GEMM", reset=0, unsigned=u, wgt=0, acc=0, acc_stride=0, inp=0, inp_stride=0, count=2)
             for u in (0, 1)]
    want_wgt, want_acc = run_model(CFG, act, wgt, acc, insns)
    got_wgt, got_acc, _ = run_rtl(CFG, act, wgt, acc, insns)
    np.testing.assert_array_equal(got_acc, want_acc)


def test_tile_takes_bm_or_bk_reads():
    tr0, tr1 = (Insn("TILE", transpose=t, wgt=1, src=2, stride=16, rows=3, cols=3) for t in (0, 1))
    trace = _check([tr0, tr1])
    n1 = CFG.bk * -(-CFG.bm // CFG.bk)
    assert [t[0] for t in trace] == [CFG.bm + 2, n1 + 2]  # reads, the last read's data, the tile write
