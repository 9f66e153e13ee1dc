"""The VectorUnit dispatches encoded instructions (isa.encode) to its engines, bit-exact end to end."""

import numpy as np
import pytest
from test_hwvec_layernorm import run_layernorm
from test_hwvec_softmax import LUT, run_softmax

from edgevit.targets.fpga.rtl.vector_sim import run_engine
from edgevit.targets.fpga.rtl.vector_unit import VectorUnit


@pytest.fixture(scope="module")
def unit():
    return VectorUnit(4, 8, ln_group=4, table_max=LUT["table_size"], max_keys=32)


def test_unit_copy(unit):
    act = np.arange(128, dtype=np.uint8)
    want = act.copy()
    want[70:77] = act[3:10]
    want[80:87] = act[13:20]
    cycles = run_engine(unit, dict(src=3, src_stride=10, dst=70, dst_stride=10, rows=2, row_bytes=7), act, op="COPY")
    np.testing.assert_array_equal(act, want)
    assert cycles < 12


def test_unit_layernorm_and_softmax(unit):
    run_layernorm(5, 4, 8, rows=3, dim=10, unit=unit)
    run_softmax(6, 4, 8, rows=2, keys=11, has_sizes=True, engine=unit, op="SOFTMAX")
