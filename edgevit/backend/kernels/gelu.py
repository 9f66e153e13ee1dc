"""gelu: elementwise GELU as a TVM-generated C kernel.

int8 (docs/integer-semantics.md "GELU"): y = lut[x + 128] with the int8 [256] constant `lut`.
float32: the same erfc formula, evaluated in the same float32 steps, as the reference
(`lower/ops/gelu.py`, `_gelu_block`: Numerical Recipes' erfcc with expf, q = Phi(-|x|),
y = x * (x >= 0 ? 1 - q : q)); coefficients are exact float32 constants (micro/f32bits.h).

Schedules: "reference" one element per iteration, "fast" unrolled by 4. Row-wise over the first
axis (any shape); output 0 may reuse input 0 (element i is written after its only read).
"""

from __future__ import annotations

from edgevit.lower.ops.gelu import ERFC_COEFFS
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, const_arg, kernel_func_name, row_count, row_elems, tensor_arg
from edgevit.backend.kernels.tir import F32_HELPER, f32_const

SQRT1_2 = 0.7071067811865476


def gelu_float_expr(x):
    """float32 GELU of a float32 TIR expression, step by step as the NumPy reference."""
    from tvm.script import tirx as T

    z = T.max(x, T.float32(0.0) - x) * f32_const(SQRT1_2)  # |x| (TVM's C printer has no fabs)
    t = T.float32(1.0) / (z * T.float32(0.5) + T.float32(1.0))
    p = t * f32_const(ERFC_COEFFS[-1])
    for c in ERFC_COEFFS[-2:0:-1]:
        p = (p + f32_const(c)) * t
    p = p + f32_const(ERFC_COEFFS[0]) - z * z
    q = T.exp(p) * t * T.float32(0.5)
    return T.if_then_else(x >= T.float32(0.0), T.float32(1.0) - q, q) * x


def gelu_func(size: int, dtype: str, fast: bool):
    """PrimFunc (x[size], [lut int8[256]], y[size]): float32 formula or int8 table lookup."""
    from tvm.script import tirx as T

    main = size - size % 4

    if dtype == "float32":
        return _float_func(size, main, fast)

    @T.prim_func(private=True)
    def int8_func(x: T.handle("int8"), lut: T.handle("int8"), y: T.handle("int8")):
        X = T.decl_buffer((size,), "int8", data=x)
        L = T.decl_buffer((256,), "int8", data=lut)
        Y = T.decl_buffer((size,), "int8", data=y)
        if fast:
            for io in range(main // 4):
                for ii in T.unroll(4):
                    Y[io * 4 + ii] = L[T.Cast("int32", X[io * 4 + ii]) + 128]
            for i in range(main, size):
                Y[i] = L[T.Cast("int32", X[i]) + 128]
        else:
            for i in range(size):
                Y[i] = L[T.Cast("int32", X[i]) + 128]

    return int8_func


def _float_func(size: int, main: int, fast: bool):
    """PrimFunc (x[size], y[size]) float32 GELU; `main` = size rounded down to the unroll factor."""
    from tvm.script import tirx as T

    @T.prim_func(private=True)
    def float_func(x: T.handle("float32"), y: T.handle("float32")):
        X = T.decl_buffer((size,), "float32", data=x)
        Y = T.decl_buffer((size,), "float32", data=y)
        if fast:
            for io in range(main // 4):
                for ii in T.unroll(4):
                    Y[io * 4 + ii] = gelu_float_expr(X[io * 4 + ii])
            for i in range(main, size):
                Y[i] = gelu_float_expr(X[i])
        else:
            for i in range(size):
                Y[i] = gelu_float_expr(X[i])

    return float_func


def generate(req: KernelRequest) -> KernelCode:
    """C for one `gelu` kernel: x [rows, ...] -> y [rows, ...] (rows = req.rows or all)."""
    check_request(req, row_wise=True)
    (x,) = req.in_infos
    (y,) = req.out_infos
    size = row_count(req) * row_elems(x.shape)
    prim = gelu_func(size, x.dtype, req.schedule == "fast")
    name = kernel_func_name(req)
    if x.dtype == "float32":
        return KernelCode(name, prim, (tensor_arg(x.name, x.dtype), tensor_arg(y.name, y.dtype)), helpers=(F32_HELPER,))
    args = (tensor_arg(x.name, x.dtype), const_arg("lut", req.consts["lut"]), tensor_arg(y.name, y.dtype))
    return KernelCode(name, prim, args)


KERNEL = KernelDef(op="gelu", generate=generate, dtypes=("float32", "int8"))
