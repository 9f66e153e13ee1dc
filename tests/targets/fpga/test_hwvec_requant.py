"""REQUANT engine (rtl/vector_requant.py) against intmath.requantize, bit-exact, on random rows."""

import numpy as np
from hypothesis import given, settings, strategies as st

from edgevit.lower.intlut import make_gelu_lut
from edgevit.lower.intmath import quantize_multipliers, requantize
from edgevit.targets.fpga.rtl.vector_requant import RequantEngine
from edgevit.targets.fpga.rtl.vector_sim import run_engine

ACT_BYTES = 1024


def _case(seed, vl, bm, rows, cols, dtype, gelu):
    rng = np.random.default_rng(seed)
    per_row = -(-cols // bm)
    acc = np.zeros((4 + rows * per_row + 2, bm), np.int32)
    acc_base = 4
    vals = rng.integers(-2 ** 20, 2 ** 20, (rows, cols), dtype=np.int64)
    vals[0, :min(cols, 2)] = [2 ** 31 - 1 - 2 ** 20, -2 ** 31 + 2 ** 20][:min(cols, 2)]
    for r in range(rows):
        for c in range(cols):
            acc[acc_base + r * per_row + c // bm, c % bm] = vals[r, c]
    bias = rng.integers(-2 ** 20, 2 ** 20, cols)
    mult, shift = quantize_multipliers(np.exp(rng.uniform(np.log(1e-7), np.log(0.1), cols)))
    lo, hi = (-128, 127) if dtype == 0 else (-32768, 32767)
    zp = int(rng.integers(-20, 20))
    qmin, qmax = (lo, hi) if rng.random() < 0.5 else (zp, hi)
    table = make_gelu_lut(0.05, 0, 0.03, -10) if gelu else None
    header = [zp, qmin, qmax] + (list(table.view(np.uint8).reshape(64, 4).astype(np.int64) @ [1, 256, 65536, 1 << 24])
                                 if gelu else [])
    param_base, chan_base = 5, 100
    param = np.zeros(chan_base + 3 * cols + 3, np.int64)
    param[param_base:param_base + len(header)] = header
    param[chan_base:chan_base + 3 * cols] = np.stack([bias, mult, shift], 1).reshape(-1)
    param = param.astype(np.uint32).view(np.int32) if param.max() >= 2 ** 31 else param.astype(np.int32)
    out_dt = np.int8 if dtype == 0 else np.int16
    want = requantize(vals + bias, mult, shift, zp, qmin, qmax, out_dtype=out_dt)
    if gelu:
        want = table[want.astype(np.int64) + 128]
    dst, stride = 40, cols * np.dtype(out_dt).itemsize + 3
    fields = dict(gelu=int(gelu), dtype=dtype, acc=acc_base, dst=dst, dst_stride=stride, rows=rows, cols=cols,
                  param=param_base, chan=chan_base)
    return acc, param, fields, want, out_dt, dst, stride


def _run(seed, vl, bm, rows, cols, dtype, gelu):
    acc, param, fields, want, out_dt, dst, stride = _case(seed, vl, bm, rows, cols, dtype, gelu)
    act = np.random.default_rng(seed + 1).integers(0, 256, ACT_BYTES, dtype=np.uint8)
    before = act.copy()
    cycles = run_engine(RequantEngine(vl, bm), fields, act, acc, param)
    nb = cols * np.dtype(out_dt).itemsize
    for r in range(rows):
        got = act[dst + r * stride:dst + r * stride + nb].view(out_dt)
        np.testing.assert_array_equal(got, want[r], err_msg=f"row {r}")
        act[dst + r * stride:dst + r * stride + nb] = before[dst + r * stride:dst + r * stride + nb]
    np.testing.assert_array_equal(act, before, err_msg="bytes outside the destination changed")
    return cycles


def test_requant_int8_gelu():
    _run(0, 4, 8, rows=3, cols=11, dtype=0, gelu=True)


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 4), st.integers(1, 19), st.sampled_from([0, 1]),
       st.booleans(), st.sampled_from([(4, 8), (8, 8)]))
def test_requant_random(seed, rows, cols, dtype, gelu, shape):
    _run(seed, *shape, rows, cols, dtype, gelu and dtype == 0)
