"""MERGE unit (rtl/merge_unit.py) against token_merge.run_int8, bit-exact, in amaranth.sim."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgevit.lower.ops import token_merge
from edgevit.lower.program import Kernel
from edgevit.targets.fpga.rtl.merge_unit import MergeUnit
from edgevit.targets.fpga.rtl.vector_sim import run_engine

CODES = {"int8": 0, "int16": 1}


def random_image(rng, n, d, heads, head_dim, dtype, sizes):
    """Tokens [N, D], qkv [N, 3*H*hd] int8 with ties (repeated keys) and a zero key, optional sizes [N]."""
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    x = rng.integers(info.min, info.max + 1, (n, d)).astype(dt)
    qkv = rng.integers(-128, 128, (n, 3 * heads * head_dim)).astype(np.int8)
    key = slice(heads * head_dim, 2 * heads * head_dim)
    for _ in range(int(rng.integers(0, 3))):                 # equal keys: tied similarities and scores
        a, b = rng.integers(0, n, 2)
        qkv[a, key] = qkv[b, key]
    if rng.random() < 0.3:
        qkv[int(rng.integers(0, n)), key] = 0                 # n_j == 0: u_j = 0
    if rng.random() < 0.2:
        qkv[:, key] = rng.integers(-2, 3, (n, heads * head_dim))   # small keys, many ties
    size = None
    if sizes:
        size = rng.integers(1, max(2, (1 << 14) // n) + 1, n).astype(np.int32)
    return x, qkv, size


def run_merge(seed, n, d, heads, head_dim, r, protect, dtype="int8", sizes=False, vl=8, unit=None, slack=0):
    """Run one MERGE on a random image, assert it matches run_int8 and touches nothing else; return cycles."""
    rng = np.random.default_rng(seed)
    x, qkv, size = random_image(rng, n, d, heads, head_dim, dtype, sizes)
    kernel = Kernel(op="token_merge", name="m", inputs=("tokens", "qkv"), outputs=("merged", "sizes"),
                    attrs={"r": r, "heads": heads, "head_dim": head_dim, "protect": protect})
    inputs = [x[None], qkv[None]] + ([size[None]] if sizes else [])
    want_x, want_s = (o[0] for o in token_merge.run_int8(kernel, inputs, {}))
    es = x.dtype.itemsize
    ts = d * es + int(rng.integers(0, 5))
    qs = qkv.shape[1] + int(rng.integers(0, 5))
    tokens = 5
    qa = tokens + n * ts + 3
    sa = qa + n * qs + 7
    dst = sa + 4 * n + 9
    ds = d * es + int(rng.integers(0, 4))
    dsz = dst + (n - r) * ds + 6
    act = rng.integers(0, 256, dsz + 4 * (n - r) + 32, dtype=np.uint8)
    for j in range(n):
        act[tokens + j * ts:tokens + j * ts + d * es] = x[j].view(np.uint8)
        act[qa + j * qs:qa + j * qs + qkv.shape[1]] = qkv[j].view(np.uint8)
    if sizes:
        act[sa:sa + 4 * n] = size.view(np.uint8)
    before = act.copy()
    fields = dict(has_sizes=int(sizes), dtype=CODES[dtype], tokens=tokens, tokens_stride=ts, qkv=qa, qkv_stride=qs,
                  sizes=sa if sizes else 0, dst=dst, dst_stride=ds, dst_sizes=dsz, rows=n, cols=d, r=r, heads=heads,
                  head_dim=head_dim, protect=protect)
    unit = unit or MergeUnit(vl, 8, max_tokens=n + slack, max_head_dim=head_dim + slack)
    cycles = run_engine(unit, fields, act, op="MERGE")
    for i in range(n - r):
        row = slice(dst + i * ds, dst + i * ds + d * es)
        np.testing.assert_array_equal(act[row].view(x.dtype), want_x[i], err_msg=f"row {i}")
        act[row] = before[row]
    got_s = act[dsz:dsz + 4 * (n - r)].view(np.int32)
    np.testing.assert_array_equal(got_s, want_s, err_msg="sizes")
    act[dsz:dsz + 4 * (n - r)] = before[dsz:dsz + 4 * (n - r)]
    np.testing.assert_array_equal(act, before, err_msg="bytes outside the outputs changed")
    return cycles


def test_merge_small_fixed():
    run_merge(3, n=7, d=5, heads=2, head_dim=3, r=2, protect=1, slack=9)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(5, 17), st.integers(4, 24), st.integers(1, 3), st.integers(2, 8),
       st.integers(0, 2), st.sampled_from(["int8", "int16"]), st.booleans(), st.sampled_from([8, 16]), st.data())
def test_merge_random(seed, n, d, heads, head_dim, protect, dtype, sizes, vl, data):
    r = data.draw(st.integers(1, (n - protect) // 2), label="r")
    run_merge(seed, n, d, heads, head_dim, r, protect, dtype, sizes, vl)


@pytest.mark.slow
def test_merge_fmnist_small_cycles():
    unit = MergeUnit(8, 8, max_tokens=64, max_head_dim=32)
    cycles = run_merge(11, n=50, d=96, heads=3, head_dim=32, r=8, protect=1, unit=unit)
    print(f"MERGE N=50 D=96 heads=3 hd=32 r=8 vl=8: {cycles} cycles")
