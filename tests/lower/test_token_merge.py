"""The token_merge op (float and integer) and attention's `size` input (proportional attention)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgevit.lower.intlut import make_score_lut, score_index_params
from edgevit.lower.intmath import quantize_multiplier
from edgevit.lower.ops import get_op
from edgevit.lower.ops.attention import run_float as attention_float, run_int8 as attention_int8
from edgevit.lower.ops.token_merge import UNIT_BITS, run_float, run_int8, unit_keys_int
from edgevit.lower.from_quantized import log_size_table
from edgevit.lower.program import Kernel, ProgramError
from edgevit.model.vit import bipartite_merge


def merge_kernel(r: int, heads: int, head_dim: int, protect: int) -> Kernel:
    return Kernel(op="token_merge", name="m", inputs=("x", "qkv", "s"), outputs=("y", "sy"),
                  attrs={"r": r, "heads": heads, "head_dim": head_dim, "protect": protect})


def reference_int_merge(x, qkv, size, r, heads, hd, protect, qmin):
    """The integer rules of docs/integer-semantics.md ("token_merge") for one image, in plain Python ints."""
    n = len(x)
    keys = [[sum(int(qkv[j][heads * hd + h * hd + t]) for h in range(heads)) for t in range(hd)] for j in range(n)]

    def unit(k):
        norm2 = sum(v * v for v in k)
        if norm2 == 0:
            return [0] * hd
        s = (62 - norm2.bit_length()) >> 1
        q = math.isqrt(norm2 << (2 * s))
        big_r = ((1 << 61) + (q >> 1)) // q
        sh = 61 - UNIT_BITS - s
        return [(v * big_r + (1 << (sh - 1))) >> sh for v in k]

    u = [unit(k) for k in keys]
    a_set, b_set = list(range(0, n, 2)), list(range(1, n, 2))
    targets = [b for b in b_set if b >= protect]  # the distillation token (position 1) receives nothing
    best, score = {}, {}
    for a in a_set:
        if a < protect:
            continue
        sims = [sum(p * q for p, q in zip(u[a], u[b])) for b in targets]
        score[a], best[a] = max(sims), targets[sims.index(max(sims))]
    candidates = sorted((a for a in a_set if a >= protect), key=lambda a: (-score[a], a))
    src = candidates[:r]
    members = {b: [b] for b in b_set}
    for a in src:
        members[best[a]].append(a)
    rows, sizes = [], []
    order = list(range(protect)) + [a for a in a_set if a >= protect and a not in src] + \
        [b for b in b_set if b >= protect]  # protected tokens first, then kept A, then B
    for a in order:
        if a % 2 == 0:
            rows.append([int(v) for v in x[a]])
            sizes.append(int(size[a]))
            continue
        b = a
        den = sum(int(size[m]) for m in members[b])
        rows.append([(2 * sum(int(size[m]) * (int(x[m][d]) - qmin) for m in members[b]) + den) // (2 * den) + qmin
                     for d in range(len(x[0]))])
        sizes.append(den)
    return np.array(rows), np.array(sizes)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 11), d=st.integers(1, 4), heads=st.integers(1, 3), hd=st.integers(1, 5),
       protect=st.integers(0, 2), dtype=st.sampled_from(["int8", "int16"]), sized=st.booleans(),
       seed=st.integers(0, 2**16), data=st.data())
def test_integer_merge_matches_a_plain_python_reading_of_the_spec(n, d, heads, hd, protect, dtype, sized, seed, data):
    assume((n - protect) // 2 >= 1)
    r = data.draw(st.integers(1, (n - protect) // 2))
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    b = 3
    x = rng.integers(info.min, info.max + 1, (b, n, d)).astype(dtype)
    qkv = rng.integers(-128, 128, (b, n, 3 * heads * hd)).astype(np.int8)
    if seed % 3 == 0:
        qkv[:, : n // 2] = qkv[:, :1]  # exact ties
    if seed % 5 == 0:
        qkv[:, 1] = 0  # a zero key vector
    size = rng.integers(1, 6, (b, n)).astype(np.int32)
    k = merge_kernel(r, heads, hd, protect)
    y, s = run_int8(k, [x, qkv, size] if sized else [x, qkv], {})
    assert y.dtype == x.dtype and y.shape == (b, n - r, d) and s.dtype == np.int32
    for i in range(b):
        ry, rs = reference_int_merge(x[i], qkv[i], size[i] if sized else np.ones(n, int), r, heads, hd, protect,
                                     int(info.min))
        np.testing.assert_array_equal(y[i], ry)
        np.testing.assert_array_equal(s[i], rs)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 12), d=st.integers(1, 6), heads=st.integers(1, 3), hd=st.integers(1, 6),
       protect=st.integers(0, 2), seed=st.integers(0, 2**16), data=st.data())
def test_float_merge_equals_the_torch_model(n, d, heads, hd, protect, seed, data):
    assume((n - protect) // 2 >= 1)
    r = data.draw(st.integers(1, (n - protect) // 2))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, n, d)).astype(np.float32)
    qkv = rng.standard_normal((4, n, 3 * heads * hd)).astype(np.float32)
    size = rng.integers(1, 7, (4, n)).astype(np.float32)
    y, s = run_float(merge_kernel(r, heads, hd, protect), [x, qkv, size], {})
    keys = torch.from_numpy(qkv).reshape(4, n, 3, heads, hd)[:, :, 1].double().mean(dim=2)
    ty, ts = bipartite_merge(torch.from_numpy(x), keys, torch.from_numpy(size), r, protect)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(s, ts.numpy())


def test_integer_unit_keys_approximate_cosine_similarity():
    rng = np.random.default_rng(0)
    qkv = rng.integers(-128, 128, (2, 40, 3 * 4 * 16)).astype(np.int8)
    u = unit_keys_int(qkv, 4, 16).astype(np.float64)
    k = qkv.reshape(2, 40, 3, 4, 16)[:, :, 1].astype(np.float64).sum(axis=2)
    norm = np.linalg.norm(k, axis=-1)
    cos = np.einsum("bnt,bmt->bnm", k, k) / (norm[:, :, None] * norm[:, None, :])
    assert np.abs(np.linalg.norm(u, axis=-1) / 2**UNIT_BITS - 1).max() < 1e-3
    assert np.abs(np.einsum("bnt,bmt->bnm", u, u) / 4**UNIT_BITS - cos).max() < 1e-3
    assert np.abs(u).max() < 2**15  # fits int16


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(4, 20), r=st.integers(1, 4))
def test_integer_and_float_merges_choose_the_same_pairs_without_near_ties(seed, n, r):
    r = min(r, (n - 1) // 2)
    rng = np.random.default_rng(seed)
    qkv = rng.integers(-128, 128, (1, n, 3 * 2 * 8)).astype(np.int8)
    k = qkv.reshape(1, n, 3, 2, 8)[:, :, 1].astype(np.float64).sum(axis=2)[0]
    unit = k / np.linalg.norm(k, axis=-1, keepdims=True)
    sim = unit[::2] @ unit[1::2].T
    best = np.sort(sim, axis=1)
    scores = np.sort(sim[1:].max(axis=1))
    assume(np.all(best[:, -1] - best[:, -2] > 2e-3) if sim.shape[1] > 1 else True)
    assume(np.all(np.diff(scores) > 2e-3))
    x = np.arange(n, dtype=np.int8).reshape(1, n, 1)
    yi, si = run_int8(merge_kernel(r, 2, 8, 1), [x, qkv], {})
    yf, sf = run_float(merge_kernel(r, 2, 8, 1), [x.astype(np.float32), qkv.astype(np.float32)], {})
    np.testing.assert_array_equal(si, sf.astype(np.int32))
    assert np.abs(yi - yf).max() <= 0.5  # same pairs: only the integer rounding of the means differs


def test_bad_sizes_are_rejected_at_run_time():
    x, qkv = np.zeros((1, 4, 2), np.int8), np.ones((1, 4, 6), np.int8)
    with pytest.raises(ProgramError, match="sizes must be >= 1"):
        run_int8(merge_kernel(1, 1, 2, 0), [x, qkv, np.array([[1, 0, 1, 1]], np.int32)], {})


# ---------------------------------------------------------------- proportional attention

def attention_kernels(h: int, hd: int, s_qkv: float, s_out: float, max_size: int):
    lut = make_score_lut()
    sm, ss = score_index_params(s_qkv * s_qkv / math.sqrt(hd), lut)
    om, osh = quantize_multiplier(s_qkv / (255.0 * s_out))
    attrs = {"heads": h, "head_dim": hd, "score_multiplier": sm, "score_shift": ss, "out_multiplier": om,
             "out_shift": osh, "out_quant": {"scale": s_out, "zero_point": 0, "dtype": "int8"}}
    table = log_size_table(s_qkv * s_qkv / math.sqrt(hd), max_size)
    fk = Kernel(op="attention", name="a", inputs=("qkv", "s"), outputs=("o",),
                attrs={"heads": h, "head_dim": hd, "scale": 1 / math.sqrt(hd)})
    ik = Kernel(op="attention", name="a", inputs=("qkv", "s"), outputs=("o",),
                consts={"score_lut": "l", "log_size": "t"}, attrs=attrs)
    return fk, ik, {"score_lut": lut["table"], "log_size": table}


def test_integer_proportional_attention_tracks_the_float_one():
    h, hd, n, s_qkv, s_out = 2, 8, 12, 0.03, 0.03
    fk, ik, consts = attention_kernels(h, hd, s_qkv, s_out, max_size=20)
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (3, n, 3 * h * hd)).astype(np.int8)
    sizes = rng.integers(1, 21, (3, n)).astype(np.int32)
    assert consts["log_size"][0] == 0 and consts["log_size"][1] == round(math.log(2) / (s_qkv**2 / math.sqrt(hd)))
    plain = attention_int8(ik, [q], {"score_lut": consts["score_lut"]})[0]
    np.testing.assert_array_equal(attention_int8(ik, [q, np.ones((3, n), np.int32)], consts)[0], plain)
    got = attention_int8(ik, [q, sizes], consts)[0].astype(np.float64) * s_out
    want = attention_float(fk, [q.astype(np.float32) * s_qkv, sizes.astype(np.float32)], {})[0]
    unsized = attention_float(fk, [q.astype(np.float32) * s_qkv], {})[0]
    assert np.abs(got - want).max() < 4 * s_out  # ~1/128 per probability plus output rounding
    assert np.abs(unsized - want).max() > 10 * s_out  # the sizes matter
    with pytest.raises(ProgramError, match="token sizes must be in"):
        attention_int8(ik, [q, sizes + 20], consts)


def test_attention_size_input_validation():
    from edgevit.lower.program import TensorInfo

    _, ik, consts = attention_kernels(2, 4, 0.05, 0.01, 5)
    qkv = TensorInfo("qkv", (6, 24), "int8", {"scale": 0.05, "zero_point": 0})
    op = get_op("attention")
    assert op.validate(ik, [qkv, TensorInfo("s", (6,), "int32")], consts)[0].shape == (6, 8)
    with pytest.raises(ProgramError, match=r"missing constant role\(s\) \['log_size'\]"):
        op.validate(ik, [qkv, TensorInfo("s", (6,), "int32")], {"score_lut": consts["score_lut"]})
    with pytest.raises(ProgramError, match="a log-size table is int32"):
        op.validate(ik, [qkv, TensorInfo("s", (6,), "int32")], {**consts, "log_size": consts["log_size"] + 1})
