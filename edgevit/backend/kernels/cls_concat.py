"""cls_concat: tokens [P, D] -> [P+1, D] with the constant class token `cls` [D] as row 0 (TVM-generated C).

A copy, no arithmetic, for float32, int8 and int16 (the output keeps the input's dtype and
quantization; `cls` is already quantized to it). Schedules: "reference" copies element by
element, "fast" unrolls the copy by 4. Neither row-wise (output row i+1 is input row i) nor
in-place (the output is one row longer than the input).
"""

from __future__ import annotations

from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, const_arg, kernel_func_name, tensor_arg


def cls_concat_func(p: int, d: int, dtype: str, fast: bool):
    """PrimFunc (x[P*D], cls[D], y[(P+1)*D]): y = [cls; x]."""
    from tvm.script import tirx as T

    size = p * d
    main = size - size % 4

    @T.prim_func(private=True)
    def func(x: T.handle(dtype), cls: T.handle(dtype), y: T.handle(dtype)):
        X = T.decl_buffer((size,), dtype, data=x)
        C = T.decl_buffer((d,), dtype, data=cls)
        Y = T.decl_buffer((size + d,), dtype, data=y)
        for c in range(d):
            Y[c] = C[c]
        if fast:
            for io in range(main // 4):
                for ii in T.unroll(4):
                    Y[d + io * 4 + ii] = X[io * 4 + ii]
            for i in range(main, size):
                Y[d + i] = X[i]
        else:
            for i in range(size):
                Y[d + i] = X[i]

    return func


def generate(req: KernelRequest) -> KernelCode:
    """C for one `cls_concat` kernel: tokens [P, D] -> [P+1, D]."""
    check_request(req, row_wise=False)
    (x,) = req.in_infos
    (y,) = req.out_infos
    p, d = x.shape
    prim = cls_concat_func(p, d, x.dtype, req.schedule == "fast")
    args = (tensor_arg(x.name, x.dtype), const_arg("cls", req.consts["cls"]), tensor_arg(y.name, y.dtype))
    return KernelCode(kernel_func_name(req), prim, args)


KERNEL = KernelDef(op="cls_concat", generate=generate, dtypes=("float32", "int8", "int16"))
