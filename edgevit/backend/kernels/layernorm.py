"""layernorm: per-row LayerNorm [rows, D] -> [rows, D] as a TVM-generated C kernel.

Integer (int8 or int16 input, int8 output; docs/integer-semantics.md "LayerNorm",
`intmath.layernorm_int`), per row with h = F/2:

    S = sum x;  c_d = D x_d - S;  V = sum c_d^2;  W = (V << F) + E
    s = min((62 - bitlen(W)) >> 1, 30 - h);  q = isqrt64(W << 2s);  R = (2^61 + q/2) / q   (uint64)
    U_d = rshift(c_d R, 31 - h - s);  y_d = clamp(rshift(U_d G_d + B_d, n) + zp_out)

F (frac_bits), E (eps_fixed, int64), n (out_shift) and zp_out are int arguments; G (gain int32 [D])
and B (bias int64 [D]) are constant pointers; isqrt64/bitlen come from micro/isqrt64.h.
Schedules (both bit-exact):
  - "reference": the steps above literally (three passes over the row: S, V, output);
  - "fast": one statistics pass for S and Q = sum x^2 (int32 for int8 input), V = D (D Q - S^2)
    (an exact identity; D Q, S^2 <= 2^50), U kept in int32 (|U| <= 2^30 + 1), rounding constants
    hoisted.
float32 (constants gamma, beta [D]; eps compiled in exactly): mean and variance accumulated in
double, centring and the affine map in float32, as the NumPy reference.

Row-wise. In-place on input 0 is safe: each row is read completely by the statistics passes
before the output pass, which reads x_d and then writes y_d (y's element size is <= x's).

A target replaces the fast schedule's PrimFuncs through `LayernormHooks` (same parameters, same C
call; e.g. the cpu target's vector kernels, edgevit/targets/cpu/kernels/layernorm.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, const_arg, int_arg, kernel_func_name, row_count, tensor_arg
from edgevit.backend.kernels.tir import F32_HELPER, f64_const, tir_clamp, tir_half, tir_rshift

ISQRT_HELPER = "isqrt64"


@dataclass(frozen=True)
class LayernormHooks:
    """A target's PrimFunc builders for the fast schedule, with the generic functions' parameters:
    float_func(rows, d, eps) like `float_func`, int_func(rows, d, in_dt, out_dt) like `int_fast_func`;
    `facts` are added to the C function name, `helpers` replace the micro-kernel headers."""

    float_func: Callable[[int, int, float], Any]
    int_func: Callable[[int, int, str, str], Any]
    facts: dict = field(default_factory=dict)
    helpers: tuple[str, ...] = ()


def _norm_shift(T, w, frac_bits):
    """Step 5's s = min((62 - bitlen(W)) >> 1, 30 - F/2) (int32)."""
    bl = T.call_extern("int32", "ev_bitlen64", T.Cast("uint64", w))
    return T.min(T.shift_right(62 - bl, 1), 30 - T.shift_right(frac_bits, 1))


def _norm_isqrt(T, w, s):
    """Step 5's q = isqrt64(W << 2s) (uint64, < 2^31)."""
    return T.call_extern("uint64", "ev_isqrt64", T.shift_left(T.Cast("uint64", w), T.Cast("uint64", 2 * s)))


def _recip(T, q):
    """R = (2^61 + (q >> 1)) / q, one uint64 division, as int64."""
    return T.Cast("int64", T.truncdiv(T.shift_left(T.uint64(1), T.uint64(61)) + T.shift_right(q, T.uint64(1)), q))


def int_reference_func(rows: int, d: int, in_dt: str, out_dt: str):
    """PrimFunc (x, gain, bias, y, frac_bits, eps_fixed, out_shift, zp): the spec's steps literally."""
    from tvm.script import tirx as T

    @T.prim_func(private=True)
    def func(x: T.handle(in_dt), gain: T.handle("int32"), bias: T.handle("int64"), y: T.handle(out_dt),
             frac_bits: T.int32, eps: T.int64, out_shift: T.int32, zp: T.int32):
        X = T.decl_buffer((rows * d,), in_dt, data=x)
        G = T.decl_buffer((d,), "int32", data=gain)
        B = T.decl_buffer((d,), "int64", data=bias)
        Y = T.decl_buffer((rows * d,), out_dt, data=y)
        s1 = T.alloc_buffer((1,), "int32")
        v = T.alloc_buffer((1,), "int64")
        w = T.alloc_buffer((1,), "int64")
        sh = T.alloc_buffer((1,), "int32")
        q = T.alloc_buffer((1,), "uint64")
        r = T.alloc_buffer((1,), "int64")
        for row in range(rows):
            s1[0] = 0
            for c in range(d):
                s1[0] = s1[0] + T.Cast("int32", X[row * d + c])
            v[0] = T.int64(0)
            for c in range(d):
                v[0] = v[0] + (T.Cast("int64", d * T.Cast("int32", X[row * d + c]) - s1[0])
                               * T.Cast("int64", d * T.Cast("int32", X[row * d + c]) - s1[0]))
            w[0] = T.shift_left(v[0], T.Cast("int64", frac_bits)) + eps
            sh[0] = _norm_shift(T, w[0], frac_bits)
            q[0] = _norm_isqrt(T, w[0], sh[0])
            r[0] = _recip(T, q[0])
            for c in range(d):
                Y[row * d + c] = tir_clamp(tir_rshift(
                    tir_rshift(T.Cast("int64", d * T.Cast("int32", X[row * d + c]) - s1[0]) * r[0],
                               T.Cast("int64", 31 - T.shift_right(frac_bits, 1) - sh[0])) * T.Cast("int64", G[c])
                    + B[c], T.Cast("int64", out_shift)) + T.Cast("int64", zp), out_dt)

    return func


def int_fast_func(rows: int, d: int, in_dt: str, out_dt: str):
    """PrimFunc with int_reference_func's parameters: one statistics pass, 32-bit U, hoisted rounding."""
    from tvm.script import tirx as T

    qt = "int32" if in_dt == "int8" else "int64"  # sum of squares: <= 1024 * 2^14 for int8

    @T.prim_func(private=True)
    def func(x: T.handle(in_dt), gain: T.handle("int32"), bias: T.handle("int64"), y: T.handle(out_dt),
             frac_bits: T.int32, eps: T.int64, out_shift: T.int32, zp: T.int32):
        X = T.decl_buffer((rows * d,), in_dt, data=x)
        G = T.decl_buffer((d,), "int32", data=gain)
        B = T.decl_buffer((d,), "int64", data=bias)
        Y = T.decl_buffer((rows * d,), out_dt, data=y)
        s1 = T.alloc_buffer((1,), "int32")
        sq = T.alloc_buffer((1,), qt)
        w = T.alloc_buffer((1,), "int64")
        sh = T.alloc_buffer((1,), "int32")
        q = T.alloc_buffer((1,), "uint64")
        r = T.alloc_buffer((1,), "int64")
        n7 = T.alloc_buffer((1,), "int64")
        half8 = T.alloc_buffer((1,), "int64")
        half8[0] = tir_half(out_shift)
        for row in range(rows):
            s1[0] = 0
            sq[0] = T.Cast(qt, 0)
            for c in range(d):
                s1[0] = s1[0] + T.Cast("int32", X[row * d + c])
                sq[0] = sq[0] + T.Cast(qt, X[row * d + c]) * T.Cast(qt, X[row * d + c])
            w[0] = T.shift_left(T.int64(d) * (T.int64(d) * T.Cast("int64", sq[0])
                                              - T.Cast("int64", s1[0]) * T.Cast("int64", s1[0])),
                                T.Cast("int64", frac_bits)) + eps
            sh[0] = _norm_shift(T, w[0], frac_bits)
            q[0] = _norm_isqrt(T, w[0], sh[0])
            r[0] = _recip(T, q[0])
            n7[0] = T.Cast("int64", 31 - T.shift_right(frac_bits, 1) - sh[0])
            for c in range(d):
                Y[row * d + c] = tir_clamp(T.shift_right(
                    T.Cast("int64", T.Cast("int32", tir_rshift(
                        T.Cast("int64", d * T.Cast("int32", X[row * d + c]) - s1[0]) * r[0], n7[0])))
                    * T.Cast("int64", G[c]) + B[c] + half8[0], T.Cast("int64", out_shift)) + T.Cast("int64", zp),
                    out_dt)

    return func


def float_func(rows: int, d: int, eps: float):
    """PrimFunc (x, gamma, beta, y) float32 LayerNorm per row (double statistics)."""
    from tvm.script import tirx as T

    @T.prim_func(private=True)
    def func(x: T.handle("float32"), gamma: T.handle("float32"), beta: T.handle("float32"), y: T.handle("float32")):
        X = T.decl_buffer((rows * d,), "float32", data=x)
        G = T.decl_buffer((d,), "float32", data=gamma)
        B = T.decl_buffer((d,), "float32", data=beta)
        Y = T.decl_buffer((rows * d,), "float32", data=y)
        acc = T.alloc_buffer((1,), "float64")
        mean = T.alloc_buffer((1,), "float32")
        inv = T.alloc_buffer((1,), "float32")
        for row in range(rows):
            acc[0] = T.float64(0.0)
            for c in range(d):
                acc[0] = acc[0] + T.Cast("float64", X[row * d + c])
            mean[0] = T.Cast("float32", acc[0] / f64_const(float(d)))
            acc[0] = T.float64(0.0)
            for c in range(d):
                acc[0] = acc[0] + (T.Cast("float64", X[row * d + c] - mean[0])
                                   * T.Cast("float64", X[row * d + c] - mean[0]))
            inv[0] = T.Cast("float32", T.float64(1.0) / T.sqrt(acc[0] / f64_const(float(d)) + f64_const(eps)))
            for c in range(d):
                Y[row * d + c] = (X[row * d + c] - mean[0]) * inv[0] * G[c] + B[c]

    return func


def generate(req: KernelRequest, hooks: LayernormHooks | None = None) -> KernelCode:
    """C for one `layernorm` kernel: x [rows, D] -> y [rows, D] (rows = req.rows or N); `hooks`: a
    target's PrimFuncs for the fast schedule (None: the generic ones)."""
    check_request(req, row_wise=True)
    (x,) = req.in_infos
    (y,) = req.out_infos
    rows, d = row_count(req), x.shape[1]
    hooks = hooks if req.schedule == "fast" else None
    facts = hooks.facts if hooks else {}
    x_arg, y_arg = tensor_arg(x.name, x.dtype), tensor_arg(y.name, y.dtype)
    if x.dtype == "float32":
        eps = float(req.kernel.attrs["eps"])
        args = (x_arg, const_arg("gamma", req.consts["gamma"]), const_arg("beta", req.consts["beta"]), y_arg)
        prim = hooks.float_func(rows, d, eps) if hooks else float_func(rows, d, eps)
        return KernelCode(kernel_func_name(req, eps=eps.hex(), **facts), prim, args,
                          helpers=hooks.helpers if hooks else (F32_HELPER,))
    a = req.kernel.attrs
    if hooks:
        prim = hooks.int_func(rows, d, x.dtype, y.dtype)
    else:
        prim = (int_fast_func if req.schedule == "fast" else int_reference_func)(rows, d, x.dtype, y.dtype)
    args = ((x_arg, const_arg("gain", req.consts["gain"]), const_arg("bias", req.consts["bias"]), y_arg)
            + (int_arg(a["frac_bits"]), int_arg(a["eps_fixed"], "int64_t"), int_arg(a["out_shift"]),
               int_arg(a["out_quant"]["zero_point"])))
    return KernelCode(kernel_func_name(req, **facts), prim, args, helpers=hooks.helpers if hooks else (ISQRT_HELPER,))


KERNEL = KernelDef(op="layernorm", generate=generate, dtypes=("float32", "int8", "int16"))
