"""REQUANT with the next column block's channel words prefetched (rtl/vector_requant.py): bit-exact against
intmath.requantize on random shapes (two register banks, blocks back to back), and the simulated cycle
count equals the estimator's formula (compiler/cycles.requant_cycles)."""

from __future__ import annotations

import pytest

pytest.importorskip("amaranth", reason="the fpga extra (make setup) is not installed")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgevit.targets.fpga.compiler.cycles import requant_cycles  # noqa: E402
from tests.targets.fpga.test_hwvec_requant import _run  # noqa: E402

SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


@SETTINGS
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 10), cols=st.integers(1, 40), dtype=st.sampled_from([0, 1]),
       gelu=st.booleans(), shape=st.sampled_from([(4, 8), (8, 8)]))
def test_prefetching_requant_is_exact_and_takes_the_formula_cycles(seed, rows, cols, dtype, gelu, shape):
    vl, bm = shape
    gelu = gelu and dtype == 0
    cycles = _run(seed, vl, bm, rows, cols, dtype, gelu)
    assert cycles == requant_cycles(rows, cols, vl >> dtype, int(gelu))


@pytest.mark.parametrize("rows,cols", [(1, 40), (2, 40), (3, 40), (24, 33), (26, 24)])
def test_block_switch_keeps_each_rows_bank(rows, cols):
    # rows < 3 ne: the loader is the bottleneck and rows of the old bank are still in the pipeline when the
    # streamer switches bank; rows around 3 ne + 1 = 25: the switch with both banks full. 3-5 blocks at ne 8.
    cycles = _run(11 + rows, 8, 8, rows, cols, 0, False)
    assert cycles == requant_cycles(rows, cols, 8, 0)


def test_prefetch_hides_the_channel_words_when_rows_cover_them():
    # ne 8: 3 ne + 1 = 25 cycles of PARAM reads a block, hidden behind >= 25 rows: a block every `rows` cycles.
    assert requant_cycles(30, 40, 8, 0) - requant_cycles(30, 32, 8, 0) == 30
    assert _run(5, 8, 8, 30, 16, 0, False) - _run(5, 8, 8, 30, 8, 0, False) == 30
