"""Shared TIR building blocks of the GEMM-like kernels (`linear`, `patch_embed`).

A GEMM kernel computes, for output row n < rows and column m < cols,

    acc[n, m] = init(m) + sum_{k...} x(n, k...) * w(m, k...)       (int32, or float32; init 0 if None)
    col[m]    = per-column values, e.g. requantize constants          (computed once per column tile)
    out[n, m] = epilogue(acc[n, m], n, m, col[m])                    (bias, requantize, LUT, GELU)

`GemmSpec` describes one kernel: its C parameters (pointers become `T.decl_buffer`s, scalars
int32 variables), the reduction extents and the expressions above. `build_gemm` writes it as a
private TIR PrimFunc made of *regions*: rectangles of the output, each with its own blocks
(`col{r}` per-column values, `acc{r}` reduction, `out{r}` epilogue), so that the main rectangle
can be tiled by a tile that divides it exactly while the leftover row/column strips get a smaller
tile (`plan_regions`). `schedule_gemm` applies one of two schedules with `tvm.s_tir.Schedule`:

- "reference": plain loops; accumulator and column values computed at each output element.
- "fast": column tiles of tm outer, row tiles of tn inner; per column tile the column values are
  computed once (hoisted out of the row loop); per tn x tm output tile the reduction runs with
  the k loop outside and the tile unrolled inside (each x and w value loaded once per tile), the
  accumulators in a tn x tm local array that gcc keeps in registers. With `GemmSpec.micro_kernel`
  set, each tile's whole reduction is instead tensorized into ONE call of a C micro-kernel (a
  registered TVM tensor intrinsic) over `micro_tile` tiles.

A target adapts the generic int8 GEMM kernels through `GemmHooks` instead of copying them: its
kernel override (a file named like the generic one in its kernel package, see kernels/__init__.py)
calls the generic generator with the micro-kernel it has for the request (None: the unrolled
tile), the `Int32Steps` of the fast requantize (requant.py) and the facts these add to the C
function name.

Local buffers (accumulators, column values) keep TVM's default "global" scope: after compute_at
they are a few constant-size elements, which TVM 0.27 prints as C stack arrays
(`int32_t acc0_ptr[4];`) that gcc keeps in registers. (A "local"-scope buffer would need a device
attribute that private functions lack: "Unknown device id in current IR".) StorageRewrite merges
buffers of successive regions whatever their dtypes, through pointer casts that break C's strict
aliasing at -O2; so every local buffer of a kernel has the accumulator's dtype (Column values too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from edgevit.lower.intmath import qrange
from edgevit.backend.kernels.base import KernelRequest, func_name

FAST_TILE = (2, 2)    # output tile (rows, cols) of the plain fast schedule
UNROLL_K = 4          # k unrolling of the plain fast schedule (largest of 4, 2 dividing K)

Expr = Any
Bufs = dict


@dataclass(frozen=True)
class Param:
    """A C parameter: a pointer to `dtype` elements viewed as `shape`, or an int32 scalar (shape None)."""

    name: str
    dtype: str = "int32"
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Column:
    """A per-column value `name` of `dtype` (the accumulator's: see the module docstring),
    value(bufs, m) (e.g. a rounding constant from shift[m])."""

    name: str
    dtype: str
    value: Callable[[Bufs, Expr], Expr]


@dataclass(frozen=True)
class Region:
    """Output rectangle [n0, n0 + rows) x [m0, m0 + cols), computed with output tile `tile` (tn, tm)."""

    n0: int
    rows: int
    m0: int
    cols: int
    tile: tuple[int, int] = (1, 1)
    micro: bool = False


@dataclass(frozen=True)
class GemmSpec:
    """One GEMM kernel: out[n, m] = epilogue(init(m) + sum_k x(n, k) * w(m, k), n, m, col).

    rows/cols: output shape; reduce: reduction extents (e.g. (K,) or (C, p, p)); acc_dtype: int32
    or float32; out: the name of the output Param. The callables get the dict of buffers/scalars by
    Param name and TIR index expressions and return TIR expressions: x, w, init of acc_dtype (init
    None: zero; init_params: the Params it reads), epilogue of the output dtype; epilogue's `col`
    maps each Column name to its value at this column. micro_kernel(tn, tm): the name of a registered
    tensor intrinsic computing one tn x tm output tile's whole reduction (acc[tn, tm] += ...: a
    micro-kernel call) for the tile shapes `plan_regions` makes from micro_tile (the main tile),
    used by the "fast" schedule; None: the unrolled tile.
    """

    rows: int
    cols: int
    reduce: tuple[int, ...]
    acc_dtype: str
    out: str
    params: tuple[Param, ...]
    x: Callable[[Bufs, Expr, Sequence[Expr]], Expr]
    w: Callable[[Bufs, Expr, Sequence[Expr]], Expr]
    epilogue: Callable[[Bufs, Expr, Expr, Expr, dict], Expr]
    init: Callable[[Bufs, Expr], Expr] | None = None
    init_params: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    micro_kernel: Callable[[int, int], str] | None = None
    micro_tile: tuple[int, int] = FAST_TILE

    def __post_init__(self) -> None:
        odd = [c.name for c in self.columns if c.dtype != self.acc_dtype]
        if odd:
            raise ValueError(f"GEMM column values {odd} must have the accumulator dtype {self.acc_dtype} "
                             "(TVM merges local buffers across regions by pointer casts)")


@dataclass(frozen=True)
class Int32Steps:
    """How the fast requantize (requant.py) writes its exact int32 steps as TIR: smmla(a, b, c) =
    c + floor(a * b / 2^32) and ssat(x, out_dtype) = x clamped to the int8 / int16 range (int32
    expressions in and out), and the micro-kernel headers (KernelCode.helpers) that code needs."""

    smmla: Callable[[Expr, Expr, Expr], Expr]
    ssat: Callable[[Expr, str], Expr]
    helpers: tuple[str, ...] = ()


def plain_smmla(a, b, c):
    """c + floor(a * b / 2^32) for int32 TIR expressions, through one int64 product."""
    from tvm import tirx

    prod = tirx.Cast("int64", a) * tirx.Cast("int64", b)
    return c + tirx.Cast("int32", tirx.shift_right(prod, tirx.const(32, "int64")))


def plain_ssat(x, out_dtype: str):
    """int32 TIR `x` clamped to the range of out_dtype (int8 / int16)."""
    from tvm import tirx

    lo, hi = qrange(out_dtype)
    return tirx.max(tirx.min(x, tirx.const(hi, "int32")), tirx.const(lo, "int32"))


PLAIN_STEPS = Int32Steps(plain_smmla, plain_ssat)  # the generic kernels': plain C arithmetic


@dataclass(frozen=True)
class GemmHooks:
    """What a target's kernel override changes in a generic GEMM kernel for one request: the fast
    requantize's int32 steps, the micro-kernel computing a whole output tile's reduction
    (`GemmSpec.micro_kernel`, None: the unrolled tile) with its main tile, and the facts these add
    to the C function name (`gemm_func_name`). GemmHooks(): the generic code."""

    steps: Int32Steps = PLAIN_STEPS
    micro_kernel: Callable[[int, int], str] | None = None
    micro_tile: tuple[int, int] = FAST_TILE
    name_facts: dict[str, Any] = field(default_factory=dict)


GENERIC_HOOKS = GemmHooks()


# ---------------------------------------------------------------- request helpers (no TVM)

def gemm_func_name(req: KernelRequest, **code_facts: Any) -> str:
    """ev_<op>_<dtype>_<hash> over the op, dtypes, schedule and everything else the code depends on
    (`code_facts`: shapes, rows, weight bits, activation, requantize mode, GemmHooks.name_facts).
    Constant values and per-layer scalars are arguments, so they are not part of the name."""
    key = {"op": req.kernel.op, "in": [t.dtype for t in req.in_infos], "out": [t.dtype for t in req.out_infos],
           "schedule": req.schedule, **code_facts}
    return func_name(req.kernel.op, req.dtype, key)


def plan_regions(rows: int, cols: int, tile: tuple[int, int], micro: bool = False) -> list[Region]:
    """Cover a rows x cols output: the largest tile-aligned rectangle with `tile`, then the leftover
    bottom rows with a (1, tm) tile and the leftover right columns with (1, 1); all with `micro`."""
    tn, tm = tile
    main_rows, main_cols = rows - rows % tn, cols - cols % tm
    regions = []
    if main_rows and main_cols:
        regions.append(Region(0, main_rows, 0, main_cols, tile, micro))
    if rows > main_rows and main_cols:
        regions.append(Region(main_rows, rows - main_rows, 0, main_cols, (1, tm), micro))
    if cols > main_cols:
        regions.append(Region(0, rows, main_cols, cols - main_cols, (1, 1), micro))
    return regions


# ---------------------------------------------------------------- building the PrimFunc

def gemm_prim_func(spec: GemmSpec, schedule: str):
    """The scheduled private PrimFunc of `spec`: "reference" (one region, plain loops) or "fast"
    (FAST_TILE regions; with spec.micro_kernel, spec.micro_tile regions, each tile's reduction
    tensorized into the micro-kernel)."""
    if schedule == "reference":
        regions = [Region(0, spec.rows, 0, spec.cols)]
    elif spec.micro_kernel is not None:
        regions = plan_regions(spec.rows, spec.cols, spec.micro_tile, micro=True)
    else:
        regions = plan_regions(spec.rows, spec.cols, FAST_TILE)
    return schedule_gemm(build_gemm(spec, regions), spec, regions, schedule)


def build_gemm(spec: GemmSpec, regions: Sequence[Region]):
    """The unscheduled private PrimFunc (s_tir blocks) of `spec` over `regions`."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    with IRBuilder() as ib:
        with T.prim_func(is_private=True, s_tir=True):
            bufs = _declare_params(spec.params)
            with T.sblock("root"):
                for r, region in enumerate(regions):
                    _region_blocks(spec, bufs, r, region)
    return ib.get()


def _declare_params(params: Sequence[Param]) -> Bufs:
    """T.arg for every parameter (all first: T.arg must precede other frames), then a
    T.decl_buffer view of every pointer parameter."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    args = {p.name: T.arg(p.name, T.int32() if p.shape is None else T.handle(p.dtype)) for p in params}
    bufs = {}
    for p in params:
        if p.shape is None:
            bufs[p.name] = args[p.name]
        else:
            bufs[p.name] = IRBuilder.name(_buffer_name(p.name), T.decl_buffer(p.shape, p.dtype, data=args[p.name]))
    return bufs


def _region_blocks(spec: GemmSpec, bufs: Bufs, r: int, region: Region) -> None:
    """Blocks col{r} (column values), acc{r} (reduction into a region-local accumulator) and out{r}
    (epilogue, store into the output)."""
    from tvm import tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    cols = {c.name: IRBuilder.name(f"{c.name}{r}", T.sblock_alloc_buffer((region.cols,), c.dtype))
            for c in spec.columns}
    if cols:
        with T.serial(region.cols) as m:
            with T.sblock(f"col{r}"):
                vm = T.axis.spatial(region.cols, m)
                for c in spec.columns:
                    T.buffer_store(cols[c.name], c.value(bufs, region.m0 + vm), [vm])
    acc = IRBuilder.name(f"acc{r}", T.sblock_alloc_buffer((region.rows, region.cols), spec.acc_dtype))
    with T.grid(region.rows, region.cols, *spec.reduce) as loops:
        with T.sblock(f"acc{r}"):
            vn, vm, *vk = T.axis.remap("SS" + "R" * len(spec.reduce), loops)
            with T.init():
                init = tirx.const(0, spec.acc_dtype) if spec.init is None else spec.init(bufs, region.m0 + vm)
                T.buffer_store(acc, init, [vn, vm])
            term = spec.x(bufs, region.n0 + vn, vk) * spec.w(bufs, region.m0 + vm, vk)
            T.buffer_store(acc, acc[vn, vm] + term, [vn, vm])
    with T.grid(region.rows, region.cols) as (n, m):
        with T.sblock(f"out{r}"):
            vn, vm = T.axis.remap("SS", [n, m])
            col = {name: buf[vm] for name, buf in cols.items()}
            value = spec.epilogue(bufs, acc[vn, vm], region.n0 + vn, region.m0 + vm, col)
            T.buffer_store(bufs[spec.out], value, [region.n0 + vn, region.m0 + vm])


# ---------------------------------------------------------------- schedules

def schedule_gemm(func, spec: GemmSpec, regions: Sequence[Region], schedule: str):
    """Apply the "reference" or "fast" schedule to every region of `build_gemm`'s function;
    returns the scheduled PrimFunc, ready for `tvmc.lower_to_c`."""
    import tvm
    from tvm import s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    for r, region in enumerate(regions):
        if schedule == "reference":
            _schedule_plain(sch, spec, r)
        else:
            _schedule_tiled(sch, spec, r, region)
    return sch.mod["main"]


def _schedule_plain(sch, spec: GemmSpec, r: int) -> None:
    """Everything at the output element: for n, m: col = f(m); acc = init; for k: acc += x*w; out."""
    out, acc = sch.get_sblock(f"out{r}"), sch.get_sblock(f"acc{r}")
    _, m = sch.get_loops(out)
    sch.compute_at(acc, m, preserve_unit_loops=True)
    sch.decompose_reduction(acc, sch.get_loops(acc)[4])
    if spec.columns:
        sch.compute_at(sch.get_sblock(f"col{r}"), m, preserve_unit_loops=True)


def _schedule_tiled(sch, spec: GemmSpec, r: int, region: Region) -> None:
    """Column tiles outside, row tiles inside; column values per column tile; per output tile the
    k loops outside the unrolled tile, or one micro-kernel call for the tile's whole reduction."""
    tn, tm = region.tile
    out, acc = sch.get_sblock(f"out{r}"), sch.get_sblock(f"acc{r}")
    n, m = sch.get_loops(out)
    no, ni = sch.split(n, [None, tn])
    mo, mi = sch.split(m, [None, tm])
    sch.reorder(mo, no, mi, ni)
    sch.compute_at(acc, no, preserve_unit_loops=True)
    ti, tj, *ks = sch.get_loops(acc)[2:]
    if region.micro:
        init = sch.decompose_reduction(acc, ti)
        hide_init_reads(sch, acc, spec.init_params)
        sch.tensorize(ti, spec.micro_kernel(tn, tm))
    else:
        sch.reorder(*ks, ti, tj)
        init = sch.decompose_reduction(acc, ks[0])
        _unroll_k(sch, ks[-1], spec.reduce[-1])
        sch.unroll(ti)
        sch.unroll(tj)
    for loop in sch.get_loops(init)[2:] + [mi, ni]:
        sch.unroll(loop)
    if spec.columns:
        col = sch.get_sblock(f"col{r}")
        sch.compute_at(col, mo, preserve_unit_loops=True)
        sch.unroll(sch.get_loops(col)[-1])


def _unroll_k(sch, k_loop, extent: int) -> None:
    """Unroll the innermost reduction loop: fully up to UNROLL_K, else by the largest of UNROLL_K, 2
    dividing it (an unrolled even/odd pair also resolves the 4-bit weights' nibble select)."""
    if extent <= UNROLL_K:
        sch.unroll(k_loop)
        return
    for factor in (UNROLL_K, 2):
        if extent % factor == 0:
            sch.unroll(sch.split(k_loop, [None, factor])[1])
            return


def hide_init_reads(sch, update, init_params: Sequence[str]) -> None:
    """After decompose_reduction the update block still lists the init's reads (e.g. the bias);
    it no longer reads them, and the tensor intrinsic's pattern has no such read: drop them."""
    names = {_buffer_name(p) for p in init_params}
    hidden = [i for i, region in enumerate(sch.get(update).reads) if _region_name(region) in names]
    if hidden:
        sch.unsafe_hide_buffer_access(update, "read", hidden)


def _region_name(region) -> str:
    """Name of the buffer a block's read/write region refers to."""
    return region.source.name


def _buffer_name(param: str) -> str:
    """TIR name of the buffer view of pointer Param `param`."""
    return param.upper()
