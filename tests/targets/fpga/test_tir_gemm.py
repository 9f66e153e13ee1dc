"""GEMM tiling as a TIR schedule tensorized to the overlay GEMM intrinsic (compiler/tir_gemm.py)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.targets.fpga.compiler.tir_gemm import (GEMM_CALL, WalkError, gemm_func, gemm_schedule, gemm_steps,
                                                    padded, walk_events)
from edgevit.targets.fpga.config import OverlayConfig

BASE = OverlayConfig(bk=16, bm=8, vl=8, act_bytes=65536, wgt_tiles=64, acc_rows=64, param_words=1024,
                     bus_bytes=8, clock_hz=100_000_000, ddr_latency_cycles=40)

shapes = st.tuples(st.integers(1, 150), st.integers(1, 70), st.integers(1, 40))
configs = st.builds(lambda bm, acc: replace(BASE, bm=bm, acc_rows=acc),
                    st.sampled_from([4, 8, 16]), st.sampled_from([8, 32, 64, 256]))


def check_steps(steps, n, k, m, cfg):
    """Coverage (each (row, m, k) of the padded problem exactly once), reset/last and row limits."""
    kp, mp = padded(k, m, cfg)
    mbs, kbs = mp // cfg.bm, kp // cfg.bk
    cover = np.zeros((n, mbs, kbs), np.int32)
    seen_k: dict = {}
    for s in steps:
        assert 1 <= s.rows <= cfg.acc_rows // 2
        assert 0 <= s.n0 and s.n0 + s.rows <= n and 0 <= s.mb < mbs and 0 <= s.kb < kbs
        cover[s.n0:s.n0 + s.rows, s.mb, s.kb] += 1
        done = seen_k.setdefault((s.n0, s.mb), [])
        assert s.reset == (not done), f"reset must be exactly the first GEMM of its tile: {s}"
        assert done == list(range(len(done))) and s.kb == len(done), "k blocks of a tile run in order"
        done.append(s.kb)
        assert s.last == (s.kb == kbs - 1)
    assert (cover == 1).all()
    assert all(len(v) == kbs for v in seen_k.values())


def run_steps(steps, x, w, cfg):
    """Execute the steps on NumPy tiles like the overlay: ACC [rows, bm] per tile, stored after `last`."""
    n, k = x.shape
    m = w.shape[0]
    kp, mp = padded(k, m, cfg)
    xp = np.zeros((n, kp), np.int8)
    xp[:, :k] = x
    wp = np.zeros((mp, kp), np.int8)
    wp[:m, :k] = w
    out = np.full((n, mp), -12345, np.int64)
    acc: dict = {}
    for s in steps:
        rows, ms, ks = slice(s.n0, s.n0 + s.rows), slice(s.mb * cfg.bm, (s.mb + 1) * cfg.bm), \
            slice(s.kb * cfg.bk, (s.kb + 1) * cfg.bk)
        part = xp[rows, ks].astype(np.int32) @ wp[ms, ks].astype(np.int32).T
        key = (s.n0, s.mb)
        assert s.reset or key in acc, "accumulate into a tile that was never reset"
        acc[key] = part if s.reset else acc[key] + part
        if s.last:
            out[rows, ms] = acc.pop(key)
    assert not acc
    return out[:, :m]


@settings(max_examples=30, deadline=None)
@given(shapes, configs)
def test_steps_cover_each_product_once(shape, cfg):
    n, k, m = shape
    check_steps(gemm_steps(n, k, m, cfg), n, k, m, cfg)


def test_rows_split_and_tail():
    cfg = replace(BASE, acc_rows=64)  # row blocks of at most 32
    steps = gemm_steps(100, 40, 20, cfg)
    assert sorted({(s.n0, s.rows) for s in steps}) == [(0, 25), (25, 25), (50, 25), (75, 25)]
    steps = gemm_steps(97, 40, 20, cfg)
    assert sorted({(s.n0, s.rows) for s in steps}) == [(0, 25), (25, 25), (50, 25), (75, 22)]
    check_steps(steps, 97, 40, 20, cfg)
    # execution order: (row block, m block, k block)
    assert [(s.n0, s.mb, s.kb) for s in steps] == sorted((s.n0, s.mb, s.kb) for s in steps)


@settings(max_examples=12, deadline=None)
@given(shapes, configs, st.integers(0, 2**31 - 1))
def test_steps_compute_the_product(shape, cfg, seed):
    n, k, m = shape
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, k), dtype=np.int8)
    w = rng.integers(-128, 128, (m, k), dtype=np.int8)
    got = run_steps(gemm_steps(n, k, m, cfg), x, w, cfg)
    np.testing.assert_array_equal(got, x.astype(np.int64) @ w.astype(np.int64).T)


@pytest.mark.parametrize("n", [40, 33])
def test_schedule_is_tensorized(n):
    sch = gemm_schedule(n, 50, 20, BASE)
    text = sch.mod["main"].script()
    assert f'T.call_extern("int32", "{GEMM_CALL}"' in text
    assert text.count(GEMM_CALL) == (1 if n == 40 else 2)  # 40 = 2 x 20 rows; 33 = 17 + a 16-row tail
    assert 'T.Cast("int32"' not in text, "a scalar int8 multiply is left"
    before = gemm_func(n, 64, 24, 32).script()
    assert 'T.Cast("int32"' in before and GEMM_CALL not in before


def test_walk_refuses_untensorized_ir():
    func = gemm_func(20, 32, 8, 20)
    with pytest.raises(WalkError):
        walk_events(func, list(func.params))


def test_cached_and_fast():
    cfg = replace(BASE, bm=8, acc_rows=2048)
    gemm_steps(3, 3, 3, cfg)  # TVM imported and warm
    t = time.perf_counter()
    first = gemm_steps(197, 192, 768, cfg)
    took = time.perf_counter() - t
    assert took < 0.5, f"{took:.3f} s for a new shape"  # spec: < 0.2 s; slack for a loaded machine
    first.clear()
    t = time.perf_counter()
    again = gemm_steps(197, 192, 768, cfg)
    assert time.perf_counter() - t < 0.05 and len(again) == 1 * 96 * 12
    check_steps(again, 197, 192, 768, cfg)


def test_bad_shape():
    with pytest.raises(ValueError):
        gemm_steps(0, 4, 4, BASE)
