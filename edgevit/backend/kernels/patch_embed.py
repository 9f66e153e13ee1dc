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
linear.py. On DSP cores with p % 4 == 0 (kw runs of whole 32-bit words) the fast schedule instead
takes one patch x 4 channels per tile (PATCH_TILE; leftover channels 1 x 1), its whole (c, kh, kw)
reduction one call of `ev_patch_dsp_1x4` (micro/gemm_dsp.h, tensor intrinsic `patch_intrin`):
2-patch tiles would need both patches in one grid row (the image offset between patches n and
n + 1 is not affine in n), and the patch embedding is ~1% of a ViT's MACs. Not row-wise (a patch
row reads p image rows), no scratch, not in-place.
"""

from __future__ import annotations

from edgevit.lower.intmath import qrange
from edgevit.backend.kernels import register_kernel
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest, KernelTraits
from edgevit.backend.kernels.gemm import (GemmSpec, Param, check_request, const_arg, gemm_func_name, gemm_prim_func,
                                          int_arg, intrin_block_vars, tensor_arg, uses_dsp)
from edgevit.backend.kernels.linear import fast_requant_mode, requant_columns, requantize, requantize_fast

PATCH_TILE = (1, 4)  # output tile (patches, channels) of the DSP micro-kernel: one patch per tile (above)


def generate(req: KernelRequest) -> KernelCode:
    """C code for one patch embedding: int8 image -> int8/int16 tokens, or float32."""
    check_request(req, row_wise=False)
    img, out = req.in_infos[0], req.out_infos[0]
    geometry = (*img.shape, int(req.kernel.attrs["patch"]), out.shape[1])
    mode, dsp = None, False
    if img.dtype == "float32":
        func = gemm_prim_func(_float_spec(*geometry), req.schedule)
        roles, tail = ("weight", "bias"), ()
    else:
        zp = req.kernel.attrs["out_quant"]["zero_point"]
        mode, dsp = fast_requant_mode(req, zp), uses_dsp(req, geometry[3])  # kw runs of p % 4 == 0 bytes
        func = gemm_prim_func(_int8_spec(*geometry, out.dtype, mode), req.schedule, dsp)
        roles, tail = ("weight", "bias", "multiplier", "shift"), (int_arg(zp),)
    args = (tensor_arg(img.name, img.dtype), *(const_arg(r, req.consts[r]) for r in roles),
            tensor_arg(out.name, out.dtype), *tail)
    name = gemm_func_name(req, image=list(img.shape), patch=geometry[3], d=geometry[4], requant=mode, dsp=dsp)
    return KernelCode(name, func, args, 0, ("gemm_dsp",) if mode else ())


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


def _int8_spec(c: int, h: int, w: int, p: int, d: int, out_dtype: str, mode: str | None) -> GemmSpec:
    """GemmSpec of the integer patch embedding (accumulator from the bias, requantize to out_dtype;
    `mode`: the fast requantize's (linear.requant_mode), None: the literal one)."""
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
            return tirx.Cast(out_dtype, requantize_fast(acc, cv, b["zp"], out_dtype, mode))
        return tirx.Cast(out_dtype, requantize(acc, b["multiplier"][col], b["shift"][col], b["zp"], lo, hi))

    return GemmSpec(rows=n, cols=d, reduce=(c, p, p), acc_dtype="int32", out="y", params=params,
                    x=lambda b, row, ks: x(b, row, ks, to_i32), w=lambda b, col, ks: wt(b, col, ks, to_i32),
                    epilogue=epilogue, init=lambda b, col: b["bias"][col], init_params=("bias",),
                    columns=requant_columns(mode) if mode else (), dsp_tile=PATCH_TILE,
                    dsp_intrin=lambda tn, tm: patch_intrin(tm, c, p))


def _float_spec(c: int, h: int, w: int, p: int, d: int) -> GemmSpec:
    """GemmSpec of the float patch embedding: y = acc + bias."""
    k, n = c * p * p, (h // p) * (w // p)
    params = (Param("image", "float32", (c, h, w)), Param("weight", "float32", (d, k)),
              Param("bias", "float32", (d,)), Param("y", "float32", (n, d)))
    x, wt = _im2col(c, h, w, p)
    return GemmSpec(rows=n, cols=d, reduce=(c, p, p), acc_dtype="float32", out="y", params=params,
                    x=lambda b, row, ks: x(b, row, ks, lambda v: v), w=lambda b, col, ks: wt(b, col, ks, lambda v: v),
                    epilogue=lambda b, acc, row, col, cv: acc + b["bias"][col])


# ---------------------------------------------------------------- the DSP tensor intrinsic

def patch_intrin(tm: int, c: int, p: int) -> str:
    """Register (once) and name the tensor intrinsic of one 1 x tm tile of the int8 patch embedding:
    acc[0, j] += sum_{ci, kh, kw} image[ci, kh, kw] * weight[j, (ci*p + kh)*p + kw] over one patch
    (p % 4 == 0), implemented by `ev_patch_dsp_1x{tm}` of micro/gemm_dsp.h."""
    from tvm.s_tir import TensorIntrin

    name = f"ev_patch_dsp_1x{tm}_c{c}_p{p}"
    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, _patch_func(tm, c, p, None), _patch_func(tm, c, p, f"ev_patch_dsp_1x{tm}"))
    return name


def _patch_func(tm: int, c: int, p: int, call: str | None):
    """A[c, p, p] (the patch: int8 image region, strides sa_c, sa_h), B[tm, c*p*p] (int8 weight rows,
    stride sb), C[1, tm] (int32) and either the loop nest (call None: the description) or
    `call(C, sc, A, sa_c, sa_h, B, sb, c, p)`."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            ha, hb, hc = (T.arg(n, T.handle()) for n in "abc")
            sa_c, sa_h, sb, sc = (T.int32() for _ in range(4))
            A = T.match_buffer(ha, (c, p, p), "int8", offset_factor=1, strides=[sa_c, sa_h, 1])
            B = T.match_buffer(hb, (tm, c * p * p), "int8", offset_factor=1, strides=[sb, 1])
            C = T.match_buffer(hc, (1, tm), "int32", offset_factor=1, strides=[sc, 1])
            with T.sblock("root"):
                T.reads(C[0:1, 0:tm], A[0:c, 0:p, 0:p], B[0:tm, 0:c * p * p])
                T.writes(C[0:1, 0:tm])
                if call is not None:
                    T.evaluate(T.call_extern("void", call, C.access_ptr("rw"), sc, A.access_ptr("r"), sa_c, sa_h,
                                             B.access_ptr("r"), sb, c, p))
                else:
                    dims = [(1, "S"), (tm, "S"), (c, "R"), (p, "R"), (p, "R")]
                    with T.grid(1, tm, c, p, p) as loops:
                        with T.sblock("update"):
                            _, vj, vc, vh, vw = intrin_block_vars(T, loops, dims)
                            prod = T.Cast("int32", A[vc, vh, vw]) * T.Cast("int32", B[vj, (vc * p + vh) * p + vw])
                            T.buffer_store(C, C[0, vj] + prod, [0, vj])
    return ib.get()


KERNEL = register_kernel(KernelDef(op="patch_embed", traits=KernelTraits(), generate=generate,
                                   dtypes=("float32", "int8")))
