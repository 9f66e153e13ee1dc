"""ADD, COPY, LUT and MEANPOOL engines against the reference integer routines, bit-exact."""

import numpy as np
from hypothesis import given, settings, strategies as st

from edgevit.lower.intlut import lut_int8, make_gelu_lut
from edgevit.lower.intmath import add_int, make_add_params, quantize_multiplier, requantize
from edgevit.targets.fpga.rtl.vector_add import AddEngine
from edgevit.targets.fpga.rtl.vector_misc import CopyEngine, LutEngine, MeanPoolEngine
from edgevit.targets.fpga.rtl.vector_sim import run_engine

DT = {0: np.int8, 1: np.int16}
SHAPES = st.sampled_from([(4, 8), (8, 8)])


def _words(vals):
    return np.array([int(v) & 0xFFFFFFFF for v in vals], np.uint32).view(np.int32)


def _place(act, addr, stride, rows):
    for r, row in enumerate(rows):
        b = np.ascontiguousarray(row).view(np.uint8)
        act[addr + r * stride:addr + r * stride + b.size] = b


def _check(act, before, addr, stride, want):
    for r, row in enumerate(want):
        n = np.ascontiguousarray(row).view(np.uint8).size
        np.testing.assert_array_equal(act[addr + r * stride:addr + r * stride + n].view(row.dtype), row, f"row {r}")
        act[addr + r * stride:addr + r * stride + n] = before[addr + r * stride:addr + r * stride + n]
    np.testing.assert_array_equal(act, before, "bytes outside the destination changed")


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 3), st.integers(1, 19), st.sampled_from([0, 1]),
       st.sampled_from([0, 1]), st.sampled_from([0, 1]), SHAPES)
def test_add_random(seed, rows, cols, a_dt, b_dt, o_dt, shape):
    rng = np.random.default_rng(seed)
    ta, tb, to = DT[a_dt], DT[b_dt], DT[o_dt]
    a = rng.integers(np.iinfo(ta).min, np.iinfo(ta).max + 1, (rows, cols)).astype(ta)
    b = rng.integers(np.iinfo(tb).min, np.iinfo(tb).max + 1, (rows, cols)).astype(tb)
    prm = make_add_params(*np.exp(rng.uniform(-5, -1, 3)), a_zp=int(rng.integers(-9, 9)),
                          b_zp=int(rng.integers(-9, 9)), out_zp=int(rng.integers(-9, 9)), out_dtype=to)
    want = add_int(a, b, prm)
    sa, sb, so = 2 * cols + 3, 2 * cols + 1, 2 * cols + 5
    pa, pb = 10, 10 + rows * sa + 4
    pd = pb + rows * sb + 4
    act = rng.integers(0, 256, pd + rows * so + 16, dtype=np.uint8)
    _place(act, pa, sa, a)
    _place(act, pb, sb, b)
    bias = int(prm["bias"]) & ((1 << 64) - 1)
    param = _words([0, prm["ka"], prm["kb"], bias & 0xFFFFFFFF, bias >> 32, prm["shift"], prm["out_zp"],
                    prm["qmin"], prm["qmax"]])
    before = act.copy()
    run_engine(AddEngine(*shape), dict(a=pa, b=pb, dst=pd, a_stride=sa, b_stride=sb, dst_stride=so, a_dtype=a_dt,
                                       b_dtype=b_dt, dtype=o_dt, rows=rows, cols=cols, param=1), act, None, param)
    _check(act, before, pd, so, want)


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 3), st.integers(1, 21), SHAPES)
def test_copy_and_lut_random(seed, rows, cols, shape):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (rows, cols)).astype(np.int8)
    act = rng.integers(0, 256, 300, dtype=np.uint8)
    _place(act, 5, cols + 2, x)
    before = act.copy()
    run_engine(CopyEngine(*shape), dict(src=5, src_stride=cols + 2, dst=150, dst_stride=cols + 1, rows=rows,
                                        row_bytes=cols), act)
    _check(act, before, 150, cols + 1, x)
    table = make_gelu_lut(0.05, 3, 0.04, -7)
    param = np.concatenate([np.zeros(2, np.int32), table.view(np.int32)])
    run_engine(LutEngine(*shape), dict(src=5, src_stride=cols + 2, dst=150, dst_stride=cols + 3, rows=rows,
                                       cols=cols, param=2), act, None, param)
    _check(act, before, 150, cols + 3, lut_int8(x, table))


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 6), st.integers(1, 19), st.sampled_from([0, 1]), SHAPES)
def test_meanpool_random(seed, rows, cols, in_dt, shape):
    rng = np.random.default_rng(seed)
    ti = DT[in_dt]
    x = rng.integers(np.iinfo(ti).min, np.iinfo(ti).max + 1, (rows, cols)).astype(ti)
    izp, zp = int(rng.integers(-20, 20)), int(rng.integers(-5, 5))
    mult, shift = quantize_multiplier(float(rng.uniform(0.5, 2.0)) / rows * (1 if in_dt == 0 else 1 / 256))
    want = requantize(x.astype(np.int64).sum(0) - rows * izp, mult, shift, zp)[None]
    act = rng.integers(0, 256, 300, dtype=np.uint8)
    stride = 2 * cols + 1
    _place(act, 3, stride, x)
    before = act.copy()
    run_engine(MeanPoolEngine(*shape), dict(src=3, src_stride=stride, src_dtype=in_dt, rows=rows, cols=cols,
                                            dst=250, dtype=0, param=0), act, None,
               _words([izp, mult, shift, zp, -128, 127]))
    _check(act, before, 250, 0, want)
