"""Each overlay instruction of the functional simulator (fsim_ops) vs a direct NumPy / reference computation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.intlut import make_gelu_lut, make_score_lut, score_index_params, softmax_from_scores
from edgevit.lower.intmath import (add_int, layernorm_int, make_add_params, make_layernorm_params,
                                   quantize_multipliers, requantize)
from edgevit.lower.ops import token_merge
from edgevit.lower.program import Kernel
from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.fsim_ops import OPS, State
from edgevit.targets.fpga.isa import DTYPE_CODES, Insn

CFG = OverlayConfig(bk=16, bm=4, vl=4, act_bytes=4096, wgt_tiles=8, acc_rows=64, param_words=1024, bus_bytes=8,
                    clock_hz=100_000_000, ddr_latency_cycles=40)
FAST = settings(max_examples=15, deadline=None)


def run(st_: State, insn: Insn) -> None:
    OPS[insn.op](st_, insn, f"test ({insn.op})")


def fresh(seed: int = 0, ddr_bytes: int = 8192) -> State:
    """A State with random ACT, WGT, ACC and DDR (so untouched bytes are visible)."""
    rng = np.random.default_rng(seed)
    s = State(CFG, rng.integers(0, 256, ddr_bytes).astype(np.uint8))
    s.act[:] = rng.integers(0, 256, s.act.size)
    s.wgt[:] = rng.integers(-128, 128, s.wgt.shape)
    s.acc[:] = rng.integers(-2 ** 31, 2 ** 31, s.acc.shape)
    return s


def put_words(s: State, at: int, words) -> None:
    w = np.asarray(words, dtype=np.int64)
    s.param[at:at + w.size] = w.astype(np.int32)


def pair(v: int) -> list[int]:
    """An int64 as two int32 words, low first (low word's bits reinterpreted as signed)."""
    lo = int(v) & 0xFFFFFFFF
    return [lo - (1 << 32) if lo >= 1 << 31 else lo, int(v) >> 32]


def table_words(table: np.ndarray) -> np.ndarray:
    """A 256-entry int8 table packed four a word, entry 0 in the low byte."""
    return np.asarray(table, dtype=np.int8).view("<i4").astype(np.int64)


def act_region(s: State, addr: int, stride: int, values: np.ndarray) -> None:
    """Write values [rows, cols] (their own dtype, little-endian) at addr + r*stride."""
    raw = np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<"))).view(np.uint8)
    for r in range(values.shape[0]):
        s.act[addr + r * stride: addr + r * stride + raw.shape[1]] = raw[r]


def act_read(s: State, addr: int, stride: int, rows: int, cols: int, dtype) -> np.ndarray:
    dt = np.dtype(dtype).newbyteorder("<")
    n = cols * dt.itemsize
    return np.stack([s.act[addr + r * stride: addr + r * stride + n].copy().view(dt) for r in range(rows)])


# ------------------------------------------------------------------ DMA

@FAST
@given(rows=st.integers(1, 5), row_bytes=st.integers(1, 40), dstride=st.integers(40, 90),
       sstride=st.integers(40, 70), seed=st.integers(0, 99))
def test_load_store_act_strided(rows, row_bytes, dstride, sstride, seed):
    s = fresh(seed)
    before = s.act.copy()
    run(s, Insn("LOAD", mem=0, sram=100, dram=300, rows=rows, row_bytes=row_bytes, dram_stride=dstride,
                sram_stride=sstride))
    want = before.copy()
    for r in range(rows):
        want[100 + r * sstride:100 + r * sstride + row_bytes] = s.ddr[300 + r * dstride:300 + r * dstride + row_bytes]
    assert np.array_equal(s.act, want)
    ddr_before = s.ddr.copy()
    run(s, Insn("STORE", sram=100, dram=5000, rows=rows, row_bytes=row_bytes, dram_stride=dstride,
                sram_stride=sstride))
    want_ddr = ddr_before.copy()
    for r in range(rows):
        want_ddr[5000 + r * dstride:5000 + r * dstride + row_bytes] = s.act[100 + r * sstride:100 + r * sstride + row_bytes]
    assert np.array_equal(s.ddr, want_ddr)
    assert s.counts["dma_load_bytes"] == s.counts["dma_store_bytes"] == rows * row_bytes


def test_load_wgt_and_param():
    s = fresh(1)
    run(s, Insn("LOAD", mem=1, sram=3, dram=128, rows=2, row_bytes=64, dram_stride=256))
    for t in range(2):
        raw = s.ddr[128 + 256 * t:128 + 256 * t + 64].view(np.int8).reshape(4, 16)
        assert np.array_equal(s.wgt[3 + t], raw)
    run(s, Insn("LOAD", mem=2, sram=10, dram=1000, rows=3, row_bytes=8, dram_stride=100))
    want = np.concatenate([s.ddr[1000 + 100 * r:1008 + 100 * r].view("<i4") for r in range(3)])
    assert np.array_equal(s.param[10:16], want)
    assert s.counts["load_wgt_bytes"] == 128 and s.counts["load_param_bytes"] == 24


# ------------------------------------------------------------------ GEMM, TILE

@FAST
@given(count=st.integers(1, 9), inp=st.integers(0, 200), inp_stride=st.integers(0, 40), acc=st.integers(0, 5),
       acc_stride=st.integers(0, 5), reset=st.booleans(), unsigned=st.booleans(), wgt=st.integers(0, 7),
       seed=st.integers(0, 99))
def test_gemm_matches_loops(count, inp, inp_stride, acc, acc_stride, reset, unsigned, wgt, seed):
    s = fresh(seed)
    want = s.acc.astype(np.int64)
    w = s.wgt[wgt].astype(np.int64)
    for i in range(count):
        x = s.act[inp + i * inp_stride: inp + i * inp_stride + 16].astype(np.int64)
        if not unsigned:
            x = np.where(x > 127, x - 256, x)
        a = acc + i * acc_stride
        v = (0 if reset else want[a]) + w @ x
        want[a] = (v + 2 ** 31) % 2 ** 32 - 2 ** 31  # int32 wrap-around
    run(s, Insn("GEMM", reset=int(reset), unsigned=int(unsigned), wgt=wgt, acc=acc, acc_stride=acc_stride, inp=inp,
                inp_stride=inp_stride, count=count))
    assert np.array_equal(s.acc.astype(np.int64), want)
    assert s.counts["gemm_steps"] == count


def test_gemm_wraps_int32():
    s = fresh(2)
    s.wgt[0] = 127
    s.act[:16] = 127
    s.acc[0] = 2 ** 31 - 10
    run(s, Insn("GEMM", wgt=0, acc=0, acc_stride=1, inp=0, inp_stride=16, count=1))
    assert int(s.acc[0, 0]) == 2 ** 31 - 10 + 16 * 127 * 127 - 2 ** 32


@FAST
@given(transpose=st.booleans(), rows=st.integers(0, 16), cols=st.integers(0, 16), stride=st.integers(16, 40),
       seed=st.integers(0, 99))
def test_tile(transpose, rows, cols, stride, seed):
    s = fresh(seed)
    rows, cols = (min(rows, 16), min(cols, 4)) if transpose else (min(rows, 4), min(cols, 16))
    run(s, Insn("TILE", transpose=int(transpose), wgt=5, src=30, stride=stride, rows=rows, cols=cols))
    act = s.act.view(np.int8)
    want = np.zeros((4, 16), dtype=np.int8)
    for m in range(4):
        for k in range(16):
            r, c = (k, m) if transpose else (m, k)
            if r < rows and c < cols:
                want[m, k] = act[30 + r * stride + c]
    assert np.array_equal(s.wgt[5], want)


# ------------------------------------------------------------------ vector instructions

@FAST
@given(rows=st.integers(1, 4), cols=st.integers(1, 11), gelu=st.booleans(), int16=st.booleans(),
       seed=st.integers(0, 99))
def test_requant(rows, cols, gelu, int16, seed):
    s = fresh(seed)
    rng = np.random.default_rng(seed)
    s.acc[:] = rng.integers(-50000, 50000, s.acc.shape)
    bias = rng.integers(-1000, 1000, cols)
    mult, shift = quantize_multipliers(rng.uniform(1e-4, 1e-2, cols))
    out = "int8" if gelu or not int16 else "int16"
    zp, qmin, qmax = 3, (-100 if out == "int8" else -30000), 120
    put_words(s, 0, [zp, qmin, qmax])
    table = make_gelu_lut(0.05, zp, 0.04, -2)
    put_words(s, 3, table_words(table))
    put_words(s, 100, np.stack([bias, mult, shift], axis=1).reshape(-1))
    run(s, Insn("REQUANT", gelu=int(gelu), dtype=DTYPE_CODES[out], acc=7, dst=500, dst_stride=40, rows=rows,
                cols=cols, param=0, chan=100))
    per = -(-cols // 4)
    accs = np.array([[s.acc[7 + r * per + c // 4, c % 4] for c in range(cols)] for r in range(rows)])
    want = requantize(accs.astype(np.int64) + bias, mult, shift, zp, qmin, qmax, out_dtype=out)
    if gelu:
        want = table[want.astype(np.int16) + 128]
    assert np.array_equal(act_read(s, 500, 40, rows, cols, out), want)


@FAST
@given(rows=st.integers(1, 4), cols=st.integers(1, 9), dtypes=st.sampled_from(
    [("int8", "int8", "int8"), ("int16", "int8", "int16"), ("int8", "int16", "int8")]), seed=st.integers(0, 99))
def test_add(rows, cols, dtypes, seed):
    s = fresh(seed)
    rng = np.random.default_rng(seed)
    a_dt, b_dt, out = dtypes
    a = rng.integers(*(np.iinfo(a_dt).min, np.iinfo(a_dt).max), (rows, cols)).astype(a_dt)
    b = rng.integers(*(np.iinfo(b_dt).min, np.iinfo(b_dt).max), (rows, cols)).astype(b_dt)
    act_region(s, 0, 40, a)
    act_region(s, 200, 24, b)
    p = make_add_params(0.02, 0.5, 0.3, a_zp=-3, b_zp=7, out_zp=1, out_dtype=out)
    put_words(s, 50, [p["ka"], p["kb"], *pair(p["bias"]), p["shift"], p["out_zp"], p["qmin"], p["qmax"]])
    run(s, Insn("ADD", a=0, b=200, dst=400, a_stride=40, b_stride=24, dst_stride=32, a_dtype=DTYPE_CODES[a_dt],
                b_dtype=DTYPE_CODES[b_dt], dtype=DTYPE_CODES[out], rows=rows, cols=cols, param=50))
    assert np.array_equal(act_read(s, 400, 32, rows, cols, out), add_int(a, b, p))


@FAST
@given(rows=st.integers(1, 3), cols=st.integers(2, 24), int16=st.booleans(), seed=st.integers(0, 99))
def test_layernorm(rows, cols, int16, seed):
    s = fresh(seed)
    rng = np.random.default_rng(seed)
    in_dt = "int16" if int16 else "int8"
    x = rng.integers(np.iinfo(in_dt).min, np.iinfo(in_dt).max, (rows, cols)).astype(in_dt)
    act_region(s, 64, 100, x)
    p = make_layernorm_params(0.03, rng.uniform(-2, 2, cols), rng.uniform(-1, 1, cols), 0.05, eps=1e-5,
                              out_zp=-4, in_dtype=in_dt)
    put_words(s, 0, [p["frac_bits"], *pair(p["eps_fixed"]), p["out_shift"], p["out_zp"], p["qmin"], p["qmax"]])
    put_words(s, 10, np.array([[p["gain"][d], *pair(p["bias"][d])] for d in range(cols)]).reshape(-1))
    run(s, Insn("LAYERNORM", src=64, src_stride=100, src_dtype=DTYPE_CODES[in_dt], dst=1000, dst_stride=30,
                dtype=0, rows=rows, cols=cols, param=0, chan=10))
    assert np.array_equal(act_read(s, 1000, 30, rows, cols, "int8"), layernorm_int(x, p))


@FAST
@given(rows=st.integers(1, 3), cols=st.integers(1, 10), has_sizes=st.booleans(), seed=st.integers(0, 99))
def test_softmax(rows, cols, has_sizes, seed):
    s = fresh(seed)
    rng = np.random.default_rng(seed)
    s.acc[:] = rng.integers(-3000, 3000, s.acc.shape)
    lut = make_score_lut(table_size=256, max_len=64)
    mult, shift = score_index_params(0.004, lut)
    log_size = np.minimum(np.round(np.log(np.arange(1, 6)) / 0.004), 2 ** 30).astype(np.int64)
    sizes = rng.integers(1, 6, cols).astype(np.int32)
    act_region(s, 3000, 0, sizes[None])
    put_words(s, 0, [mult, shift, 16, lut["table_size"], 8, log_size.size])
    put_words(s, 8, log_size)
    put_words(s, 16, lut["table"])
    run(s, Insn("SOFTMAX", has_sizes=int(has_sizes), acc=2, rows=rows, cols=cols, dst=100, dst_stride=20,
                sizes=3000, param=0))
    per = -(-cols // 4)
    scores = np.array([[s.acc[2 + r * per + c // 4, c % 4] for c in range(cols)] for r in range(rows)], np.int64)
    if has_sizes:
        scores = scores + log_size[sizes - 1]
    want = softmax_from_scores(scores, mult, shift, lut)
    assert np.array_equal(act_read(s, 100, 20, rows, cols, "uint8"), want)


def test_copy_and_lut():
    s = fresh(3)
    want = [s.act[7 + 50 * r:7 + 50 * r + 13].copy() for r in range(3)]
    run(s, Insn("COPY", src=7, src_stride=50, dst=1001, dst_stride=20, rows=3, row_bytes=13))
    for r in range(3):
        assert np.array_equal(s.act[1001 + 20 * r:1014 + 20 * r], want[r])
    table = make_gelu_lut(0.1, 2, 0.08, -5)
    put_words(s, 64, table_words(table))
    x = act_read(s, 0, 33, 4, 9, "int8")
    run(s, Insn("LUT", src=0, src_stride=33, dst=2000, dst_stride=9, rows=4, cols=9, param=64))
    assert np.array_equal(act_read(s, 2000, 9, 4, 9, "int8"), table[x.astype(np.int16) + 128])


@pytest.mark.parametrize("src_dt", ["int8", "int16"])
def test_meanpool(src_dt):
    s = fresh(4)
    x = act_read(s, 10, 70, 5, 12, src_dt)
    put_words(s, 0, [-3, 1518500250, -2, 6, -128, 127])
    run(s, Insn("MEANPOOL", src=10, src_stride=70, src_dtype=DTYPE_CODES[src_dt], rows=5, cols=12, dst=900,
                dtype=0, param=0))
    acc = x.sum(axis=0, keepdims=True, dtype=np.int64) + 5 * 3
    assert np.array_equal(act_read(s, 900, 0, 1, 12, "int8"), requantize(acc, 1518500250, -2, 6))


@pytest.mark.parametrize("has_sizes,protect,dt", [(False, 1, "int8"), (True, 2, "int16"), (True, 0, "int8")])
def test_merge(has_sizes, protect, dt):
    s = fresh(5)
    rng = np.random.default_rng(5)
    n, d, heads, hd, r = 9, 6, 2, 3, 3
    x = act_read(s, 0, 20, n, d, dt)
    qkv = rng.integers(-128, 128, (n, 3 * heads * hd)).astype(np.int8)
    act_region(s, 400, 24, qkv)
    sizes = rng.integers(1, 4, n).astype(np.int32)
    act_region(s, 800, 0, sizes[None])
    run(s, Insn("MERGE", has_sizes=int(has_sizes), dtype=DTYPE_CODES[dt], tokens=0, tokens_stride=20, qkv=400,
                qkv_stride=24, sizes=800, dst=1200, dst_stride=16, dst_sizes=1500, rows=n, cols=d, r=r,
                heads=heads, head_dim=hd, protect=protect))
    kernel = Kernel(op="token_merge", name="ref", inputs=("t", "q"), outputs=("o", "s"),
                    attrs={"r": r, "heads": heads, "head_dim": hd, "protect": protect})
    inputs = [x[None], qkv[None]] + ([sizes[None]] if has_sizes else [])
    tokens, out_sizes = token_merge.run_int8(kernel, inputs, {})
    assert np.array_equal(act_read(s, 1200, 16, n - r, d, dt), tokens[0])
    assert np.array_equal(act_read(s, 1500, 0, 1, n - r, "int32")[0], out_sizes[0])
