"""add_pos: tokens [N, D] + the constant position embedding `pos` [N, D] as a TVM-generated C kernel.

The same code as `add` (kernels/add.py) with b = the flash constant `pos`: float32 `x + pos`, or
the integer rescaling add with int arguments ka, kb, bias, shift, zp_out (tokens int8/int16, pos
int8/int16, output int8/int16).

Traits: output 0 may reuse input 0 (element i is written after its only read). Not `row_wise`:
a chunked call would need the constant's pointer advanced with the chunk, and the driver offsets
only tensor pointers (docs/mcu-backend.md, `Arg`), so the kernel always runs on all N rows.
"""

from __future__ import annotations

from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.add import add_int_args, float_add_func, rescale_add_func
from edgevit.backend.kernels.common import check_request, const_arg, kernel_func_name, tensor_arg


def generate(req: KernelRequest) -> KernelCode:
    """C for one `add_pos` kernel: tokens [N, D] (+) pos [N, D] -> [N, D]."""
    check_request(req, row_wise=False)
    (x,) = req.in_infos
    (y,) = req.out_infos
    pos = req.consts["pos"]
    fast = req.schedule == "fast"
    args = (tensor_arg(x.name, x.dtype), const_arg("pos", pos), tensor_arg(y.name, y.dtype))
    name = kernel_func_name(req)
    if x.dtype == "float32":
        return KernelCode(name, float_add_func(x.size, fast), args)
    prim = rescale_add_func(x.size, x.dtype, str(pos.dtype), y.dtype, fast)
    return KernelCode(name, prim, args + add_int_args(req.kernel.attrs))


KERNEL = KernelDef(op="add_pos", generate=generate, dtypes=("float32", "int8", "int16"))
