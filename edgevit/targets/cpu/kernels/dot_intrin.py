"""Int8 dot-product tensor intrinsics of the cpu target (TVM `TensorIntrin`s used by vector_gemm.py).

Each computes one row's accumulator vector over one group of 4 k: C[i] += x(A[k]) * B[i, k] for
i < lanes, k < 4, with A int8 [4] (4 consecutive x of the row), B int8 [lanes, 4] (a packed weight
block, vector_gemm.pack_columns) and C int32 [lanes]:

- "vnni" (AVX-512 VNNI, 16 lanes): x(a) = a + 128. `vpdpbusd` multiplies *unsigned* bytes by signed
  ones, so the 4 x bytes are broadcast and flipped with XOR 0x80 (= a + 128 as an unsigned byte);
  the description says exactly that, and linear.py folds -128 sum w into the bias. TVM's shipped
  `dot_16x4_vnni` passes <16 x i32> operands where LLVM 22 declares <64 x i8> and fails the
  verifier (../shared/TVM-NOTES.md); this one passes bytes. No workspace: one expression.
- "sdot" (Arm dot product, 4 lanes): x(a) = a, `sdot` of the broadcast 4 x bytes with the 16
  weight bytes.
"""

from __future__ import annotations

FAMILIES = {"vnni": (16, "llvm.x86.avx512.vpdpbusd.512", 128), "sdot": (4, "llvm.aarch64.neon.sdot.v4i32.v16i8", 0)}


def dot_intrin(family: str, lanes: int) -> str:
    """Register (once) and name the tensor intrinsic of `family` ("vnni" / "sdot") with `lanes`
    accumulator lanes (must be the family's: 16 / 4)."""
    from tvm.s_tir import TensorIntrin

    want, _, _ = FAMILIES[family]
    if lanes != want:
        raise ValueError(f"the {family} dot product has {want} lanes, not {lanes}")
    name = f"edgevit_dot_{lanes}x4_{family}"
    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, _func(family, describe=True), _func(family, describe=False))
    return name


def _func(family: str, describe: bool):
    """The intrinsic's description (the loop nest tensorize matches) or implementation (one instruction)."""
    from tvm import tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    lanes, llvm_name, offset = FAMILIES[family]
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            a, b, c = (T.arg(n, T.handle()) for n in "abc")
            A = T.match_buffer(a, (4,), "int8", offset_factor=1)
            B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
            C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
            with T.sblock("root"):
                T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
                T.writes(C[0:lanes])
                if describe:
                    with T.grid(lanes, 4) as (i, k):
                        with T.sblock("update"):
                            vi, vk = T.axis.remap("SR", [i, k])
                            x = tirx.Cast("int32", A[vk])
                            if offset:
                                x = x + tirx.const(offset, "int32")
                            T.buffer_store(C, C[vi] + x * tirx.Cast("int32", B[vi, vk]), [vi])
                else:
                    word = tirx.reinterpret("int32", A.vload([0], "int8x4"))
                    if offset:
                        word = tirx.bitwise_xor(word, tirx.const(-0x7F7F7F80, "int32"))  # 0x80808080
                    xs = tirx.reinterpret(f"int8x{4 * lanes}", tirx.Broadcast(word, lanes))
                    ws = B.vload([0, 0], f"int8x{4 * lanes}")
                    acc = C.vload([0], f"int32x{lanes}")
                    call = tirx.call_llvm_pure_intrin(f"int32x{lanes}", llvm_name,
                                                      acc, xs, ws)
                    T.buffer_store(C, call, [tirx.Ramp(tirx.const(0, "int32"), 1, lanes)])
    return ib.get()
