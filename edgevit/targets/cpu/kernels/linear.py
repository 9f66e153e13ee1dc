"""linear on the cpu target: x [N, K] @ weight[M, K]^T (+ bias) [-> GELU] on packed weights, vector tiles.

The same arithmetic as the generic kernel (edgevit/backend/kernels/linear.py, docs/integer-semantics.md
"linear": int8 bit-exact, float32 within float rounding), scheduled by vector_gemm.py: weights packed in
column panels at compile time ("packed" arguments: the driver stores them instead of the [M, K]
constant), a register tile of vector FMAs, or of int8 dot products where the ISA has them:

- AVX-512 VNNI (`vpdpbusd`, unsigned x signed bytes): the kernel sums (x + 128) * w, so the packed
  bias is bias - 128 sum_k w[m, k] (exact int32: |sum| < 2^31 for K < 2^17) — the accumulator is
  bias + sum x w as the spec has it;
- Arm dot product (`sdot`, signed x signed): the spec's sum as it is.

4-bit weights are unpacked to int8 in the packed panels (same values). The epilogue (requantize of
requant.py in its fast int32 steps, GELU's table; float: bias and a vectorizable exact-to-1e-7 GELU,
vector_math.py) is vectorized over the tile's columns.

C signature: int8 f(int8_t *x, int8_t *weight_packed, int32_t *bias[_packed], int32_t *multiplier,
int32_t *shift, [int8_t *act_lut,] int8_t *y, int32_t zp); float32 f(float *x, float *weight_packed,
[float *bias,] float *y).
"""

from __future__ import annotations

import numpy as np

from edgevit.backend.kernels import linear as generic
from edgevit.backend.kernels.base import Arg, KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, const_arg, int_arg, row_count, tensor_arg
from edgevit.backend.kernels.gemm import PLAIN_STEPS, GemmSpec, Param, gemm_func_name
from edgevit.backend.kernels.requant import requant_columns, requant_mode, requantize_fast
from edgevit.targets.cpu.kernels.dot_intrin import dot_intrin
from edgevit.targets.cpu.kernels.vector_gemm import (DOT_K, VNNI_OFFSET, cpu_gemm, pack_columns, pack_int8,
                                                      vector_gemm_func)
from edgevit.targets.cpu.kernels.vector_math import gelu_f32

def generate(req: KernelRequest) -> KernelCode:
    """C code for one linear kernel on the cpu target (module docstring)."""
    check_request(req)
    if req.schedule != "fast":
        return generic.generate(req)
    n, k, m = row_count(req), req.in_infos[0].shape[1], req.out_infos[0].shape[1]
    tile = cpu_gemm(req.isa, req.dtype, k)
    w = _weights(req, k)
    act = req.kernel.attrs.get("activation", "none")
    x, y = req.in_infos[0].name, req.out_infos[0].name
    facts = dict(rows=n, k=k, m=m, activation=act, tile=[tile.rows, tile.cols, tile.lanes], dot=tile.dot)
    if req.dtype == "float32":
        has_bias = "bias" in req.consts
        packed = {"weight": pack_columns(w, tile.cols)}
        func = vector_gemm_func(_float_spec(n, k, m, tile.cols, has_bias, act), tile)
        args = (tensor_arg(x, "float32"), Arg("packed", "weight", "float*"),
                *((const_arg("bias", req.consts["bias"]),) if has_bias else ()), tensor_arg(y, "float32"))
        return KernelCode(gemm_func_name(req, bias=has_bias, **facts), func, args, packed=packed)
    zp = req.kernel.attrs["act_in_quant" if act == "gelu" else "out_quant"]["zero_point"]
    mode = requant_mode(req.consts["multiplier"], req.consts["shift"], zp)
    dot = tile.dot is not None
    packed = pack_int8(w, req.consts["bias"], tile)
    spec = _int8_spec(n, k, m, tile, act, mode)
    func = vector_gemm_func(spec, tile, dot_intrin(tile.dot, tile.lanes) if dot else None)
    roles = ["multiplier", "shift"] + (["act_lut"] if act == "gelu" else [])
    args = (tensor_arg(x, "int8"), Arg("packed", "weight", "int8_t*"), Arg("packed", "bias", "int32_t*"),
            *(const_arg(r, req.consts[r]) for r in roles), tensor_arg(y, "int8"), int_arg(zp))
    return KernelCode(gemm_func_name(req, requant=mode, **facts), func, args, packed=packed)


def _weights(req: KernelRequest, k: int) -> np.ndarray:
    """The weight matrix [M, K] (4-bit weights unpacked to int8: even k low nibble, odd k high)."""
    w = np.asarray(req.consts["weight"])
    if req.kernel.attrs.get("weight_bits", 8) != 4:
        return w
    b = w.astype(np.int16)
    low, high = ((b & 0xF) ^ 8) - 8, b >> 4
    out = np.empty((w.shape[0], 2 * w.shape[1]), dtype=np.int8)
    out[:, 0::2], out[:, 1::2] = low, high
    return out[:, :k]


def _float_spec(n: int, k: int, m: int, cols: int, has_bias: bool, act: str) -> GemmSpec:
    """y = x @ w^T (+ bias) [-> GELU] with the weight panels [ceil(M/cols), K, cols]."""
    from tvm import tirx

    panels = -(-m // cols)
    params = (Param("x", "float32", (n, k)), Param("weight", "float32", (panels, k, cols)))
    params += (Param("bias", "float32", (m,)),) if has_bias else ()
    params += (Param("y", "float32", (n, m)),)

    def epilogue(b, acc, row, col, cv):
        v = acc + b["bias"][col] if has_bias else acc
        return gelu_f32(v) if act == "gelu" else v

    return GemmSpec(rows=n, cols=m, reduce=(k,), acc_dtype="float32", out="y", params=params,
                    x=lambda b, row, ks: b["x"][row, ks[0]],
                    w=lambda b, col, ks: b["weight"][tirx.floordiv(col, cols), ks[0], tirx.floormod(col, cols)],
                    epilogue=epilogue)


def _int8_spec(n: int, k: int, m: int, tile, act: str, mode: str) -> GemmSpec:
    """acc = bias + sum x w (VNNI: packed bias + sum (x + 128) w), requantized in `mode`, [GELU table]."""
    from tvm import tirx

    cols, panels = tile.cols, -(-m // tile.cols)
    dot = tile.dot is not None
    wshape = (panels, k // DOT_K, cols, DOT_K) if dot else (panels, k, cols)
    params = (Param("x", "int8", (n, k)), Param("weight", "int8", wshape), Param("bias", "int32", (panels * cols,)),
              Param("multiplier", "int32", (m,)), Param("shift", "int32", (m,)))
    params += (Param("act_lut", "int8", (256,)),) if act == "gelu" else ()
    params += (Param("y", "int8", (n, m)), Param("zp"))
    offset = tirx.const(VNNI_OFFSET, "int32") if tile.dot == "vnni" else None

    def x(b, row, ks):
        kk = ks[0] * DOT_K + ks[1] if dot else ks[0]
        v = tirx.Cast("int32", b["x"][row, kk])
        return v + offset if offset is not None else v

    def w(b, col, ks):
        panel, c = tirx.floordiv(col, cols), tirx.floormod(col, cols)
        idx = (panel, ks[0], c, ks[1]) if dot else (panel, ks[0], c)
        return tirx.Cast("int32", b["weight"][idx])

    def epilogue(b, acc, row, col, cv):
        q = requantize_fast(acc, cv, b["zp"], "int8", mode, PLAIN_STEPS)
        return generic.lut_lookup(b["act_lut"], q) if act == "gelu" else tirx.Cast("int8", q)

    return GemmSpec(rows=n, cols=m, reduce=(k // DOT_K, DOT_K) if dot else (k,), acc_dtype="int32", out="y",
                    params=params, x=x, w=w, epilogue=epilogue, init=lambda b, col: b["bias"][col],
                    init_params=("bias",), columns=requant_columns(mode))


KERNEL = KernelDef(op="linear", generate=generate, dtypes=generic.KERNEL.dtypes)
