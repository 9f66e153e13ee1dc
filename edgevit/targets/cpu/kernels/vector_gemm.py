"""The cpu target's GEMM schedule: register tiles of vector FMAs (or int8 dot products) over packed weights.

A GEMM kernel (edgevit/backend/kernels/gemm.py's `GemmSpec`: out[n, m] = epilogue(init(m) +
sum_k x(n, k) w(m, k))) is scheduled here the way CPU BLAS kernels are written:

- the weights are packed at compile time (`pack_columns`) into column panels of `CpuGemm.cols`
  (two or more vectors' worth) columns, k-major inside the panel: Wp[m // cb, k, m % cb] (float32,
  int8), or Wp[m // cb, k // 4, m % cb, k % 4] for the int8 dot-product instructions, zero-padded
  to whole panels, so that one k step of a panel is one contiguous vector load per vector;
- the output is covered by *regions* (`vector_regions`): the rectangle of whole `rows x cols` tiles,
  the leftover rows (one shorter tile per panel) and the leftover columns (a narrower tile); each
  region is one loop nest: column panels outside (the panel stays in L1/L2 while the row tiles
  stream by), row tiles inside, then per tile the k loop outside a `rows x cols` accumulator tile
  that LLVM keeps in vector registers: each x value is broadcast, each weight vector loaded once
  per k and used by every row (`rows` FMAs per load);
- with a dot-product intrinsic (`dot_intrin.py`: AVX-512 VNNI `vpdpbusd`, Arm `sdot`) the k loop
  goes by groups of 4 and each group of 4 x bytes times a 4 x lanes weight block is one
  instruction (TVM `tensorize`);
- the epilogue (bias, requantize, GELU) and the per-column values are vectorized over the tile's
  columns; the fused (panel, row tile) loop is a TVM parallel loop (the library's thread pool,
  runtime/tvm_backend.c) when the kernel has enough work (`PARALLEL_MIN_MACS`).

Tile sizes come from the vector ISA (`cpu_gemm`): AVX-512 16 float32 lanes, AVX2 8, NEON 4; the
register file decides the rows (x86-64 AVX-512 and aarch64 have 32 vector registers, AVX2 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgevit.backend.kernels.gemm import GemmSpec, Region, build_gemm, hide_init_reads
from edgevit.targets.cpu.kernels.dot_intrin import FAMILIES
from edgevit.targets.cpu.kernels.vector_isa import DOT_K, dot_family, lanes32

VNNI_OFFSET = FAMILIES["vnni"][2]  # vpdpbusd multiplies unsigned bytes: the kernels sum (x + 128) w
UNROLL_K_MAX = 16          # an innermost reduction axis of a multi-axis reduction (a patch row) is unrolled up to this
PARALLEL_MIN_MACS = 1 << 18  # below this a kernel runs on one thread (a launch costs a few microseconds)


@dataclass(frozen=True)
class CpuGemm:
    """The register tile of one GEMM kernel: `rows` x `cols` outputs, `lanes` per vector of the
    accumulator dtype, `dot` the int8 dot-product instruction family ("vnni", "sdot") or None."""

    rows: int
    cols: int
    lanes: int
    dot: str | None = None


def cpu_gemm(isa: Sequence[str], dtype: str, k: int) -> CpuGemm:
    """The tile for a GEMM of `dtype` ("float32" / "int8") with reduction length `k` on `isa`
    (kernels.kernel_isa): two vectors of columns (four on Arm, whose vectors are narrow), 6 rows on
    32-register ISAs (4 on aarch64, 3 with AVX2's 16 registers) — the accumulators, the weight
    vectors and a broadcast fit the register file; int8 uses the dot-product family when the ISA has
    one and k is a multiple of 4."""
    lanes = lanes32(isa)
    arm = "aarch64" in isa
    cols = lanes * (4 if arm else 2)
    rows = 4 if arm else (6 if lanes == 16 else 3)
    dot = dot_family(isa) if dtype == "int8" and k % DOT_K == 0 else None
    return CpuGemm(rows, cols, lanes, dot)


def pack_columns(w: np.ndarray, cols: int, dot: bool = False) -> np.ndarray:
    """Weights w [M, K] packed in panels of `cols` columns: [ceil(M/cols), K, cols] (k-major in a
    panel), or with `dot` [ceil(M/cols), K/4, cols, 4] (4 consecutive k of a column together, K % 4
    == 0); the columns past M are zero."""
    m, k = w.shape
    panels = -(-m // cols)
    padded = np.zeros((panels * cols, k), dtype=w.dtype)
    padded[:m] = w
    p = padded.reshape(panels, cols, k)
    if not dot:
        return np.ascontiguousarray(p.transpose(0, 2, 1))
    return np.ascontiguousarray(p.reshape(panels, cols, k // DOT_K, DOT_K).transpose(0, 2, 1, 3))


def pack_int8(w: np.ndarray, bias: np.ndarray, tile: CpuGemm) -> dict[str, np.ndarray]:
    """The packed constants of an int8 GEMM with weights w [M, K] and int32 bias [M]: "weight", the
    panels (`pack_columns`, in the dot-product layout when tile.dot), and "bias" padded with zeros
    to whole panels, for VNNI minus VNNI_OFFSET sum_k w[m, k] (the kernel sums (x + 128) w; the
    int32 wrap-around of the corrected bias is exact since the final accumulator fits in int32)."""
    b = np.asarray(bias).astype(np.int64)
    if tile.dot == "vnni":
        b = b - VNNI_OFFSET * w.astype(np.int64).sum(axis=1)
    b = np.concatenate([b, np.zeros(-len(b) % tile.cols, np.int64)])
    return {"weight": pack_columns(w, tile.cols, dot=tile.dot is not None), "bias": b.astype(np.int32)}


def vector_regions(rows: int, cols: int, tile: CpuGemm) -> list[Region]:
    """Cover a rows x cols output with regions of whole tiles: the main rectangle (tile.rows x
    tile.cols tiles), the leftover rows (rows % tile.rows, one tile per panel) and the leftover
    columns (cols % tile.cols wide, by tile.rows-row tiles and then the leftover rows)."""
    tn, tm = tile.rows, tile.cols
    main_rows, main_cols = rows - rows % tn, cols - cols % tm
    out = []
    for m0, width, tw in ((0, main_cols, tm), (main_cols, cols - main_cols, cols - main_cols)):
        if width == 0:
            continue
        if main_rows:
            out.append(Region(0, main_rows, m0, width, (tn, tw)))
        if rows > main_rows:
            out.append(Region(main_rows, rows - main_rows, m0, width, (rows - main_rows, tw)))
    return out


def gemm_macs(spec: GemmSpec) -> int:
    """Multiply-accumulates of the whole GEMM."""
    return spec.rows * spec.cols * int(np.prod(spec.reduce))


def vector_gemm_func(spec: GemmSpec, tile: CpuGemm, intrin: str | None = None):
    """The scheduled private PrimFunc of `spec` with the register tile `tile` (module docstring);
    `intrin`: the registered dot-product tensor intrinsic (dot_intrin.py) computing acc[0:lanes] +=
    over 4 k of one row, for specs whose innermost reduction axis is those 4 k (4 consecutive x
    values, 4 consecutive bytes of a packed weight column); None: vector FMAs."""
    import tvm
    from tvm import s_tir

    regions = vector_regions(spec.rows, spec.cols, tile)
    sch = s_tir.Schedule(tvm.IRModule({"main": build_gemm(spec, regions)}))
    parallel = gemm_macs(spec) >= PARALLEL_MIN_MACS
    for r, region in enumerate(regions):
        _schedule_region(sch, spec, r, region, tile, intrin, parallel)
    return sch.mod["main"]


def _schedule_region(sch, spec: GemmSpec, r: int, region: Region, tile: CpuGemm, intrin: str | None,
                     parallel: bool) -> None:
    """One region: (panel, row tile) loops, the accumulator tile at the row tile with the k loops
    outside the tile's rows and vector columns, then the vectorized epilogue."""
    tn, tm = region.tile
    out, acc = sch.get_sblock(f"out{r}"), sch.get_sblock(f"acc{r}")
    n, m = sch.get_loops(out)
    no, ni = sch.split(n, [None, tn])
    mo, mi = sch.split(m, [None, tm])
    sch.reorder(mo, no, ni, mi)
    sch.compute_at(acc, no, preserve_unit_loops=True)
    if spec.columns:
        sch.compute_at(sch.get_sblock(f"col{r}"), no, preserve_unit_loops=True)
    outer = sch.fuse(mo, no)
    if parallel and (region.rows // tn) * (region.cols // tm) > 1:
        sch.parallel(outer)  # before decompose_reduction: a bare update block is not "compact dataflow"
    ti, tj, *ks = sch.get_loops(acc)[1:]
    if intrin is not None and tm % tile.lanes == 0:
        *kouter, kk = ks
        tjo, tji = sch.split(tj, [None, tile.lanes])
        sch.reorder(*kouter, ti, tjo, tji, kk)
        init = sch.decompose_reduction(acc, kouter[0])
        hide_init_reads(sch, acc, spec.init_params)
        sch.tensorize(tji, intrin)
        sch.unroll(ti)
        sch.unroll(tjo)
    else:
        sch.reorder(*ks, ti, tj)
        sch.vectorize(tj)  # before decompose_reduction, for the same reason
        sch.unroll(ti)
        if len(ks) > 1 and spec.reduce[-1] <= UNROLL_K_MAX:
            sch.unroll(ks[-1])
        init = sch.decompose_reduction(acc, ks[0])
    i_rows, i_cols = sch.get_loops(init)[-2:]
    sch.unroll(i_rows)
    sch.vectorize(i_cols)
    sch.unroll(ni)
    sch.vectorize(mi)
    if spec.columns:
        sch.vectorize(sch.get_loops(sch.get_sblock(f"col{r}"))[-1])
