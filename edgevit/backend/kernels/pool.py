"""pool: tokens [N, D] -> [1, D], the class token (mode "cls") or the mean over rows ("mean"), or
[rows, D], the first rows ("prefix": class and distillation tokens), TVM-generated C.

- "cls" / "prefix" (any dtype): copy row 0 / the first `rows` rows (one contiguous block).
- "mean", float32: per column, sum in double, divide by N in double, round to float once
  (as the reference's float64 mean).
- "mean", int8/int16 (docs/integer-semantics.md "pool"): per column
  acc = sum_n x[n, d] - N * in_zero_point (int32), y = requantize(acc, multiplier, shift, zp_out)
  with int arguments in_zero_point, multiplier, shift, zp_out; the clamp is the output dtype's.

The mode is compiled in (part of the function name). Not row-wise, not in-place (one output row
from all rows). The two schedules generate the same loops (pool runs once per image).
"""

from __future__ import annotations

from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, int_arg, kernel_func_name, tensor_arg
from edgevit.backend.kernels.tir import F32_HELPER, f64_const, tir_requantize


def cls_pool_func(d: int, dtype: str):
    """PrimFunc (x[N*D], y[d]): y = the first d elements of x (row 0, or the first rows with d = rows * D)."""
    from tvm.script import tirx as T

    @T.prim_func(private=True)
    def func(x: T.handle(dtype), y: T.handle(dtype)):
        X = T.decl_buffer((d,), dtype, data=x)
        Y = T.decl_buffer((d,), dtype, data=y)
        for c in range(d):
            Y[c] = X[c]

    return func


def float_mean_func(n: int, d: int):
    """PrimFunc (x[N*D], y[D]) float32: y[c] = (float)(sum_n (double)x[n, c] / N)."""
    from tvm.script import tirx as T

    @T.prim_func(private=True)
    def func(x: T.handle("float32"), y: T.handle("float32")):
        X = T.decl_buffer((n * d,), "float32", data=x)
        Y = T.decl_buffer((d,), "float32", data=y)
        acc = T.alloc_buffer((1,), "float64")
        for c in range(d):
            acc[0] = T.float64(0.0)
            for r in range(n):
                acc[0] = acc[0] + T.Cast("float64", X[r * d + c])
            Y[c] = T.Cast("float32", acc[0] / f64_const(float(n)))

    return func


def int_mean_func(n: int, d: int, in_dt: str, out_dt: str):
    """PrimFunc (x[N*D], y[D], in_zp, multiplier, shift, zp_out): the requantized column means."""
    from tvm.script import tirx as T

    @T.prim_func(private=True)
    def func(x: T.handle(in_dt), y: T.handle(out_dt), in_zp: T.int32, mult: T.int32, shift: T.int32, zp: T.int32):
        X = T.decl_buffer((n * d,), in_dt, data=x)
        Y = T.decl_buffer((d,), out_dt, data=y)
        acc = T.alloc_buffer((1,), "int32")
        for c in range(d):
            acc[0] = 0 - n * in_zp
            for r in range(n):
                acc[0] = acc[0] + T.Cast("int32", X[r * d + c])
            Y[c] = tir_requantize(acc[0], mult, shift, zp, out_dt)

    return func


def generate(req: KernelRequest) -> KernelCode:
    """C for one `pool` kernel: tokens [N, D] -> [1, D] (or [rows, D] for mode "prefix")."""
    check_request(req, row_wise=False)
    (x,) = req.in_infos
    (y,) = req.out_infos
    n, d = x.shape
    mode = req.kernel.attrs["mode"]
    name = kernel_func_name(req, mode=mode)
    tensors = (tensor_arg(x.name, x.dtype), tensor_arg(y.name, y.dtype))
    if mode in ("cls", "prefix"):
        return KernelCode(name, cls_pool_func(y.size, x.dtype), tensors)
    if x.dtype == "float32":
        return KernelCode(name, float_mean_func(n, d), tensors, helpers=(F32_HELPER,))
    a = req.kernel.attrs
    ints = (int_arg(a["in_zero_point"]), int_arg(a["multiplier"]), int_arg(a["shift"]),
            int_arg(a["out_quant"]["zero_point"]))
    return KernelCode(name, int_mean_func(n, d, x.dtype, y.dtype), tensors + ints)


KERNEL = KernelDef(op="pool", generate=generate, dtypes=("float32", "int8", "int16"))
