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

This file also holds the small TIR expression builders (`tir_rshift`, `tir_clamp`,
`tir_requantize`, `f32_const`, ...) and the request helpers (`kernel_func_name`, `tensor_arg`, ...)
shared by the other non-GEMM kernels of this folder (layernorm, add_pos, attention, pool, ...).
"""

from __future__ import annotations

import struct

import numpy as np

from edgevit.lower.intmath import qrange
from edgevit.backend.kernels import register_kernel
from edgevit.backend.kernels.common import (check_request, const_arg, int_arg, kernel_func_name, row_count,  # noqa: F401
                                            row_elems, tensor_arg)
from edgevit.backend.kernels.base import Arg, KernelCode, KernelDef, KernelRequest, KernelTraits

F32_HELPER = "f32bits"  # micro/f32bits.h: exact float constants from their bits


# ---------------------------------------------------------------- request helpers (no TVM)

def add_int_args(attrs: dict) -> tuple[Arg, ...]:
    """The rescaling add's scalars, in the order of `rescale_add_func`'s parameters."""
    return (int_arg(attrs["ka"]), int_arg(attrs["kb"]), int_arg(attrs["bias"], "int64_t"), int_arg(attrs["shift"]),
            int_arg(attrs["out_quant"]["zero_point"]))


# ---------------------------------------------------------------- TIR expression builders

def tir_rshift(x, n):
    """rounding_rshift for int64 `x` and int64 shift `n` >= 1: (x + 2^(n-1)) >> n (round half up)."""
    from tvm.script import tirx as T

    return T.shift_right(x + T.shift_left(T.int64(1), n - T.int64(1)), n)


def tir_half(n):
    """2^(n-1) as int64 for an int32 shift `n` >= 1 (the rounding constant of `tir_rshift`)."""
    from tvm.script import tirx as T

    return T.shift_left(T.int64(1), T.Cast("int64", n) - T.int64(1))


def tir_clamp(x, dtype: str):
    """clamp(x, qmin, qmax) of `dtype`, computed in x's type, then cast to `dtype`."""
    from tvm import tirx
    from tvm.script import tirx as T

    lo, hi = qrange(dtype)
    xt = str(x.ty)
    return T.Cast(dtype, T.max(T.min(x, tirx.const(hi, xt)), tirx.const(lo, xt)))


def tir_requantize(acc, mult, shift, zp, dtype: str):
    """requantize(acc): clamp(rounding_rshift((int64)acc * M, 31 - shift) + zp) as `dtype`.

    acc int32 expression; mult, shift, zp int32 scalars (shift in [-31, 30], so the shift is 1..62).
    """
    from tvm.script import tirx as T

    n = T.int64(31) - T.Cast("int64", shift)
    return tir_clamp(tir_rshift(T.Cast("int64", acc) * T.Cast("int64", mult), n) + T.Cast("int64", zp), dtype)


def f32_const(value: float):
    """An exact float32 constant (TVM prints float literals with 7 digits; this goes through bits)."""
    from tvm.script import tirx as T

    bits = struct.unpack("<I", struct.pack("<f", np.float32(value)))[0]
    return T.call_pure_extern("float32", "ev_f32_bits", T.uint32(bits))


def f64_const(value: float):
    """An exact float64 constant (see `f32_const`)."""
    from tvm.script import tirx as T

    bits = struct.unpack("<Q", struct.pack("<d", float(value)))[0]
    return T.call_pure_extern("float64", "ev_f64_bits", T.uint32(bits >> 32), T.uint32(bits & 0xFFFFFFFF))


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


KERNEL = register_kernel(KernelDef(op="add", traits=KernelTraits(inplace=(0, 1), row_wise=True), generate=generate,
                                   dtypes=("float32", "int8", "int16")))
