"""patch_embed on the cpu target: image [C, H, W] -> tokens [P, D], im2col fused into a vector GEMM.

The arithmetic of the generic kernel (edgevit/backend/kernels/patch_embed.py; docs/integer-semantics.md
"patch_embed": int8 bit-exact, float32 within float rounding) scheduled by vector_gemm.py like the
cpu linear: the weight [D, C*p*p] packed in column panels at compile time, a register tile of
patches x channels, x read straight from the image (column k = (c, kh, kw) of patch n is
image[c, gy*p + kh, gx*p + kw]). int8 with a dot-product ISA and p % 4 == 0: the reduction is
(c, kh, kw / 4, 4), each 4 pixels of a patch row one `vpdpbusd` / `sdot` (dot_intrin.py; VNNI
adds 128 to x, so the packed bias is bias - 128 sum_k w).

C signature: int8 f(int8_t *image, int8_t *weight_packed, int32_t *bias_packed, int32_t *multiplier,
int32_t *shift, int8_t-or-int16_t *y, int32_t zp); float32 f(float *image, float *weight_packed,
float *bias, float *y).
"""

from __future__ import annotations

import numpy as np

from edgevit.backend.kernels import patch_embed as generic
from edgevit.backend.kernels.base import Arg, KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, const_arg, int_arg, tensor_arg
from edgevit.backend.kernels.gemm import PLAIN_STEPS, GemmSpec, Param, gemm_func_name
from edgevit.backend.kernels.requant import requant_columns, requant_mode, requantize_fast
from edgevit.targets.cpu.kernels.dot_intrin import dot_intrin
from edgevit.targets.cpu.kernels.vector_gemm import (DOT_K, VNNI_OFFSET, cpu_gemm, pack_columns, pack_int8,
                                                      vector_gemm_func)


def generate(req: KernelRequest) -> KernelCode:
    """C code for one patch embedding on the cpu target (module docstring)."""
    check_request(req, row_wise=False)
    if req.schedule != "fast":
        return generic.generate(req)
    img, out = req.in_infos[0], req.out_infos[0]
    c, h, w = img.shape
    p, d = int(req.kernel.attrs["patch"]), out.shape[1]
    tile = cpu_gemm(req.isa, req.dtype, p)  # dot products need whole groups of 4 pixels in a patch row
    weight = np.asarray(req.consts["weight"])
    facts = dict(image=list(img.shape), patch=p, d=d, tile=[tile.rows, tile.cols, tile.lanes], dot=tile.dot)
    geometry = (c, h, w, p, d, tile)
    if img.dtype == "float32":
        func = vector_gemm_func(_spec(geometry, "float32", "float32", None, None), tile)
        args = (tensor_arg(img.name, "float32"), Arg("packed", "weight", "float*"),
                const_arg("bias", req.consts["bias"]), tensor_arg(out.name, "float32"))
        return KernelCode(gemm_func_name(req, **facts), func, args, packed={"weight": pack_columns(weight, tile.cols)})
    zp = req.kernel.attrs["out_quant"]["zero_point"]
    mode = requant_mode(req.consts["multiplier"], req.consts["shift"], zp)
    packed = pack_int8(weight, req.consts["bias"], tile)
    intrin = dot_intrin(tile.dot, tile.lanes) if tile.dot else None
    func = vector_gemm_func(_spec(geometry, "int8", out.dtype, mode, tile.dot), tile, intrin)
    args = (tensor_arg(img.name, "int8"), Arg("packed", "weight", "int8_t*"), Arg("packed", "bias", "int32_t*"),
            const_arg("multiplier", req.consts["multiplier"]), const_arg("shift", req.consts["shift"]),
            tensor_arg(out.name, out.dtype), int_arg(zp))
    return KernelCode(gemm_func_name(req, requant=mode, **facts), func, args, packed=packed)


def _spec(geometry, dtype: str, out_dtype: str, mode: str | None, dot: str | None) -> GemmSpec:
    """GemmSpec of the patch embedding on packed weights: reduction (c, kh, kw) or, with a dot
    product, (c, kh, kw / 4, 4)."""
    from tvm import tirx

    c, h, w, p, d, tile = geometry
    cols, panels = tile.cols, -(-d // tile.cols)
    k, n, gw = c * p * p, (h // p) * (w // p), w // p
    wshape = (panels, k // DOT_K, cols, DOT_K) if dot else (panels, k, cols)
    params = (Param("image", dtype, (c, h, w)), Param("weight", dtype, wshape))
    if dtype == "float32":
        params += (Param("bias", "float32", (d,)), Param("y", "float32", (n, d)))
    else:
        params += (Param("bias", "int32", (panels * cols,)), Param("multiplier", "int32", (d,)),
                   Param("shift", "int32", (d,)), Param("y", out_dtype, (n, d)), Param("zp"))
    reduce = (c, p, p // DOT_K, DOT_K) if dot else (c, p, p)
    offset = VNNI_OFFSET if dot == "vnni" else 0

    def kw_of(ks):
        return ks[2] * DOT_K + ks[3] if dot else ks[2]

    def x(b, row, ks):
        v = b["image"][ks[0], tirx.floordiv(row, gw) * p + ks[1], tirx.floormod(row, gw) * p + kw_of(ks)]
        if dtype == "float32":
            return v
        return tirx.Cast("int32", v) + tirx.const(offset, "int32") if offset else tirx.Cast("int32", v)

    def wt(b, col, ks):
        panel, cc = tirx.floordiv(col, cols), tirx.floormod(col, cols)
        kk = (ks[0] * p + ks[1]) * p + kw_of(ks)
        if dot:
            v = b["weight"][panel, tirx.floordiv(kk, DOT_K), cc, ks[3]]
        else:
            v = b["weight"][panel, kk, cc]
        return v if dtype == "float32" else tirx.Cast("int32", v)

    if dtype == "float32":
        return GemmSpec(rows=n, cols=d, reduce=reduce, acc_dtype="float32", out="y", params=params, x=x, w=wt,
                        epilogue=lambda b, acc, row, col, cv: acc + b["bias"][col])

    def epilogue(b, acc, row, col, cv):
        return tirx.Cast(out_dtype, requantize_fast(acc, cv, b["zp"], out_dtype, mode, PLAIN_STEPS))

    return GemmSpec(rows=n, cols=d, reduce=reduce, acc_dtype="int32", out="y", params=params, x=x, w=wt,
                    epilogue=epilogue, init=lambda b, col: b["bias"][col], init_params=("bias",),
                    columns=requant_columns(mode))


KERNEL = KernelDef(op="patch_embed", generate=generate, dtypes=generic.KERNEL.dtypes)
