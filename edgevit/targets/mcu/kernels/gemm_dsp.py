"""The Arm side of the MCU's int8 GEMM kernels: what linear.py and patch_embed.py of this package
plug into the generic kernels (edgevit/backend/kernels/gemm.py) through `GemmHooks`.

- `ARM_STEPS`: the fast requantize's int32 steps as the helpers of micro/gemm_dsp.h, `ev_smmla`
  (SMMLA) and `ev_ssat8` / `ev_ssat16` (SSAT; gcc does not find SSAT itself once the loop hoists
  the bounds), on cores with the DSP / saturation extensions, plain C with the same results elsewhere.
- On cores with the DSP extension ("dsp" in the profile's ISA; `uses_dsp`), each int8 output tile's
  whole reduction is ONE call of a micro/gemm_dsp.h micro-kernel (SXTB16 + SMLAD) holding the
  accumulators in its own locals: one call per 4-value step inside TIR's k loop got them spilled by
  gcc -O2 once inlined into the model driver (0.34-0.48 MACs/instruction on the M7 instead of
  0.6-0.7). `gemm_intrin` is linear's tensor intrinsic (DSP_TILE 2x2 in the main rectangle, 1x2 and
  1x1 in the leftover strips), `patch_intrin` patch_embed's (PATCH_TILE: one patch x 4 channels,
  leftover channels 1x1; the patch embedding is ~1% of a ViT's MACs). Their descriptions are the
  loop nests TVM's tensorize matches; their implementations the calls.
"""

from __future__ import annotations

from typing import Sequence

from edgevit.backend.kernels.base import KernelRequest
from edgevit.backend.kernels.gemm import Int32Steps

DSP_TILE = (2, 2)     # output tile (rows, cols) of linear's micro-kernel
PATCH_TILE = (1, 4)   # output tile (patches, channels) of patch_embed's micro-kernel
DSP_K = 4             # int8 values per 32-bit word
GEMM_DSP_HELPER = "gemm_dsp"  # micro/gemm_dsp.h of this package


def _smmla(a, b, c):
    """c + floor(a * b / 2^32): ev_smmla of micro/gemm_dsp.h (SMMLA)."""
    from tvm import tirx

    return tirx.call_pure_extern("int32", "ev_smmla", a, b, c)


def _ssat(x, out_dtype: str):
    """int32 x clamped to the int8 / int16 range: ev_ssat8 / ev_ssat16 of micro/gemm_dsp.h (SSAT)."""
    from tvm import tirx

    return tirx.call_pure_extern("int32", {"int8": "ev_ssat8", "int16": "ev_ssat16"}[out_dtype], x)


ARM_STEPS = Int32Steps(_smmla, _ssat, (GEMM_DSP_HELPER,))


def uses_dsp(req: KernelRequest, k: int) -> bool:
    """Whether a DSP micro-kernel applies to int8 operands with innermost reduction extent `k`: the
    fast schedule, a core with the DSP extension and k % 4 == 0 (runs of whole 32-bit words)."""
    return req.schedule == "fast" and "dsp" in req.isa and k % DSP_K == 0


# ---------------------------------------------------------------- linear's tensor intrinsic

def gemm_intrin(tn: int, tm: int, k: int) -> str:
    """Register (once) and name the tensor intrinsic C[tn, tm] += A[tn, k] . B[tm, k]^T (int8 -> int32,
    k % 4 == 0: a whole output tile's reduction) implemented by `ev_gemm_dsp_{tn}x{tm}` of micro/gemm_dsp.h."""
    from tvm.s_tir import TensorIntrin

    name = f"ev_gemm_dsp_{tn}x{tm}_k{k}"
    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, _dsp_func(tn, tm, k, None), _dsp_func(tn, tm, k, f"ev_gemm_dsp_{tn}x{tm}"))
    return name


def _dsp_func(tn: int, tm: int, k: int, call: str | None):
    """A[tn, k], B[tm, k] (int8, row strides sa, sb), C[tn, tm] (int32, stride sc) and either the
    reference loop nest (call None: the intrinsic's description) or `call(C, sc, A, sa, B, sb, k)`."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            handles = [T.arg(n, T.handle()) for n in "abc"]
            strides = [T.int32() for _ in range(3)]
            shapes, dtypes = [(tn, k), (tm, k), (tn, tm)], ["int8", "int8", "int32"]
            A, B, C = (T.match_buffer(h, shape, dt, offset_factor=1, strides=[st, 1])
                       for h, shape, dt, st in zip(handles, shapes, dtypes, strides))
            with T.sblock("root"):
                T.reads(C[0:tn, 0:tm], A[0:tn, 0:k], B[0:tm, 0:k])
                T.writes(C[0:tn, 0:tm])
                if call is not None:
                    T.evaluate(T.call_extern("void", call, C.access_ptr("rw"), strides[2], A.access_ptr("r"),
                                             strides[0], B.access_ptr("r"), strides[1], k))
                else:  # C[i, j] += A[i, t] * B[j, t]
                    with T.grid(tn, tm, k) as loops:
                        with T.sblock("update"):
                            vi, vj, vk = intrin_block_vars(T, loops, [(tn, "S"), (tm, "S"), (k, "R")])
                            prod = T.Cast("int32", A[vi, vk]) * T.Cast("int32", B[vj, vk])
                            T.buffer_store(C, C[vi, vj] + prod, [vi, vj])
    return ib.get()


# ---------------------------------------------------------------- patch_embed's tensor intrinsic

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


def intrin_block_vars(T, loops, dims: Sequence[tuple[int, str]]) -> list:
    """Inside a tensor intrinsic description's block: one block variable per (extent, "S" | "R") of
    `dims` bound to its loop, or 0 for a unit extent (the scheduled blocks have no variable there,
    so the pattern also matches 1 x tm tiles and single-channel reductions)."""
    live = [(loop, kind) for loop, (extent, kind) in zip(loops, dims) if extent > 1]
    bound = T.axis.remap("".join(kind for _, kind in live), [loop for loop, _ in live])
    bound = iter([bound] if len(live) == 1 else bound)  # remap of one variable returns it bare
    return [next(bound) if extent > 1 else 0 for extent, _ in dims]
