"""Shared pieces of the integer (int8 / int16) kernels: quantization attrs, constant checks, exact GEMMs.

Conventions every integer kernel follows (spec: docs/integer-semantics.md, section "Program kernels"):

- A kernel that creates a new quantization carries the attr
  `out_quant = {"scale": float, "zero_point": int, "dtype": "int8" | "int16"}`. The zero point
  and dtype (clamp range) are used at run time; the scale is documentation only (it is folded into
  the integer multipliers) and becomes the output TensorInfo's `quant = {"scale", "zero_point"}`.
- Run-time constants are int8/int16/int32/int64 Program constants or integer attrs; never floats.
- Integer GEMMs may run on float BLAS because every partial sum is an integer below 2^24
  (float32) or 2^53 (float64) in magnitude, which both represent exactly (`exact_matmul`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgevit.lower.intmath import SHIFT_MAX, SHIFT_MIN, qrange
from edgevit.lower.ops import expect_const, fail
from edgevit.lower.program import Kernel, TensorInfo

INT_DTYPES = ("int8", "int16")
FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def quant_attr(scale: float, zero_point: int, dtype: str) -> dict[str, Any]:
    """The `out_quant` attr value for a quantization (JSON-able)."""
    return {"scale": float(scale), "zero_point": int(zero_point), "dtype": str(dtype)}


def out_quant(kernel: Kernel, allowed: Sequence[str] = INT_DTYPES, key: str = "out_quant") -> tuple[str, dict]:
    """Validate attr `key` ({"scale" > 0, "zero_point" in the dtype's range, "dtype" in `allowed`}).

    Returns (dtype, TensorInfo quant dict {"scale", "zero_point"}).
    """
    q = kernel.attrs.get(key)
    if not isinstance(q, dict) or set(q) != {"scale", "zero_point", "dtype"}:
        fail(kernel, f"attr {key!r} must be {{'scale', 'zero_point', 'dtype'}} (got {q!r})")
    dtype, scale, zp = q["dtype"], q["scale"], q["zero_point"]
    if dtype not in allowed:
        fail(kernel, f"attr {key!r}: dtype {dtype!r} not supported here; expected one of {list(allowed)}")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not np.isfinite(scale) or scale <= 0:
        fail(kernel, f"attr {key!r}: scale must be a finite positive number (got {scale!r})")
    lo, hi = qrange(dtype)
    if not isinstance(zp, int) or isinstance(zp, bool) or not lo <= zp <= hi:
        fail(kernel, f"attr {key!r}: zero_point must be an integer in [{lo}, {hi}] (got {zp!r})")
    return dtype, {"scale": float(scale), "zero_point": int(zp)}


def input_zero_point(info: TensorInfo) -> int | None:
    """The zero point recorded in an int input's TensorInfo.quant (None if undocumented)."""
    return None if info.quant is None else int(info.quant.get("zero_point", 0))


def expect_zero_point(kernel: Kernel, info: TensorInfo, zp: int, what: str) -> None:
    """Fail if `info` documents a zero point different from `zp` (the value the kernel's constants assume)."""
    got = input_zero_point(info)
    if got is not None and got != zp:
        fail(kernel, f"input {info.name!r} has zero point {got} but {what} assumes {zp}")


def expect_roles(kernel: Kernel, consts: dict[str, np.ndarray], required: Sequence[str],
                 optional: Sequence[str] = (), kind: str = "integer") -> None:
    """Fail unless the constant roles are exactly `required` plus a subset of `optional`.

    Ops whose constant roles depend on the kernel dtype declare them all optional in their
    OpDef and call this from `infer` once the dtype is known (`kind` names it in messages).
    """
    missing = [r for r in required if r not in consts]
    if missing:
        fail(kernel, f"missing constant role(s) {missing}; a {kind} kernel expects {list(required)}")
    extra = sorted(set(consts) - set(required) - set(optional))
    if extra:
        fail(kernel, f"unknown constant role(s) {extra}; a {kind} kernel knows {list(required) + list(optional)}")


def int_attr(kernel: Kernel, key: str, lo: int, hi: int) -> int:
    """Required integer attr in [lo, hi]."""
    v = kernel.attrs.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        fail(kernel, f"attr {key!r} must be an integer in [{lo}, {hi}] (got {v!r})")
    return v


def multiplier_attrs(kernel: Kernel, prefix: str) -> tuple[int, int]:
    """Scalar (multiplier, shift) attrs `<prefix>multiplier`, `<prefix>shift` as quantize_multiplier makes them."""
    m = int_attr(kernel, f"{prefix}multiplier", 0, (1 << 31) - 1)
    s = int_attr(kernel, f"{prefix}shift", SHIFT_MIN, SHIFT_MAX)
    if m and m < 1 << 30:
        fail(kernel, f"attr '{prefix}multiplier' must be 0 or in [2^30, 2^31) (got {m})")
    return m, s


def channel_requant_consts(kernel: Kernel, consts: dict[str, np.ndarray], channels: int) -> None:
    """Check per-channel int32 `bias`, `multiplier`, `shift` [channels] (quantize_multipliers output)."""
    for role in ("bias", "multiplier", "shift"):
        expect_const(kernel, consts, role, (channels,), ("int32",))
    m, s = consts["multiplier"], consts["shift"]
    if np.any((m != 0) & (m < 1 << 30)) or np.any(m < 0):
        fail(kernel, f"constant {kernel.consts['multiplier']!r}: multipliers must be 0 or in [2^30, 2^31)")
    if s.size and (s.min() < SHIFT_MIN or s.max() > SHIFT_MAX):
        fail(kernel, f"constant {kernel.consts['shift']!r}: shifts must be in [{SHIFT_MIN}, {SHIFT_MAX}]")


def exact_matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """Integer a @ b (numpy matmul broadcasting) computed exactly on float BLAS.

    `bound` must bound |every partial sum| (e.g. K * max|a| * max|b|): float32 is used when
    bound <= 2^24, float64 when bound <= 2^53 (all partial sums are then exact integers).
    Returns int32 when bound < 2^31, else int64.
    """
    if bound > FLOAT64_EXACT:
        raise OverflowError(f"exact_matmul: partial sums up to {bound} exceed 2^53")
    ft = np.float32 if bound <= FLOAT32_EXACT else np.float64
    return np.matmul(a.astype(ft), b.astype(ft)).astype(np.int32 if bound < 1 << 31 else np.int64)


def gemm_bias(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """int32 accumulators x [R, K] (int8) @ w[M, K]^T (int8) + bias [M] (int32) -> [R, M].

    int32 when |x w| + max|bias| < 2^31 (always for K <= 65536 and |bias| <= 2^30), else int64
    (requantize then rejects out-of-range accumulators).
    """
    bound = w.shape[1] * 128 * 128
    acc = exact_matmul(x, w.T, bound)
    if acc.dtype == np.int32 and bound + int(np.abs(bias.astype(np.int64)).max(initial=0)) < 1 << 31:
        acc += bias
        return acc
    return acc.astype(np.int64) + bias


# ---------------------------------------------------------------- 4-bit weights

def pack_int4(w: np.ndarray) -> np.ndarray:
    """int values in [-8, 7], [M, K] -> int8 [M, ceil(K/2)], two weights per byte along K.

    Byte j of row m holds w[m, 2j] in the low nibble and w[m, 2j+1] in the high nibble, each
    4-bit two's complement; an odd K pads the last high nibble with 0. As a signed byte:
    byte = (w[2j+1] << 4) | (w[2j] & 0xF).
    """
    w = np.asarray(w, dtype=np.int64)
    if w.ndim != 2 or (w.size and (w.min() < -8 or w.max() > 7)):
        raise ValueError("pack_int4: need a 2-D array of values in [-8, 7]")
    if w.shape[1] % 2:
        w = np.concatenate([w, np.zeros((w.shape[0], 1), np.int64)], axis=1)
    lo, hi = w[:, 0::2], w[:, 1::2]
    return ((hi << 4) | (lo & 0xF)).astype(np.int8)


def unpack_int4(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of pack_int4: int8 [M, ceil(k/2)] -> int8 [M, k].

    C (byte is int8_t): lo = ((byte & 0xF) ^ 8) - 8;  hi = byte >> 4  (arithmetic shift).
    """
    b = np.asarray(packed).astype(np.int8)
    lo = ((b & 0xF) ^ 8) - 8
    hi = b >> 4
    out = np.empty((b.shape[0], 2 * b.shape[1]), dtype=np.int8)
    out[:, 0::2], out[:, 1::2] = lo, hi
    return out[:, :k]


# ---------------------------------------------------------------- rescaling add (add, add_pos)

ADD_ATTRS = ("ka", "kb", "bias", "shift", "out_quant")


def add_params(kernel: Kernel) -> tuple[dict[str, Any], str, dict]:
    """Validate the rescaling-add attrs (make_add_params output) -> (add_int params, out dtype, out quant).

    Attrs: ka, kb in [0, 2^30]; bias = -(za*ka + zb*kb), |bias| <= 2^46; shift in [16, 62]; out_quant.
    """
    ka = int_attr(kernel, "ka", 0, 1 << 30)
    kb = int_attr(kernel, "kb", 0, 1 << 30)
    bias = int_attr(kernel, "bias", -(1 << 46), 1 << 46)
    shift = int_attr(kernel, "shift", 16, 62)
    dtype, quant = out_quant(kernel)
    lo, hi = qrange(dtype)
    params = {"ka": ka, "kb": kb, "bias": bias, "shift": shift, "out_zp": quant["zero_point"],
              "qmin": lo, "qmax": hi, "out_dtype": dtype}
    return params, dtype, quant


def add_attrs(params: dict[str, Any], scale: float) -> dict[str, Any]:
    """Kernel attrs from make_add_params' dict and the output scale (documentation)."""
    return {"ka": int(params["ka"]), "kb": int(params["kb"]), "bias": int(params["bias"]),
            "shift": int(params["shift"]), "out_quant": quant_attr(scale, params["out_zp"], params["out_dtype"])}
