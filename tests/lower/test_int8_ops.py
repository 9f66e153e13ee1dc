"""Integer op runners against independent straightforward implementations (Python ints, loops): bit-exact.

The references below follow docs/integer-semantics.md line by line with Python integers
(`>>` on Python ints is an exact floor shift), sharing no run-time code with intmath/intlut.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.lower.intlut import make_gelu_lut, make_score_lut, score_index_params
from edgevit.lower.intmath import make_add_params, make_layernorm_params, quantize_multiplier, quantize_multipliers
from edgevit.lower.ops import get_op, kernel_dtype
from edgevit.lower.ops.intcommon import add_attrs, pack_int4, quant_attr, unpack_int4
from edgevit.lower.program import Kernel, ProgramError, TensorInfo

FAST = settings(max_examples=25, deadline=None)
INT32_MAX = (1 << 31) - 1


# ---------------------------------------------------------------- exact references (Python ints)

def rshift(x: int, n: int) -> int:
    """Round-half-up shift of the spec."""
    return (x + (1 << (n - 1))) >> n if n else x


def requant(acc: int, m: int, shift: int, zp: int, lo: int = -128, hi: int = 127) -> int:
    return min(max(rshift(acc * m, 31 - shift) + zp, lo), hi)


def softmax_row(scores: list[int], m: int, shift: int, table: list[int]) -> list[int]:
    """softmax_from_scores for one row: uint8 probabilities (q/255)."""
    top = max(scores)
    e = [table[min(rshift(min(top - s, INT32_MAX) * m, 31 - shift), len(table) - 1)] for s in scores]
    total = sum(e)
    r = ((255 << 40) + (total >> 1)) // total
    return [min(rshift(v * r, 40), 255) for v in e]


def layernorm_row(x: list[int], p: dict) -> list[int]:
    """layernorm_int for one row, steps 1-8 of the spec (math.isqrt for isqrt64)."""
    d, f = len(x), p["frac_bits"]
    c = [d * v - sum(x) for v in x]
    w = (sum(v * v for v in c) << f) + p["eps_fixed"]
    s = min((62 - w.bit_length()) >> 1, 30 - f // 2)
    q = math.isqrt(w << (2 * s))
    r = ((1 << 61) + (q >> 1)) // q
    u = [rshift(v * r, 31 - f // 2 - s) for v in c]
    return [min(max(rshift(ui * int(g) + int(bb), p["out_shift"]) + p["out_zp"], -128), 127)
            for ui, g, bb in zip(u, p["gain"], p["bias"])]


# ---------------------------------------------------------------- running one kernel

def run_kernel(op: str, inputs: list[np.ndarray], consts: dict, attrs: dict, quants=None):
    """Validate and run a single kernel on batched inputs; returns (output [B, ...], output TensorInfo)."""
    quants = quants or [None] * len(inputs)
    infos = [TensorInfo(f"in{i}", a.shape[1:], str(a.dtype), q) for i, (a, q) in enumerate(zip(inputs, quants))]
    k = Kernel(op, "k", tuple(i.name for i in infos), ("out",), consts={r: f"c_{r}" for r in consts}, attrs=attrs)
    (info,) = get_op(op).validate(k, infos, consts)
    (y,) = get_op(op).runner(kernel_dtype(k, infos), k)(k, inputs, consts)
    assert str(y.dtype) == info.dtype and y.shape[1:] == info.shape
    return y, info


def requant_consts(rng, m: int, lo: float = 1e-4, hi: float = 1e-2) -> dict:
    mult, shift = quantize_multipliers(rng.uniform(lo, hi, m))
    return {"multiplier": mult, "shift": shift}


# ---------------------------------------------------------------- 4-bit packing

@FAST
@given(m=st.integers(1, 4), k=st.integers(1, 9), seed=st.integers(0, 1000))
def test_pack_int4_round_trip_and_nibble_order(m, k, seed) -> None:
    w = np.random.default_rng(seed).integers(-8, 8, (m, k))
    packed = pack_int4(w)
    assert packed.dtype == np.int8 and packed.shape == (m, (k + 1) // 2)
    np.testing.assert_array_equal(unpack_int4(packed, k), w)
    for r in range(m):
        for j in range(k):
            byte = int(packed[r, j // 2]) & 0xFF
            nib = (byte >> 4) if j % 2 else byte & 0xF  # low nibble = even k, high nibble = odd k
            assert nib - 16 * (nib >= 8) == w[r, j]
    if k % 2:
        assert np.all((packed[:, -1].astype(np.int64) >> 4) == 0)  # padding nibble is 0


# ---------------------------------------------------------------- GEMM ops

@FAST
@given(seed=st.integers(0, 10_000), bits=st.sampled_from([8, 4]), gelu=st.booleans(), k=st.integers(1, 9))
def test_linear_int8_matches_python_ints(seed, bits, gelu, k) -> None:
    rng = np.random.default_rng(seed)
    b, n, m = 2, 3, 4
    lim = 127 if bits == 8 else 7
    x = rng.integers(-128, 128, (b, n, k)).astype(np.int8)
    w = rng.integers(-lim, lim + 1, (m, k)).astype(np.int8)
    consts = {"weight": w if bits == 8 else pack_int4(w), "bias": rng.integers(-5000, 5000, m).astype(np.int32),
              **requant_consts(rng, m)}
    attrs = {"out_quant": quant_attr(0.1, int(rng.integers(-20, 20)), "int8")}
    if bits == 4:
        attrs["weight_bits"] = 4
    if gelu:
        consts["act_lut"] = make_gelu_lut(0.05, 7, 0.02, -100)
        attrs.update(activation="gelu", act_in_quant=quant_attr(0.05, 7, "int8"))
    y, info = run_kernel("linear", [x], consts, attrs)
    assert info.shape == (n, m) and info.quant == {"scale": 0.1, "zero_point": attrs["out_quant"]["zero_point"]}
    zp = (attrs["act_in_quant"] if gelu else attrs["out_quant"])["zero_point"]
    for bi in range(b):
        for r in range(n):
            for c in range(m):
                acc = sum(int(x[bi, r, t]) * int(w[c, t]) for t in range(k)) + int(consts["bias"][c])
                want = requant(acc, int(consts["multiplier"][c]), int(consts["shift"][c]), zp)
                if gelu:
                    want = int(consts["act_lut"][want + 128])
                assert y[bi, r, c] == want


def test_patch_embed_int8_matches_loops() -> None:
    rng = np.random.default_rng(3)
    b, c, h, w, p, d = 2, 2, 4, 6, 2, 3
    x = rng.integers(-128, 128, (b, c, h, w)).astype(np.int8)
    wt = rng.integers(-127, 128, (d, c * p * p)).astype(np.int8)
    consts = {"weight": wt, "bias": rng.integers(-9000, 9000, d).astype(np.int32), **requant_consts(rng, d)}
    for dtype, zp in (("int8", -5), ("int16", 300)):
        attrs = {"patch": p, "out_quant": quant_attr(0.5, zp, dtype)}
        y, info = run_kernel("patch_embed", [x], consts, attrs)
        assert info.dtype == dtype and info.shape == ((h // p) * (w // p), d)
        lo, hi = (-128, 127) if dtype == "int8" else (-32768, 32767)
        for bi in range(b):
            for gy in range(h // p):
                for gx in range(w // p):
                    for o in range(d):
                        acc = int(consts["bias"][o]) + sum(
                            int(x[bi, ci, gy * p + kh, gx * p + kw]) * int(wt[o, (ci * p + kh) * p + kw])
                            for ci in range(c) for kh in range(p) for kw in range(p))
                        want = requant(acc, int(consts["multiplier"][o]), int(consts["shift"][o]), zp, lo, hi)
                        assert y[bi, gy * (w // p) + gx, o] == want


# ---------------------------------------------------------------- attention

@FAST
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), heads=st.integers(1, 2), hd=st.integers(1, 4),
       qscale=st.floats(0.01, 0.5))
def test_attention_int8_equals_per_row_loop(seed, n, heads, hd, qscale) -> None:
    rng = np.random.default_rng(seed)
    qkv = rng.integers(-128, 128, (2, n, 3 * heads * hd)).astype(np.int8)
    lut = make_score_lut()
    sm, ss = score_index_params(qscale * qscale / math.sqrt(hd), lut)
    om, osh = quantize_multiplier(qscale / (255 * 0.05))
    attrs = {"heads": heads, "head_dim": hd, "score_multiplier": sm, "score_shift": ss, "out_multiplier": om,
             "out_shift": osh, "out_quant": quant_attr(0.05, 3, "int8")}
    y, _ = run_kernel("attention", [qkv], {"score_lut": lut["table"]}, attrs, [{"scale": qscale, "zero_point": 0}])
    table = [int(v) for v in lut["table"]]
    for b in range(2):
        t = qkv[b].astype(np.int64).reshape(n, 3, heads, hd)
        for h in range(heads):
            for i in range(n):
                scores = [int(sum(int(t[i, 0, h, c]) * int(t[j, 1, h, c]) for c in range(hd))) for j in range(n)]
                p = softmax_row(scores, sm, ss, table)
                for c in range(hd):
                    acc = sum(p[j] * int(t[j, 2, h, c]) for j in range(n))
                    assert y[b, i, h * hd + c] == requant(acc, om, osh, 3)


# ---------------------------------------------------------------- LayerNorm, add, add_pos

@FAST
@given(seed=st.integers(0, 10_000), d=st.integers(1, 40), in_dtype=st.sampled_from(["int8", "int16"]))
def test_layernorm_int_matches_python_ints(seed, d, in_dtype) -> None:
    rng = np.random.default_rng(seed)
    info = np.iinfo(in_dtype)
    x = rng.integers(info.min, int(info.max) + 1, (2, 3, d)).astype(in_dtype)
    x[0, 0] = x[0, 0, 0]  # a constant row (variance 0)
    p = make_layernorm_params(0.02 if in_dtype == "int8" else 1e-4, rng.normal(1, 0.3, d), rng.normal(0, 0.3, d),
                              0.03, 1e-6, int(rng.integers(-30, 30)), np.dtype(in_dtype))
    attrs = {"frac_bits": p["frac_bits"], "eps_fixed": p["eps_fixed"], "out_shift": p["out_shift"],
             "out_quant": quant_attr(0.03, p["out_zp"], "int8")}
    y, info_out = run_kernel("layernorm", [x], {"gain": p["gain"], "bias": p["bias"]}, attrs)
    assert info_out.dtype == "int8"
    for b in range(2):
        for r in range(3):
            assert y[b, r].tolist() == layernorm_row([int(v) for v in x[b, r]], p)


@pytest.mark.parametrize("a_dtype, b_dtype, out_dtype", [("int8", "int8", "int8"), ("int16", "int8", "int16"),
                                                         ("int16", "int8", "int8"), ("int8", "int8", "int16")])
def test_add_and_add_pos_match_python_ints(a_dtype, b_dtype, out_dtype) -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(np.iinfo(a_dtype).min, int(np.iinfo(a_dtype).max) + 1, (3, 4, 5)).astype(a_dtype)
    b = rng.integers(np.iinfo(b_dtype).min, int(np.iinfo(b_dtype).max) + 1, (3, 4, 5)).astype(b_dtype)
    zo = 0 if out_dtype == "int16" else -7
    params = make_add_params(0.01 if a_dtype == "int8" else 1e-4, 0.02, 0.03 if out_dtype == "int8" else 2e-4,
                             5 if a_dtype == "int8" else 0, -9, zo, np.dtype(out_dtype))
    attrs = add_attrs(params, 0.03)
    lo, hi = params["qmin"], params["qmax"]

    def want(av, bv):
        return min(max(rshift(int(av) * params["ka"] + int(bv) * params["kb"] + params["bias"], params["shift"]) + zo,
                       lo), hi)

    y, info = run_kernel("add", [a, b], {}, attrs)
    assert info.dtype == out_dtype
    assert all(y[idx] == want(a[idx], b[idx]) for idx in np.ndindex(a.shape))
    pos = b[0]
    y, _ = run_kernel("add_pos", [a], {"pos": pos}, attrs)
    assert all(y[idx] == want(a[idx], pos[idx[1:]]) for idx in np.ndindex(a.shape))


# ---------------------------------------------------------------- copy / LUT / pooling ops

def test_cls_concat_gelu_reshape_and_pool_int() -> None:
    rng = np.random.default_rng(11)
    q = {"scale": 0.1, "zero_point": 4}
    x = rng.integers(-128, 128, (2, 5, 3)).astype(np.int8)
    cls = np.array([1, -2, 3], np.int8)
    y, info = run_kernel("cls_concat", [x], {"cls": cls}, {}, [q])
    assert info.quant == q and np.array_equal(y[:, 0], np.stack([cls, cls])) and np.array_equal(y[:, 1:], x)
    lut = make_gelu_lut(0.1, 4, 0.05, -50)
    y, info = run_kernel("gelu", [x], {"lut": lut}, {"out_quant": quant_attr(0.05, -50, "int8")})
    assert np.array_equal(y, lut[x.astype(int) + 128]) and info.quant == {"scale": 0.05, "zero_point": -50}
    y, info = run_kernel("reshape", [x], {}, {"shape": [15]}, [q])
    assert y.shape == (2, 15) and info.quant == q
    x16 = rng.integers(-32768, 32768, (2, 5, 3)).astype(np.int16)
    y, info = run_kernel("pool", [x16], {}, {"mode": "cls"}, [q])
    assert info.dtype == "int16" and info.quant == q and np.array_equal(y[:, 0], x16[:, 0])
    for xin, zp, out_dtype in ((x, 4, "int8"), (x16, -300, "int16"), (x16, 0, "int8")):
        m, s = quantize_multiplier(0.1 / (5 * 0.07))
        attrs = {"mode": "mean", "in_zero_point": zp, "multiplier": m, "shift": s,
                 "out_quant": quant_attr(0.07, -3, out_dtype)}
        y, info = run_kernel("pool", [xin], {}, attrs, [{"scale": 0.1, "zero_point": zp}])
        lo, hi = np.iinfo(out_dtype).min, np.iinfo(out_dtype).max
        for b in range(2):
            for c in range(3):
                acc = sum(int(v) for v in xin[b, :, c]) - 5 * zp
                assert y[b, 0, c] == requant(acc, m, s, -3, lo, hi)


# ---------------------------------------------------------------- validation of integer kernels

def _lin_consts(m=4, k=8, bits=8):
    w = np.zeros((m, k if bits == 8 else (k + 1) // 2), np.int8)
    return {"weight": w, "bias": np.zeros(m, np.int32), "multiplier": np.full(m, 1 << 30, np.int32),
            "shift": np.zeros(m, np.int32)}


OQ = {"out_quant": quant_attr(0.1, 0, "int8")}
BAD_INT = [  # op, input (shape, dtype, quant), consts, attrs, message
    ("linear", ((4, 8), "int8", None), {**_lin_consts(), "bias": np.zeros(4, np.float32)}, OQ,
     r"constant 'c_bias' \(bias\) has dtype float32"),
    ("linear", ((4, 8), "int8", None), _lin_consts(), {}, "attr 'out_quant' must be"),
    ("linear", ((4, 8), "int8", None), _lin_consts(), {**OQ, "weight_bits": 3}, "attr 'weight_bits' must be 4 or 8"),
    ("linear", ((4, 8), "int8", None), _lin_consts(), {**OQ, "weight_bits": 4}, r"expected \[M, 4\]"),
    ("linear", ((4, 8), "int8", None), {**_lin_consts(), "weight": np.full((4, 4), -128, np.int8)},
     {**OQ, "weight_bits": 4}, r"4-bit weights must lie in \[-7, 7\]"),
    ("linear", ((4, 8), "int8", None), _lin_consts(), {**OQ, "activation": "gelu"},
     r"missing constant role\(s\) \['act_lut'\]"),
    ("linear", ((4, 8), "int8", None), {**_lin_consts(), "multiplier": np.full(4, 5, np.int32)}, OQ,
     "multipliers must be 0 or in"),
    ("linear", ((4, 8), "int8", None), _lin_consts(), {"out_quant": quant_attr(0.1, 0, "int16")},
     "dtype 'int16' not supported here"),
    ("attention", ((5, 6), "int8", {"scale": 0.1, "zero_point": 3}), {"score_lut": make_score_lut()["table"]},
     {"heads": 1, "head_dim": 2, "score_multiplier": 1 << 30, "score_shift": 0, "out_multiplier": 1 << 30,
      "out_shift": 0, **OQ}, "zero point 3 but the integer attention kernel"),
    ("attention", ((5, 6), "int8", None), {"score_lut": np.ones(8, np.int32)},
     {"heads": 1, "head_dim": 2, "score_multiplier": 1 << 30, "score_shift": 0, "out_multiplier": 1 << 30,
      "out_shift": 0, **OQ}, "a score LUT is int32"),
    ("layernorm", ((4, 8), "int8", None), {"gain": np.zeros(8, np.int32), "bias": np.zeros(8, np.int32)},
     {"frac_bits": 30, "eps_fixed": 1, "out_shift": 50, **OQ}, r"constant 'c_bias' \(bias\) has dtype int32"),
    ("layernorm", ((4, 8), "int16", None), {"gain": np.zeros(8, np.int32), "bias": np.zeros(8, np.int64)},
     {"frac_bits": 30, "eps_fixed": 1, "out_shift": 50, **OQ}, "attr 'frac_bits' 30 must be even with"),
    ("add", ((4, 8), "int8", None), {}, {"ka": 1, "kb": 1, "bias": 0, "shift": 8, **OQ},
     r"attr 'shift' must be an integer in \[16, 62\]"),
    ("pool", ((4, 8), "int8", {"scale": 0.1, "zero_point": 2}), {},
     {"mode": "mean", "in_zero_point": 1, "multiplier": 0, "shift": 0, **OQ}, "zero point 2 but attr 'in_zero_point'"),
    ("gelu", ((4, 8), "int8", None), {"lut": np.zeros(255, np.int8)}, OQ, r"\(lut\) has shape \[255\]"),
    ("cls_concat", ((4, 8), "int8", None), {"cls": np.zeros(8, np.int16)}, {}, r"\(cls\) has dtype int16"),
    ("patch_embed", ((1, 4, 4), "int8", None), {"weight": np.full((2, 4), -128, np.int8),
                                                "bias": np.zeros(2, np.int32), "multiplier": np.zeros(2, np.int32),
                                                "shift": np.zeros(2, np.int32)},
     {"patch": 2, "out_quant": quant_attr(0.1, 0, "int16")}, r"int8 weights must lie in \[-127, 127\]"),
]


@pytest.mark.parametrize("op, inp, consts, attrs, message", BAD_INT, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INT)])
def test_int_kernel_validation_rejects(op, inp, consts, attrs, message) -> None:
    shape, dtype, quant = inp
    infos = [TensorInfo("x", shape, dtype, quant)] * (2 if op == "add" else 1)
    k = Kernel(op, "bad", tuple(f"x{i}" for i in range(len(infos))), ("out",),
               consts={r: f"c_{r}" for r in consts}, attrs=attrs)
    with pytest.raises(ProgramError, match=rf"kernel 'bad' \({op}\): .*{message}"):
        get_op(op).validate(k, infos, consts)


def test_every_op_has_an_integer_runner() -> None:
    from edgevit.lower.ops import OPS

    assert all("int8" in op.run for op in OPS.values())
    assert {n for n, op in OPS.items() if "int16" in op.run} >= {"add", "add_pos", "cls_concat", "layernorm", "pool"}
