"""linear: x [N, K] @ weight[M, K]^T (+ bias) [-> GELU] as a TVM-generated C kernel.

int8 (docs/integer-semantics.md "linear"; bit-exact with `ops/linear.run_int8`):

    acc[n, m] = bias[m] + sum_k x[n, k] * w[m, k]                        int32 (in registers)
    y[n, m]   = requantize(acc, multiplier[m], shift[m], zp)             int64 multiply, round half up
    y[n, m]   = act_lut[y[n, m] + 128]                                   with activation "gelu"

Weights are int8 [M, K], or with `weight_bits: 4` int8 [M, ceil(K/2)] holding two 4-bit weights
per byte (even k in the low nibble: `((b & 0xF) ^ 8) - 8`, odd k in the high one: `b >> 4`).
With GELU, zp is the zero point of `act_in_quant` (the pre-GELU quantization). The requantize
expressions (also used by patch_embed) are here: `requantize` writes the spec literally (the
"reference" schedule); `requantize_fast` (the "fast" one) computes the same values in exact int32
steps (SMMLA, shift, SSAT) from per-column values, in one of two modes chosen at code generation
from the constants (`requant_mode`, part of the function name): "hi" (right shifts >= 33, the
usual case: 3 instructions per output) or "wide" (any shift: the accumulator is first clamped
where the output saturates anyway and pre-shifted; 3-4 more).

float32: y = x @ w^T + bias, then exact erf GELU `0.5 v erfc(-v / sqrt 2)` (libm erfcf) with
activation "gelu"; matches `ops/linear.run_float` within float rounding.

C signature (all pointers; per-layer numbers are arguments, so identical layers share a function):

    int8:    f(int8_t *x, int8_t *weight, int32_t *bias, int32_t *multiplier, int32_t *shift,
               [int8_t *act_lut,] int8_t *y, int32_t zp)
    float32: f(float *x, float *weight, [float *bias,] float *y)

Schedules (`gemm.py`): "reference" plain loops; "fast" 2x2 output tiles with the k loop outside
the unrolled tile, and on DSP cores (8-bit weights, K % 4 == 0) each tile's whole reduction by the
SXTB16/SMLAD micro-kernel of micro/gemm_dsp.h. Row-wise (`rows` = chunk rows), no scratch, not
in-place. The fast int8 code calls micro/gemm_dsp.h (`helpers`) for the requantize helpers too.
"""

from __future__ import annotations

import math

import numpy as np

from edgevit.lower.intmath import INT32_MAX, qrange
from edgevit.backend.kernels import register_kernel
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest, KernelTraits
from edgevit.backend.kernels.gemm import (Column, GemmSpec, Param, check_request, const_arg, gemm_func_name,
                                          gemm_intrin, gemm_prim_func, int_arg, row_count, tensor_arg, uses_dsp)

INV_SQRT2 = 1.0 / math.sqrt(2.0)
HI_MIN_SHIFT = 33  # smallest right shift 31 - shift the "hi" requantize takes as it is (sh = n - 32 >= 1)


def generate(req: KernelRequest) -> KernelCode:
    """C code for one linear kernel: int8 (8- or 4-bit weights) or float32, optional fused GELU."""
    check_request(req)
    if req.dtype == "float32":
        return _generate_float(req)
    return _generate_int8(req)


def _shape(req: KernelRequest) -> tuple[int, int, int]:
    """(rows N the code processes, K, M)."""
    return row_count(req), req.in_infos[0].shape[1], req.out_infos[0].shape[1]


def _activation(req: KernelRequest) -> str:
    """The fused activation: "none" or "gelu"."""
    return req.kernel.attrs.get("activation", "none")


# ---------------------------------------------------------------- int8

def _generate_int8(req: KernelRequest) -> KernelCode:
    n, k, m = _shape(req)
    attrs = req.kernel.attrs
    bits, act = attrs.get("weight_bits", 8), _activation(req)
    dsp = uses_dsp(req, k, bits == 8)
    zp = attrs["act_in_quant" if act == "gelu" else "out_quant"]["zero_point"]
    roles = ["weight", "bias", "multiplier", "shift"] + (["act_lut"] if act == "gelu" else [])
    mode = fast_requant_mode(req, zp)
    func = gemm_prim_func(_int8_spec(n, k, m, bits, act, mode), req.schedule, dsp)
    args = (tensor_arg(req.in_infos[0].name, "int8"), *(const_arg(r, req.consts[r]) for r in roles),
            tensor_arg(req.out_infos[0].name, "int8"), int_arg(zp))
    name = gemm_func_name(req, rows=n, k=k, m=m, bits=bits, activation=act, dsp=dsp, requant=mode)
    return KernelCode(name, func, args, 0, ("gemm_dsp",) if mode else ())


def fast_requant_mode(req: KernelRequest, zero_point: int) -> str | None:
    """The fast schedule's requantize mode for the request's multiplier/shift constants and output
    zero point (`requant_mode`); None for the "reference" schedule (the literal 64-bit requantize)."""
    if req.schedule != "fast":
        return None
    return requant_mode(req.consts["multiplier"], req.consts["shift"], zero_point)


def _int8_spec(n: int, k: int, m: int, bits: int, act: str, mode: str | None) -> GemmSpec:
    """GemmSpec of the integer linear (parameters in the order of the C signature); the accumulator
    starts at the bias; a `mode` ("hi" | "wide") requantizes with per-column values
    (`requantize_fast`), None literally (`requantize`)."""
    from tvm import tirx

    wcols = k if bits == 8 else (k + 1) // 2
    params = (Param("x", "int8", (n, k)), Param("weight", "int8", (m, wcols)), Param("bias", "int32", (m,)),
              Param("multiplier", "int32", (m,)), Param("shift", "int32", (m,)))
    params += (Param("act_lut", "int8", (256,)),) if act == "gelu" else ()
    params += (Param("y", "int8", (n, m)), Param("zp"))
    lo, hi = qrange("int8")

    def epilogue(b, acc, row, col, cv):
        if mode:
            q = requantize_fast(acc, cv, b["zp"], "int8", mode)
        else:
            q = requantize(acc, b["multiplier"][col], b["shift"][col], b["zp"], lo, hi)
        return lut_lookup(b["act_lut"], q) if act == "gelu" else tirx.Cast("int8", q)

    return GemmSpec(rows=n, cols=m, reduce=(k,), acc_dtype="int32", out="y", params=params,
                    x=lambda b, row, ks: tirx.Cast("int32", b["x"][row, ks[0]]),
                    w=_weight_int4 if bits == 4 else (lambda b, col, ks: tirx.Cast("int32", b["weight"][col, ks[0]])),
                    epilogue=epilogue, init=lambda b, col: b["bias"][col], init_params=("bias",),
                    columns=requant_columns(mode) if mode else (),
                    dsp_intrin=(lambda tn, tm: gemm_intrin(tn, tm, k)) if bits == 8 else None)


def _weight_int4(b, col, ks):
    """TIR int32 weight w[col, k] from the packed 4-bit constant (k even: low nibble, odd: high)."""
    from tvm import tirx

    k = ks[0]
    byte = tirx.Cast("int32", b["weight"][col, tirx.floordiv(k, 2)])
    low = tirx.bitwise_xor(tirx.bitwise_and(byte, 15), 8) - 8
    high = tirx.shift_right(byte, 4)
    return tirx.if_then_else(tirx.floormod(k, 2) == 0, low, high)


# ---------------------------------------------------------------- requantize (shared with patch_embed)

def requantize(acc, multiplier, shift, zero_point, lo: int, hi: int):
    """TIR int32 clamp(rounding_rshift((int64)acc * M, 31 - shift) + zp, lo, hi), literally as the spec
    writes it (int32 acc, multiplier, shift, zero_point; the "reference" schedule's epilogue)."""
    from tvm import tirx

    prod = tirx.Cast("int64", acc) * tirx.Cast("int64", multiplier)
    n = tirx.Cast("int64", 31 - shift)
    y = tirx.shift_right(prod + tirx.shift_left(tirx.const(1, "int64"), n - 1), n) + tirx.Cast("int64", zero_point)
    return tirx.Cast("int32", _clamp(y, lo, hi))


def requant_mode(multiplier, shift, zero_point: int) -> str:
    """Which fast requantize the constants allow (decided at code generation, part of the function
    name): "hi" when every column has a right shift n = 31 - shift >= 33 (or multiplier 0) and the
    zero point folds into its rounding word (`hi_rounding`), else "wide" (any constants)."""
    for m, s in zip(np.asarray(multiplier).tolist(), np.asarray(shift).tolist()):
        n = 31 - int(s)
        if m != 0 and n < HI_MIN_SHIFT:
            return "wide"
        if not -(1 << 30) <= hi_rounding(max(n, HI_MIN_SHIFT) - 32, zero_point) <= 1 << 30:
            return "wide"
    return "hi"


def hi_rounding(sh: int, zero_point: int) -> int:
    """The "hi" mode's rounding word 2^(sh-1) + zp 2^sh (sh = n - 32 >= 1): the zero point folded in."""
    return (1 << (sh - 1)) + zero_point * (1 << sh)


def requant_columns(mode: str, mult: str = "multiplier", shift: str = "shift", zp: str = "zp") -> tuple[Column, ...]:
    """Per-column int32 values of `requantize_fast` in `mode` (see `requant_mode`) from the Params
    `mult`, `shift` (int32 [cols]) and the zero point scalar `zp`, with n = 31 - shift:

    - "hi":   mul = M, sh = max(n, 33) - 32, rhi = hi_rounding(sh, zp);
    - "wide": n' = max(n, 3) (n <= 2 and 3 saturate alike), ls = max(33 - n', 0) (pre-shift of acc),
              pw = 2^ls, lim = 2^(n'-2) - 1 if ls else 2^31 - 1 (beyond it every output saturates),
              sh = n' + ls - 32 >= 1, rhi = 2^(sh-1) (the zero point is added per output)."""
    from tvm import tirx

    def n_of(b, m):
        return 31 - b[shift][m]

    def one_shl(v):
        return tirx.shift_left(tirx.const(1, "int32"), v)

    mul = Column("mul", "int32", lambda b, m: b[mult][m])
    if mode == "hi":
        def sh(b, m):
            return tirx.max(n_of(b, m), HI_MIN_SHIFT) - 32

        return (mul, Column("sh", "int32", sh),
                Column("rhi", "int32", lambda b, m: one_shl(sh(b, m) - 1) + b[zp] * one_shl(sh(b, m))))

    def n3(b, m):
        return tirx.max(n_of(b, m), 3)

    def ls(b, m):
        return tirx.max(HI_MIN_SHIFT - n3(b, m), 0)

    def sh(b, m):
        return tirx.max(n3(b, m), HI_MIN_SHIFT) - 32

    def lim(b, m):
        return tirx.if_then_else(ls(b, m) > 0, one_shl(n3(b, m) - 2) - 1, tirx.const(INT32_MAX, "int32"))

    return (mul, Column("pw", "int32", lambda b, m: one_shl(ls(b, m))), Column("lim", "int32", lim),
            Column("sh", "int32", sh), Column("rhi", "int32", lambda b, m: one_shl(sh(b, m) - 1)))


def requantize_fast(acc, col: dict, zero_point, out_dtype: str, mode: str):
    """`requantize` to the full range of out_dtype (int8 / int16) from `requant_columns(mode)` values,
    in exact int32 steps (micro/gemm_dsp.h helpers: SMMLA, SSAT):

    - "hi":   ssat(smmla(acc, M, rhi) >> sh)                        (zero point inside rhi)
    - "wide": ssat((smmla(clamp(acc, ~lim, lim) * pw, M, rhi) >> sh) + zp)

    Both are floor((acc M + 2^(n-1)) / 2^n) (+ zp): smmla(a, M, c) = c + floor(a M / 2^32), and
    floor(floor(x) / 2^sh) = floor(x / 2^sh). No int32 overflow: |a| <= 2^31, M < 2^31 give
    |floor(a M / 2^32)| <= 2^30, and |rhi| <= 2^30 (`requant_mode`; wide: rhi <= 2^29)."""
    from tvm import tirx

    def smmla(a, m, c):
        return tirx.call_pure_extern("int32", "ev_smmla", a, m, c)

    if mode == "hi":
        return saturate(tirx.shift_right(smmla(acc, col["mul"], col["rhi"]), col["sh"]), out_dtype)
    a = tirx.min(tirx.max(acc, tirx.bitwise_not(col["lim"])), col["lim"]) * col["pw"]
    return saturate(tirx.shift_right(smmla(a, col["mul"], col["rhi"]), col["sh"]) + zero_point, out_dtype)


def saturate(x, out_dtype: str):
    """TIR int32 x clamped to the int8 / int16 range by the SSAT helper (ev_ssat8 / ev_ssat16)."""
    from tvm import tirx

    return tirx.call_pure_extern("int32", {"int8": "ev_ssat8", "int16": "ev_ssat16"}[out_dtype], x)


def _clamp(x, lo: int, hi: int):
    """min(max(x, lo), hi) in x's dtype."""
    from tvm import tirx

    return tirx.max(tirx.min(x, tirx.const(hi, str(x.ty))), tirx.const(lo, str(x.ty)))


def lut_lookup(lut_buf, value):
    """TIR `lut[value + 128]` for an int32 value in [-128, 127] (a 256-entry int8 table)."""
    from tvm import tirx

    return lut_buf[value + tirx.const(128, "int32")]


# ---------------------------------------------------------------- float32

def _generate_float(req: KernelRequest) -> KernelCode:
    n, k, m = _shape(req)
    act, has_bias = _activation(req), "bias" in req.consts
    x, y = req.in_infos[0].name, req.out_infos[0].name
    func = gemm_prim_func(_float_spec(n, k, m, has_bias, act), req.schedule)
    roles = ["weight"] + (["bias"] if has_bias else [])
    args = (tensor_arg(x, "float32"), *(const_arg(r, req.consts[r]) for r in roles), tensor_arg(y, "float32"))
    name = gemm_func_name(req, rows=n, k=k, m=m, bias=has_bias, activation=act)
    return KernelCode(name, func, args)


def _float_spec(n: int, k: int, m: int, has_bias: bool, act: str) -> GemmSpec:
    """GemmSpec of the float linear: y = acc (+ bias) [-> GELU]."""
    from tvm import tirx

    params = (Param("x", "float32", (n, k)), Param("weight", "float32", (m, k)))
    params += (Param("bias", "float32", (m,)),) if has_bias else ()
    params += (Param("y", "float32", (n, m)),)

    def epilogue(b, acc, row, col, cv):
        v = acc + b["bias"][col] if has_bias else acc
        return gelu_float(v) if act == "gelu" else v

    return GemmSpec(rows=n, cols=m, reduce=(k,), acc_dtype="float32", out="y", params=params,
                    x=lambda b, row, ks: b["x"][row, ks[0]], w=lambda b, col, ks: b["weight"][col, ks[0]],
                    epilogue=epilogue)


def gelu_float(v):
    """TIR float32 exact GELU 0.5 * v * erfc(-v / sqrt(2)) (C: erfcf from libm)."""
    from tvm import tirx

    f32 = "float32"
    erfc = tirx.call_pure_extern(f32, "erfcf", v * tirx.const(-INV_SQRT2, f32))
    return tirx.const(0.5, f32) * v * erfc


KERNEL = register_kernel(KernelDef(op="linear", traits=KernelTraits(row_wise=True), generate=generate,
                                   dtypes=("float32", "int8")))
