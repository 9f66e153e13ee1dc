"""patch_embed: image [C, H, W] -> tokens [P, D] as a TVM-generated C kernel (im2col fused into the GEMM).

Patch n = gy * (W/p) + gx reads the image directly: column k = (c, kh, kw) of its im2col row is
image[c, gy*p + kh, gx*p + kw]; no im2col buffer, no scratch. Then (docs/integer-semantics.md
"patch_embed"; bit-exact with `ops/patch_embed.run_int8`):

    int8:    acc[n, d] = bias[d] + sum_k col[n, k] * weight[d, k]                  int32
             y[n, d]   = requantize(acc, multiplier[d], shift[d], zp)              int8 or int16
    float32: y[n, d]   = sum_k col[n, k] * weight[d, k] + bias[d]

C signature (per-layer numbers are arguments):

    int8:    f(int8_t *image, int8_t *weight, int32_t *bias, int32_t *multiplier, int32_t *shift,
               int8_t-or-int16_t *y, int32_t zp)
    float32: f(float *image, float *weight, float *bias, float *y)

Schedules (`gemm.py`): "reference" plain loops over (n, d, c, kh, kw); "fast" 2x2 output tiles
with the (c, kh, kw) loops outside the unrolled tile and kw unrolled. No DSP micro-kernel: two
patches of a tile are p pixels apart only within one grid row, and the patch embedding is ~1% of
a ViT's MACs. Not row-wise (a patch row reads p image rows), no scratch, not in-place.
"""

from __future__ import annotations

from edgevit.lower.intmath import qrange
from edgevit.targets.kernels import register_kernel
from edgevit.targets.kernels.base import KernelCode, KernelDef, KernelRequest, KernelTraits
from edgevit.targets.kernels.gemm import (GemmSpec, Param, check_request, const_arg, gemm_func_name, gemm_prim_func,
                                          int_arg, tensor_arg)
from edgevit.targets.kernels.linear import requant_columns, requantize, requantize_fast


def generate(req: KernelRequest) -> KernelCode:
    """C code for one patch embedding: int8 image -> int8/int16 tokens, or float32."""
    check_request(req, row_wise=False)
    img, out = req.in_infos[0], req.out_infos[0]
    geometry = (*img.shape, int(req.kernel.attrs["patch"]), out.shape[1])
    fast = req.schedule == "fast"
    if img.dtype == "float32":
        func = gemm_prim_func(_float_spec(*geometry), req.schedule)
        roles, tail = ("weight", "bias"), ()
    else:
        zp = req.kernel.attrs["out_quant"]["zero_point"]
        func = gemm_prim_func(_int8_spec(*geometry, out.dtype, fast), req.schedule)
        roles, tail = ("weight", "bias", "multiplier", "shift"), (int_arg(zp),)
    args = (tensor_arg(img.name, img.dtype), *(const_arg(r, req.consts[r]) for r in roles),
            tensor_arg(out.name, out.dtype), *tail)
    name = gemm_func_name(req, image=list(img.shape), patch=geometry[3], d=geometry[4])
    return KernelCode(name, func, args)


def _im2col(c: int, h: int, w: int, p: int):
    """x(bufs, n, (ci, kh, kw)) reading image[ci, gy*p + kh, gx*p + kw] of patch n, and the weight
    w(bufs, d, (ci, kh, kw)) = weight[d, (ci*p + kh)*p + kw], as TIR expressions (cast by `cast`)."""
    from tvm import tirx

    gw = w // p

    def x(b, n, ks, cast):
        ci, kh, kw = ks
        pixel = b["image"][ci, tirx.floordiv(n, gw) * p + kh, tirx.floormod(n, gw) * p + kw]
        return cast(pixel)

    def wt(b, d, ks, cast):
        ci, kh, kw = ks
        return cast(b["weight"][d, (ci * p + kh) * p + kw])

    return x, wt


def _int8_spec(c: int, h: int, w: int, p: int, d: int, out_dtype: str, fast: bool) -> GemmSpec:
    """GemmSpec of the integer patch embedding (accumulator from the bias, requantize to out_dtype)."""
    from tvm import tirx

    k, n = c * p * p, (h // p) * (w // p)
    params = (Param("image", "int8", (c, h, w)), Param("weight", "int8", (d, k)), Param("bias", "int32", (d,)),
              Param("multiplier", "int32", (d,)), Param("shift", "int32", (d,)), Param("y", out_dtype, (n, d)),
              Param("zp"))
    lo, hi = qrange(out_dtype)
    x, wt = _im2col(c, h, w, p)

    def to_i32(v):
        return tirx.Cast("int32", v)

    def epilogue(b, acc, row, col, cv):
        if fast:
            return tirx.Cast(out_dtype, requantize_fast(acc, cv, b["zp"], lo, hi))
        return tirx.Cast(out_dtype, requantize(acc, b["multiplier"][col], b["shift"][col], b["zp"], lo, hi))

    return GemmSpec(rows=n, cols=d, reduce=(c, p, p), acc_dtype="int32", out="y", params=params,
                    x=lambda b, row, ks: x(b, row, ks, to_i32), w=lambda b, col, ks: wt(b, col, ks, to_i32),
                    epilogue=epilogue, init=lambda b, col: b["bias"][col], init_params=("bias",),
                    columns=requant_columns() if fast else ())


def _float_spec(c: int, h: int, w: int, p: int, d: int) -> GemmSpec:
    """GemmSpec of the float patch embedding: y = acc + bias."""
    k, n = c * p * p, (h // p) * (w // p)
    params = (Param("image", "float32", (c, h, w)), Param("weight", "float32", (d, k)),
              Param("bias", "float32", (d,)), Param("y", "float32", (n, d)))
    x, wt = _im2col(c, h, w, p)
    return GemmSpec(rows=n, cols=d, reduce=(c, p, p), acc_dtype="float32", out="y", params=params,
                    x=lambda b, row, ks: x(b, row, ks, lambda v: v), w=lambda b, col, ks: wt(b, col, ks, lambda v: v),
                    epilogue=lambda b, acc, row, col, cv: acc + b["bias"][col])


KERNEL = register_kernel(KernelDef(op="patch_embed", traits=KernelTraits(), generate=generate,
                                   dtypes=("float32", "int8")))
