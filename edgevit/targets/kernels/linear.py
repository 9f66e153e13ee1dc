"""linear: x [N, K] @ weight[M, K]^T (+ bias) [-> GELU] as a TVM-generated C kernel.

int8 (docs/integer-semantics.md "linear"; bit-exact with `ops/linear.run_int8`):

    acc[n, m] = bias[m] + sum_k x[n, k] * w[m, k]                        int32 (in registers)
    y[n, m]   = requantize(acc, multiplier[m], shift[m], zp)             int64 multiply, round half up
    y[n, m]   = act_lut[y[n, m] + 128]                                   with activation "gelu"

Weights are int8 [M, K], or with `weight_bits: 4` int8 [M, ceil(K/2)] holding two 4-bit weights
per byte (even k in the low nibble: `((b & 0xF) ^ 8) - 8`, odd k in the high one: `b >> 4`).
With GELU, zp is the zero point of `act_in_quant` (the pre-GELU quantization). The requantize
expressions (also used by patch_embed) are here: `requantize` writes the spec literally (the
"reference" schedule); `requantize_fast` (the "fast" one) does the same arithmetic from per-column
constants with one 32x32->64 multiply-accumulate and a 32-bit shift whenever that is exact.

float32: y = x @ w^T + bias, then exact erf GELU `0.5 v erfc(-v / sqrt 2)` (libm erfcf) with
activation "gelu"; matches `ops/linear.run_float` within float rounding.

C signature (all pointers; per-layer numbers are arguments, so identical layers share a function):

    int8:    f(int8_t *x, int8_t *weight, int32_t *bias, int32_t *multiplier, int32_t *shift,
               [int8_t *act_lut,] int8_t *y, int32_t zp)
    float32: f(float *x, float *weight, [float *bias,] float *y)

Schedules (`gemm.py`): "reference" plain loops; "fast" 2x2 output tiles with the k loop outside
the unrolled tile, and on DSP cores (8-bit weights, K % 4 == 0) the SXTB16/SMLAD micro-kernel of
micro/gemm_dsp.h for every 2x2x4 step. Row-wise (`rows` = chunk rows), no scratch, not in-place.
"""

from __future__ import annotations

import math

from edgevit.lower.intmath import qrange
from edgevit.targets.kernels import register_kernel
from edgevit.targets.kernels.base import KernelCode, KernelDef, KernelRequest, KernelTraits
from edgevit.targets.kernels.gemm import (Column, GemmSpec, Param, check_request, const_arg, gemm_func_name,
                                          gemm_prim_func, int_arg, row_count, tensor_arg, uses_dsp)

INV_SQRT2 = 1.0 / math.sqrt(2.0)


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
    func = gemm_prim_func(_int8_spec(n, k, m, bits, act, req.schedule == "fast"), req.schedule, dsp)
    args = (tensor_arg(req.in_infos[0].name, "int8"), *(const_arg(r, req.consts[r]) for r in roles),
            tensor_arg(req.out_infos[0].name, "int8"), int_arg(zp))
    name = gemm_func_name(req, rows=n, k=k, m=m, bits=bits, activation=act, dsp=dsp)
    return KernelCode(name, func, args, 0, ("gemm_dsp",) if dsp else ())


def _int8_spec(n: int, k: int, m: int, bits: int, act: str, fast: bool) -> GemmSpec:
    """GemmSpec of the integer linear (parameters in the order of the C signature); the accumulator
    starts at the bias; `fast` requantizes with per-column constants (`requantize_fast`)."""
    from tvm import tirx

    wcols = k if bits == 8 else (k + 1) // 2
    params = (Param("x", "int8", (n, k)), Param("weight", "int8", (m, wcols)), Param("bias", "int32", (m,)),
              Param("multiplier", "int32", (m,)), Param("shift", "int32", (m,)))
    params += (Param("act_lut", "int8", (256,)),) if act == "gelu" else ()
    params += (Param("y", "int8", (n, m)), Param("zp"))
    lo, hi = qrange("int8")

    def epilogue(b, acc, row, col, cv):
        if fast:
            q = requantize_fast(acc, cv, b["zp"], lo, hi)
        else:
            q = requantize(acc, b["multiplier"][col], b["shift"][col], b["zp"], lo, hi)
        return lut_lookup(b["act_lut"], q) if act == "gelu" else tirx.Cast("int8", q)

    return GemmSpec(rows=n, cols=m, reduce=(k,), acc_dtype="int32", out="y", params=params,
                    x=lambda b, row, ks: tirx.Cast("int32", b["x"][row, ks[0]]),
                    w=_weight_int4 if bits == 4 else (lambda b, col, ks: tirx.Cast("int32", b["weight"][col, ks[0]])),
                    epilogue=epilogue, init=lambda b, col: b["bias"][col], init_params=("bias",),
                    columns=requant_columns() if fast else (), dsp_ok=bits == 8)


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


def requant_columns(mult: str = "multiplier", shift: str = "shift", zp: str = "zp") -> tuple[Column, ...]:
    """Per-column values of `requantize_fast` from the Params `mult`, `shift` (int32 [cols]) and the
    zero point scalar `zp`: M, sh = n - 32 (n = 31 - shift) and the int64 rnd = 2^(n-1) (+ zp 2^n
    when 0 <= sh <= 14: the zero point folded into the rounding constant, |acc M + rnd| < 2^63) as
    two int32 words: every local buffer is int32, so TVM's storage merging never type-puns."""
    from tvm import tirx

    def sh(b, m):
        return -1 - b[shift][m]

    def rnd(b, m):
        n = tirx.Cast("int64", 31 - b[shift][m])
        half = tirx.shift_left(tirx.const(1, "int64"), n - 1)
        folded = tirx.Cast("int64", b[zp]) * tirx.shift_left(tirx.const(1, "int64"), n)  # zp << n, zp < 0 is UB
        return tirx.if_then_else(_fast_shift(sh(b, m)), half + folded, half)

    return (Column("mul", "int32", lambda b, m: b[mult][m]), Column("sh", "int32", sh),
            Column("rhi", "int32", lambda b, m: tirx.Cast("int32", tirx.shift_right(rnd(b, m), 32))),
            Column("rlo", "int32", lambda b, m: tirx.Cast("int32", tirx.Cast("uint32", rnd(b, m)))))


def requantize_fast(acc, col: dict, zero_point, lo: int, hi: int):
    """`requantize` from `requant_columns` values, with 32-bit work where exact: for
    32 <= n <= 46, y = clamp(((acc*M + rnd) >> 32) >> (n - 32)) (zp inside rnd); otherwise the
    64-bit shift, saturated to +-2^30 (beyond which every output clamps) and + zp."""
    from tvm import tirx

    def word(v):
        return tirx.Cast("uint64", tirx.Cast("uint32", v))

    rnd = tirx.Cast("int64", tirx.bitwise_or(tirx.shift_left(word(col["rhi"]), tirx.const(32, "uint64")),
                                             word(col["rlo"])))
    p = tirx.Cast("int64", acc) * tirx.Cast("int64", col["mul"]) + rnd
    fast = tirx.shift_right(tirx.Cast("int32", tirx.shift_right(p, tirx.const(32, "int64"))), col["sh"])
    wide = tirx.shift_right(p, tirx.Cast("int64", col["sh"] + 32))
    slow = tirx.Cast("int32", _clamp(wide, -(1 << 30), 1 << 30)) + zero_point
    return _clamp(tirx.if_then_else(_fast_shift(col["sh"]), fast, slow), lo, hi)


def _fast_shift(sh):
    """0 <= sh <= 14 as one unsigned comparison."""
    from tvm import tirx

    return tirx.Cast("uint32", sh) <= tirx.const(14, "uint32")


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
