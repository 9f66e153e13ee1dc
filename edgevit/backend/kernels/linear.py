"""linear: x [N, K] @ weight[M, K]^T (+ bias) [-> GELU] as a TVM-generated C kernel.

int8 (docs/integer-semantics.md "linear"; bit-exact with `ops/linear.run_int8`):

    acc[n, m] = bias[m] + sum_k x[n, k] * w[m, k]                        int32 (in registers)
    y[n, m]   = requantize(acc, multiplier[m], shift[m], zp)             int64 multiply, round half up
    y[n, m]   = act_lut[y[n, m] + 128]                                   with activation "gelu"

Weights are int8 [M, K], or with `weight_bits: 4` int8 [M, ceil(K/2)] holding two 4-bit weights
per byte (even k in the low nibble: `((b & 0xF) ^ 8) - 8`, odd k in the high one: `b >> 4`).
With GELU, zp is the zero point of `act_in_quant` (the pre-GELU quantization). The requantize is
requant.py's: literal in the "reference" schedule, in exact int32 steps in the "fast" one.

float32: y = x @ w^T + bias, then exact erf GELU `0.5 v erfc(-v / sqrt 2)` (libm erfcf) with
activation "gelu"; matches `ops/linear.run_float` within float rounding.

C signature (all pointers; per-layer numbers are arguments, so identical layers share a function):

    int8:    f(int8_t *x, int8_t *weight, int32_t *bias, int32_t *multiplier, int32_t *shift,
               [int8_t *act_lut,] int8_t *y, int32_t zp)
    float32: f(float *x, float *weight, [float *bias,] float *y)

Schedules (`gemm.py`): "reference" plain loops; "fast" 2x2 output tiles with the k loop outside
the unrolled tile. A target's override passes `GemmHooks` to `generate` (a micro-kernel for whole
int8 tiles, the requantize's int32 steps). Row-wise (`rows` = chunk rows), no scratch, not in-place.
"""

from __future__ import annotations

import math

from edgevit.lower.intmath import qrange
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, const_arg, int_arg, row_count, tensor_arg
from edgevit.backend.kernels.gemm import GENERIC_HOOKS, GemmHooks, GemmSpec, Param, gemm_func_name, gemm_prim_func
from edgevit.backend.kernels.requant import fast_requant_mode, requant_columns, requantize, requantize_fast

INV_SQRT2 = 1.0 / math.sqrt(2.0)


def generate(req: KernelRequest, hooks: GemmHooks = GENERIC_HOOKS) -> KernelCode:
    """C code for one linear kernel: int8 (8- or 4-bit weights) or float32, optional fused GELU;
    `hooks`: a target's changes to the int8 code (gemm.py)."""
    check_request(req)
    if req.dtype == "float32":
        return _generate_float(req, hooks)
    return _generate_int8(req, hooks)


def _shape(req: KernelRequest) -> tuple[int, int, int]:
    """(rows N the code processes, K, M)."""
    return row_count(req), req.in_infos[0].shape[1], req.out_infos[0].shape[1]


def _activation(req: KernelRequest) -> str:
    """The fused activation: "none" or "gelu"."""
    return req.kernel.attrs.get("activation", "none")


# ---------------------------------------------------------------- int8

def _generate_int8(req: KernelRequest, hooks: GemmHooks) -> KernelCode:
    n, k, m = _shape(req)
    attrs = req.kernel.attrs
    bits, act = attrs.get("weight_bits", 8), _activation(req)
    zp = attrs["act_in_quant" if act == "gelu" else "out_quant"]["zero_point"]
    roles = ["weight", "bias", "multiplier", "shift"] + (["act_lut"] if act == "gelu" else [])
    mode = fast_requant_mode(req, zp)
    func = gemm_prim_func(_int8_spec(n, k, m, bits, act, mode, hooks), req.schedule)
    args = (tensor_arg(req.in_infos[0].name, "int8"), *(const_arg(r, req.consts[r]) for r in roles),
            tensor_arg(req.out_infos[0].name, "int8"), int_arg(zp))
    name = gemm_func_name(req, rows=n, k=k, m=m, bits=bits, activation=act, requant=mode, **hooks.name_facts)
    return KernelCode(name, func, args, 0, hooks.steps.helpers if mode else ())


def _int8_spec(n: int, k: int, m: int, bits: int, act: str, mode: str | None, hooks: GemmHooks) -> GemmSpec:
    """GemmSpec of the integer linear (parameters in the order of the C signature); the accumulator
    starts at the bias; a `mode` ("hi" | "wide") requantizes with per-column values
    (`requantize_fast` in hooks.steps), None literally (`requantize`); hooks' micro-kernel, if any,
    computes whole output tiles (8-bit weights only: x and w are plain loads X[n, k], W[m, k])."""
    from tvm import tirx

    wcols = k if bits == 8 else (k + 1) // 2
    params = (Param("x", "int8", (n, k)), Param("weight", "int8", (m, wcols)), Param("bias", "int32", (m,)),
              Param("multiplier", "int32", (m,)), Param("shift", "int32", (m,)))
    params += (Param("act_lut", "int8", (256,)),) if act == "gelu" else ()
    params += (Param("y", "int8", (n, m)), Param("zp"))
    lo, hi = qrange("int8")

    def epilogue(b, acc, row, col, cv):
        if mode:
            q = requantize_fast(acc, cv, b["zp"], "int8", mode, hooks.steps)
        else:
            q = requantize(acc, b["multiplier"][col], b["shift"][col], b["zp"], lo, hi)
        return lut_lookup(b["act_lut"], q) if act == "gelu" else tirx.Cast("int8", q)

    return GemmSpec(rows=n, cols=m, reduce=(k,), acc_dtype="int32", out="y", params=params,
                    x=lambda b, row, ks: tirx.Cast("int32", b["x"][row, ks[0]]),
                    w=_weight_int4 if bits == 4 else (lambda b, col, ks: tirx.Cast("int32", b["weight"][col, ks[0]])),
                    epilogue=epilogue, init=lambda b, col: b["bias"][col], init_params=("bias",),
                    columns=requant_columns(mode) if mode else (),
                    micro_kernel=hooks.micro_kernel if bits == 8 else None, micro_tile=hooks.micro_tile)


def _weight_int4(b, col, ks):
    """TIR int32 weight w[col, k] from the packed 4-bit constant (k even: low nibble, odd: high)."""
    from tvm import tirx

    k = ks[0]
    byte = tirx.Cast("int32", b["weight"][col, tirx.floordiv(k, 2)])
    low = tirx.bitwise_xor(tirx.bitwise_and(byte, 15), 8) - 8
    high = tirx.shift_right(byte, 4)
    return tirx.if_then_else(tirx.floormod(k, 2) == 0, low, high)


def lut_lookup(lut_buf, value):
    """TIR `lut[value + 128]` for an int32 value in [-128, 127] (a 256-entry int8 table)."""
    from tvm import tirx

    return lut_buf[value + tirx.const(128, "int32")]


# ---------------------------------------------------------------- float32

def _generate_float(req: KernelRequest, hooks: GemmHooks) -> KernelCode:
    n, k, m = _shape(req)
    act, has_bias = _activation(req), "bias" in req.consts
    x, y = req.in_infos[0].name, req.out_infos[0].name
    func = gemm_prim_func(_float_spec(n, k, m, has_bias, act), req.schedule)
    roles = ["weight"] + (["bias"] if has_bias else [])
    args = (tensor_arg(x, "float32"), *(const_arg(r, req.consts[r]) for r in roles), tensor_arg(y, "float32"))
    name = gemm_func_name(req, rows=n, k=k, m=m, bias=has_bias, activation=act, **hooks.name_facts)
    return KernelCode(name, func, args)


def _float_spec(n: int, k: int, m: int, has_bias: bool, act: str) -> GemmSpec:
    """GemmSpec of the float linear: y = acc (+ bias) [-> GELU]."""
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


KERNEL = KernelDef(op="linear", generate=generate, dtypes=("float32", "int8"))
