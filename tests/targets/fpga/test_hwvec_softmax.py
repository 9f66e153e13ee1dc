"""SOFTMAX engine (rtl/vector_softmax.py) against intlut.softmax_from_scores, bit-exact."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgevit.lower.intlut import make_score_lut, score_index_params, softmax_from_scores
from edgevit.targets.fpga.rtl.vector_softmax import SoftmaxEngine
from edgevit.targets.fpga.rtl.vector_sim import run_engine

LUT = make_score_lut(table_size=256)       # a short table keeps the simulated table load short


def run_softmax(seed, vl, bm, rows, keys, has_sizes=False, engine=None, lut=LUT, op=None):
    """Run SOFTMAX on random int32 scores; assert bit-exact with softmax_from_scores; return cycles."""
    rng = np.random.default_rng(seed)
    per_row = -(-keys // bm)
    score_scale = float(np.exp(rng.uniform(np.log(1e-4), np.log(3e-2))))
    mult, shift = score_index_params(score_scale, lut)
    scores = rng.integers(-40000, 40000, (rows, keys)).astype(np.int64)
    scores[0, 0] = 2 ** 30 if keys > 1 else scores[0, 0]          # a huge difference: clamped index
    bias_keys = np.zeros(keys, np.int64)
    acc = np.zeros((2 + rows * per_row, bm), np.int32)
    sizes_addr, log_len = 16, 6
    act = rng.integers(0, 256, 64 + 4 * keys + rows * (keys + 3) + 32, dtype=np.uint8)
    log_size = np.minimum(np.round(np.log(np.arange(1, log_len + 1)) / score_scale), 2 ** 30).astype(np.int64)
    if has_sizes:
        sizes = rng.integers(1, log_len + 1, keys).astype(np.int32)
        act[sizes_addr:sizes_addr + 4 * keys] = sizes.view(np.uint8)
        bias_keys = log_size[sizes - 1]
    s = scores + bias_keys
    for r in range(rows):
        for j in range(keys):
            acc[2 + r * per_row + j // bm, j % bm] = scores[r, j]
    want = softmax_from_scores(s, mult, shift, lut)
    pbase, tbase = 4, 40
    lbase = tbase + lut["table_size"] + 3
    param = np.zeros(lbase + log_len + 2, np.int64)
    param[pbase:pbase + 6] = [mult, shift, tbase, lut["table_size"], lbase, log_len]
    param[tbase:tbase + lut["table_size"]] = lut["table"]
    param[lbase:lbase + log_len] = log_size
    dst = 64 + 4 * keys
    stride = keys + 3
    before = act.copy()
    fields = dict(has_sizes=int(has_sizes), acc=2, rows=rows, cols=keys, dst=dst, dst_stride=stride,
                  sizes=sizes_addr, param=pbase)
    engine = engine or SoftmaxEngine(vl, bm, table_max=lut["table_size"], max_keys=64)
    cycles = run_engine(engine, fields, act, acc, param.astype(np.int32), op=op)
    for r in range(rows):
        np.testing.assert_array_equal(act[dst + r * stride:dst + r * stride + keys], want[r], err_msg=f"row {r}")
        act[dst + r * stride:dst + r * stride + keys] = before[dst + r * stride:dst + r * stride + keys]
    np.testing.assert_array_equal(act, before, err_msg="bytes outside the destination changed")
    return cycles


def test_softmax_basic():
    run_softmax(0, 4, 8, rows=3, keys=13)


def test_softmax_sizes():
    run_softmax(1, 4, 8, rows=2, keys=9, has_sizes=True)


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 3), st.integers(1, 20), st.booleans(),
       st.sampled_from([(4, 8), (8, 8)]))
def test_softmax_random(seed, rows, keys, has_sizes, shape):
    run_softmax(seed, *shape, rows=rows, keys=keys, has_sizes=has_sizes)


@pytest.mark.slow
def test_softmax_n50_cycles():
    lut = make_score_lut()
    rows = 8
    total = run_softmax(3, 8, 8, rows=rows, keys=50, lut=lut)
    load = lut["table_size"]
    print(f"SOFTMAX N=50 vl=8: {(total - load) / rows:.1f} cycles/row ({total} for {rows} rows incl. the "
          f"{load}-cycle table load)")
