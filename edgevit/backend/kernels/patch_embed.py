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
with the (c, kh, kw) loops outside the unrolled tile and kw unrolled, and the fast requantize of
requant.py. A target's override passes `GemmHooks` to `generate`: a micro-kernel computing a
whole (c, kh, kw) reduction of a tile (tiles of one patch: 2-patch tiles would need both patches
in one grid row, as the image offset between patches n and n + 1 is not affine in n), the
requantize's int32 steps. Not row-wise (a patch row reads p image rows), no scratch, not in-place.
"""

from __future__ import annotations

from edgevit.lower.intmath import qrange
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.common import check_request, const_arg, int_arg, tensor_arg
from edgevit.backend.kernels.gemm import GENERIC_HOOKS, GemmHooks, GemmSpec, Param, gemm_func_name, gemm_prim_func
from edgevit.backend.kernels.requant import fast_requant_mode, requant_columns, requantize, requantize_fast


def generate(req: KernelRequest, hooks: GemmHooks = GENERIC_HOOKS) -> KernelCode:
    """C code for one patch embedding: int8 image -> int8/int16 tokens, or float32; `hooks`: a
    target's changes to the int8 code (gemm.py)."""
    check_request(req, row_wise=False)
    img, out = req.in_infos[0], req.out_infos[0]
    geometry = (*img.shape, int(req.kernel.attrs["patch"]), out.shape[1])
    mode = None
    if img.dtype == "float32":
        func = gemm_prim_func(_float_spec(*geometry), req.schedule)
        roles, tail = ("weight", "bias"), ()
    else:
        zp = req.kernel.attrs["out_quant"]["zero_point"]
        mode = fast_requant_mode(req, zp)
        func = gemm_prim_func(_int8_spec(*geometry, out.dtype, mode, hooks), req.schedule)
        roles, tail = ("weight", "bias", "multiplier", "shift"), (int_arg(zp),)
    args = (tensor_arg(img.name, img.dtype), *(const_arg(r, req.consts[r]) for r in roles),
            tensor_arg(out.name, out.dtype), *tail)
    name = gemm_func_name(req, image=list(img.shape), patch=geometry[3], d=geometry[4], requant=mode,
                          **hooks.name_facts)
    return KernelCode(name, func, args, 0, hooks.steps.helpers if mode else ())


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


def _int8_spec(c: int, h: int, w: int, p: int, d: int, out_dtype: str, mode: str | None,
               hooks: GemmHooks) -> GemmSpec:
    """GemmSpec of the integer patch embedding (accumulator from the bias, requantize to out_dtype;
    `mode`: the fast requantize's (requant.requant_mode) in hooks.steps, None: the literal one;
    hooks' micro-kernel, if any, computes whole output tiles)."""
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
        if mode:
            return tirx.Cast(out_dtype, requantize_fast(acc, cv, b["zp"], out_dtype, mode, hooks.steps))
        return tirx.Cast(out_dtype, requantize(acc, b["multiplier"][col], b["shift"][col], b["zp"], lo, hi))

    return GemmSpec(rows=n, cols=d, reduce=(c, p, p), acc_dtype="int32", out="y", params=params,
                    x=lambda b, row, ks: x(b, row, ks, to_i32), w=lambda b, col, ks: wt(b, col, ks, to_i32),
                    epilogue=epilogue, init=lambda b, col: b["bias"][col], init_params=("bias",),
                    columns=requant_columns(mode) if mode else (), micro_kernel=hooks.micro_kernel,
                    micro_tile=hooks.micro_tile)


def _float_spec(c: int, h: int, w: int, p: int, d: int) -> GemmSpec:
    """GemmSpec of the float patch embedding: y = acc + bias."""
    k, n = c * p * p, (h // p) * (w // p)
    params = (Param("image", "float32", (c, h, w)), Param("weight", "float32", (d, k)),
              Param("bias", "float32", (d,)), Param("y", "float32", (n, d)))
    x, wt = _im2col(c, h, w, p)
    return GemmSpec(rows=n, cols=d, reduce=(c, p, p), acc_dtype="float32", out="y", params=params,
                    x=lambda b, row, ks: x(b, row, ks, lambda v: v), w=lambda b, col, ks: wt(b, col, ks, lambda v: v),
                    epilogue=lambda b, acc, row, col, cv: acc + b["bias"][col])


KERNEL = KernelDef(op="patch_embed", generate=generate, dtypes=("float32", "int8"))
