"""add: the residual add as a TVM-generated C kernel (float32 sum; int8/int16 rescaling add).

Integer semantics (docs/integer-semantics.md "Residual add", `intmath.add_int`), per element:

    acc = (int64)a * ka + (int64)b * kb + bias;   y = clamp(rounding_rshift(acc, shift) + zp_out)

a and b may be int8 or int16 independently, y int8 or int16 (the clamp range is the output dtype's,
compiled in). ka, kb, bias, shift and zp_out are `int` arguments, so every add of the same shape
and dtypes calls one function. Schedules: "reference" is the formula above element by element;
"fast" folds the rounding constant into the bias once per call and unrolls the loop by 4. Both are
bit-exact. Row-wise; output 0 may reuse input 0 or 1: the loop runs forward and writes element i
after its only read, so this is safe whenever the output's element size is <= the reused input's
(e.g. not int8 input -> int16 output; the `inplace` trait cannot say so, the planner must check).
`rescale_add_func` / `float_add_func` are shared with add_pos.
"""

from __future__ import annotations

from edgevit.backend.kernels.base import Arg, KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, int_arg, kernel_func_name, row_count, row_elems, tensor_arg
from edgevit.backend.kernels.tir import tir_clamp, tir_half, tir_rshift


# ---------------------------------------------------------------- request helpers (no TVM)

def add_int_args(attrs: dict) -> tuple[Arg, ...]:
    """The rescaling add's scalars, in the order of `rescale_add_func`'s parameters."""
    return (int_arg(attrs["ka"]), int_arg(attrs["kb"]), int_arg(attrs["bias"], "int64_t"), int_arg(attrs["shift"]),
            int_arg(attrs["out_quant"]["zero_point"]))


# ---------------------------------------------------------------- the add kernels

def rescale_add_func(size: int, a_dt: str, b_dt: str, y_dt: str, fast: bool):
    """PrimFunc (a[size], b[size], y[size], ka, kb, bias int64, shift, zp): the integer rescaling add."""
    from tvm.script import tirx as T

    main = size - size % 4

    def elem(av, bv, bh, shift, ka, kb, zp):
        acc = T.Cast("int64", av) * T.Cast("int64", ka) + T.Cast("int64", bv) * T.Cast("int64", kb) + bh
        return tir_clamp(T.shift_right(acc, T.Cast("int64", shift)) + T.Cast("int64", zp), y_dt)

    @T.prim_func(private=True)
    def func(a: T.handle(a_dt), b: T.handle(b_dt), y: T.handle(y_dt), ka: T.int32, kb: T.int32, bias: T.int64,
             shift: T.int32, zp: T.int32):
        A = T.decl_buffer((size,), a_dt, data=a)
        B = T.decl_buffer((size,), b_dt, data=b)
        Y = T.decl_buffer((size,), y_dt, data=y)
        if fast:
            bh = T.alloc_buffer((1,), "int64")
            bh[0] = bias + tir_half(shift)
            for io in range(main // 4):
                for ii in T.unroll(4):
                    Y[io * 4 + ii] = elem(A[io * 4 + ii], B[io * 4 + ii], bh[0], shift, ka, kb, zp)
            for i in range(main, size):
                Y[i] = elem(A[i], B[i], bh[0], shift, ka, kb, zp)
        else:
            for i in range(size):
                Y[i] = tir_clamp(tir_rshift(T.Cast("int64", A[i]) * T.Cast("int64", ka)
                                            + T.Cast("int64", B[i]) * T.Cast("int64", kb) + bias,
                                            T.Cast("int64", shift)) + T.Cast("int64", zp), y_dt)

    return func


def float_add_func(size: int, fast: bool):
    """PrimFunc (a[size], b[size], y[size]) float32: y = a + b."""
    from tvm.script import tirx as T

    main = size - size % 4

    @T.prim_func(private=True)
    def func(a: T.handle("float32"), b: T.handle("float32"), y: T.handle("float32")):
        A = T.decl_buffer((size,), "float32", data=a)
        B = T.decl_buffer((size,), "float32", data=b)
        Y = T.decl_buffer((size,), "float32", data=y)
        if fast:
            for io in range(main // 4):
                for ii in T.unroll(4):
                    Y[io * 4 + ii] = A[io * 4 + ii] + B[io * 4 + ii]
            for i in range(main, size):
                Y[i] = A[i] + B[i]
        else:
            for i in range(size):
                Y[i] = A[i] + B[i]

    return func


def generate(req: KernelRequest) -> KernelCode:
    """C for one `add` kernel: a, b [rows, D] -> y [rows, D] (rows = req.rows or N)."""
    check_request(req, row_wise=True)
    a, b = req.in_infos
    (y,) = req.out_infos
    size = row_count(req) * row_elems(a.shape)
    fast = req.schedule == "fast"
    tensors = (tensor_arg(a.name, a.dtype), tensor_arg(b.name, b.dtype), tensor_arg(y.name, y.dtype))
    name = kernel_func_name(req)
    if a.dtype == "float32":
        return KernelCode(name, float_add_func(size, fast), tensors)
    prim = rescale_add_func(size, a.dtype, b.dtype, y.dtype, fast)
    return KernelCode(name, prim, tensors + add_int_args(req.kernel.attrs))


KERNEL = KernelDef(op="add", generate=generate, dtypes=("float32", "int8", "int16"))
