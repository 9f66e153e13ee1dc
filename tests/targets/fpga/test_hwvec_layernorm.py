"""LAYERNORM engine (rtl/vector_layernorm.py) against intmath.layernorm_int, bit-exact."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgevit.lower.intmath import layernorm_int, make_layernorm_params
from edgevit.targets.fpga.rtl.vector_layernorm import LayerNormEngine
from edgevit.targets.fpga.rtl.vector_sim import run_engine

CODES = {"int8": 0, "int16": 1}


def _words(vals) -> list[int]:
    return [int(v) & 0xFFFFFFFF for v in vals]


def _split64(v) -> list[int]:
    v = int(v) & ((1 << 64) - 1)
    return [v & 0xFFFFFFFF, v >> 32]


def run_layernorm(seed, vl, bm, rows, dim, in_dtype="int8", group=4, constant_row=False, unit=None, **kw):
    """Run LAYERNORM on random rows; assert bit-exact with layernorm_int; return cycles."""
    rng = np.random.default_rng(seed)
    in_dt = np.dtype(in_dtype)
    lo, hi = np.iinfo(in_dt).min, np.iinfo(in_dt).max
    x = rng.integers(lo, hi + 1, (rows, dim)).astype(in_dt)
    if rows > 1:
        x[1] = rng.integers(-3, 4, dim)                     # small variance
    if constant_row:
        x[0] = 7                                            # V == 0
    params = make_layernorm_params(float(rng.uniform(0.01, 0.2)), rng.normal(1, 0.3, dim), rng.normal(0, 0.5, dim),
                                   float(rng.uniform(0.02, 0.1)), eps=1e-5, out_zp=int(rng.integers(-10, 10)),
                                   in_dtype=in_dt)
    want = layernorm_int(x, params)
    es = in_dt.itemsize
    src, src_stride = 8, dim * es + 5
    dst, dst_stride = src + rows * src_stride + 16, dim + 3
    act = rng.integers(0, 256, dst + rows * dst_stride + 64, dtype=np.uint8)
    for r in range(rows):
        act[src + r * src_stride:src + (r + 1) * src_stride - 5] = x[r].view(np.uint8)
    header = _words([params["frac_bits"]]) + _split64(params["eps_fixed"]) + _words(
        [params["out_shift"], params["out_zp"], params["qmin"], params["qmax"]])
    chan = []
    for g, b in zip(params["gain"], params["bias"]):
        chan += _words([g]) + _split64(b)
    pbase, cbase = 3, 20
    param = np.zeros(cbase + len(chan) + 2, np.uint32)
    param[pbase:pbase + len(header)] = header
    param[cbase:cbase + len(chan)] = chan
    before = act.copy()
    fields = dict(src=src, src_stride=src_stride, src_dtype=CODES[in_dtype], dst=dst, dst_stride=dst_stride,
                  dtype=0, rows=rows, cols=dim, param=pbase, chan=cbase)
    engine = unit or LayerNormEngine(vl, bm, group=group, **kw)
    cycles = run_engine(engine, fields, act, None, param.view(np.int32), op="LAYERNORM" if unit else None)
    for r in range(rows):
        got = act[dst + r * dst_stride:dst + r * dst_stride + dim].view(np.int8)
        np.testing.assert_array_equal(got, want[r], err_msg=f"row {r}")
        act[dst + r * dst_stride:dst + r * dst_stride + dim] = before[dst + r * dst_stride:dst + r * dst_stride + dim]
    np.testing.assert_array_equal(act, before, err_msg="bytes outside the destination changed")
    return cycles


def test_layernorm_constant_row_and_groups():
    run_layernorm(1, 4, 8, rows=5, dim=13, group=2, constant_row=True)


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 4), st.integers(1, 24), st.sampled_from(["int8", "int16"]),
       st.sampled_from([(4, 8), (8, 8)]))
def test_layernorm_random(seed, rows, dim, in_dtype, shape):
    run_layernorm(seed, *shape, rows=rows, dim=dim, in_dtype=in_dtype, group=3)


@pytest.mark.slow
def test_layernorm_d96_cycles():
    rows = 16
    cycles = run_layernorm(7, 8, 8, rows=rows, dim=96, group=64)
    print(f"LAYERNORM D=96 vl=8: {cycles / rows:.1f} cycles/row ({cycles} for {rows} rows)")
