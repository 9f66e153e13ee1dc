"""Flash estimate of the generated code, without generating it (NAS calls this through the planner).

The firmware holds one C function per distinct kernel specialisation: functions are shared
between identical layers, their name encoding the op, dtypes, shapes (with the chunk's rows for
chained kernels; a shorter last chunk is another specialisation), code-relevant attrs and ISA
(docs/mcu-backend.md, "Kernels"). Per-layer numbers are arguments, so they cost call-site bytes
only. The estimate, for a Program of family f ("int": integer kernels, or "float32"):

    code = DRIVER[f] + SHRINK[f] * sum over distinct functions of function_bytes
           + CALL[f] * call sites + CHAIN[f] * chunk loops + the runtime routines the kernels need

- `function_bytes` is a sum of named terms of OP_CODE_BYTES (`function_terms`): for the GEMM
  kernels (linear, patch_embed) one term per output region of the "fast" schedule (a 2x2-tiled
  main rectangle, a bottom row strip when the rows are odd, a right column strip when the columns
  are odd; for linear each plus a per-k-unroll term) and the fused GELU epilogue; for attention a base, a
  per-head_dim term (the head_dim loops are unrolled) and a per-leftover-token term (token loops
  are unrolled by 4); for token_merge a base and a per-head_dim term; for add a base and a
  per-leftover-element term; other ops one number (layernorm: and its 1-row variant).
  add_pos compiles to the same code as add of the same shapes, which gcc folds (-fipa-icf): it
  shares add's function.
- SHRINK, CALL, DRIVER: in the firmware gcc inlines the functions called once and specialises
  (constprop) the others on their constant pointers, which shrinks them; each call site loads its
  pointer and integer arguments; DRIVER is edgevit_run's own code (input/output copies; the fit
  puts it at 0, absorbed by the call-site term).
- RUNTIME_BYTES: libgcc/libm routines pulled in by kernels (64-bit division for integer attention
  and layernorm; soft double arithmetic, expf, sqrt, erfcf for float kernels), each group counted
  once per Program.

"Code" is what the model adds to a firmware: measured as the flash (text + data) of the artifact's
firmware minus that of the same firmware with an empty model, minus the weights; start-up code,
the test main and the C library's I/O are the application's. The estimate is a pure,
deterministic function of the Program and its plan's steps (no code generation).

Calibration: scripts/calibrate_codesize.py, run 2026-11-22 on this machine (arm-none-eabi-gcc
-O2 with the stm32f746-disco flags: Cortex-M7, fpv5-sp-d16; apache-tvm 0.27 and the kernels of
that day) over fmnist-tiny int8 (quant pass) and float32 and 11 random specs (int8 and float32,
with chains, odd shapes, low rank, unfused GELU, token merging); its measured-vs-estimated table is
below the tables. Rerun it when kernels change (tests/targets/test_estimate_matches_artifact.py fails when
the estimate drifts beyond its tolerance). Other Thumb-2 cores (M4, M33, M55) give similar sizes;
with a double-precision FPU (fpv5-d16) the soft-double group is smaller than counted here.
"""

from __future__ import annotations

# ---- the calibrated tables (scripts/calibrate_codesize.py output, see the module docstring) ----------
# Named terms of the per-function model (bytes; "*u": per k-unroll step; "*hd": per head_dim
# element; "*tail": per leftover token/element of an unrolled-by-4 loop; "one_row": the 1-row
# variant's difference), least squares over the standalone size of every distinct function.
OP_CODE_BYTES: dict[str, float] = {
    "add/float32": 82.2, "add/float32*tail": 29.0, "add/int": 507.1, "add/int*tail": 77.8,
    "attention/float32": 304.3, "attention/float32*hd": 14.6, "attention/float32*tail": 2.3,
    "attention/float32/sizes": 28.8, "attention/int": 1121.1, "attention/int*hd": 11.3, "attention/int*tail": 129.5,
    "attention/int/sizes": -85.4, "cls_concat/float32": 64.7, "cls_concat/int": 69.5, "gelu/float32": 1472.0,
    "gelu/int": 70.0, "layernorm/float32": 268.2, "layernorm/float32/one_row": -36.2, "layernorm/int": 670.2,
    "layernorm/int/one_row": -64.7, "linear/float32/bottom": 72.9, "linear/float32/bottom*u": 35.8,
    "linear/float32/gelu": 117.8, "linear/float32/main": 163.3, "linear/float32/main*u": 44.0,
    "linear/float32/right": 44.4, "linear/float32/right*u": 12.1, "linear/int/bottom": 149.0,
    "linear/int/bottom*u": 44.9, "linear/int/gelu": 52.9, "linear/int/main": 284.6, "linear/int/main*u": 56.8,
    "linear/int/right": 146.0, "linear/int/right*u": 0.6, "patch_embed/float32/bottom": 308.2,
    "patch_embed/float32/main": 286.5, "patch_embed/float32/right": 93.5, "patch_embed/int/bottom": 117.6,
    "patch_embed/int/main": 411.8, "patch_embed/int/right": 150.2, "pool/float32/cls": 18.0,
    "pool/float32/mean": 88.0, "pool/int/cls": 20.0, "pool/int/mean": 172.0, "token_merge/float32": 1280.0,
    "token_merge/float32*hd": 25.0, "token_merge/int": 1143.3, "token_merge/int*hd": 25.2,
}
UNKNOWN_OP_BYTES = 1500.0  # an op the tables do not know

# Program-level terms per family: non-negative least squares of (measured code - runtime groups)
# on (1, sum of standalone function bytes, call sites, chunk loops).
PROGRAM_TERMS: dict[str, dict[str, float]] = {
    "float32": {"driver": 0.0, "shrink": 1.025, "call": 12.8, "chain": 26.2},
    "int": {"driver": 0.0, "shrink": 0.811, "call": 50.2, "chain": 0.0},
}

# Runtime routine groups: bytes, and the function tags (codesize.function_tags) that pull them in
# (a group is counted once when any of its tags is in the Program).
RUNTIME_BYTES: dict[str, tuple[int, tuple[str, ...]]] = {
    # the expf wrapper; __ieee754_expf and its constants
    "attention/float32+gelu/float32": (144, ("attention/float32", "gelu/float32")),
    "attention/float32+gelu/float32+linear/float32/gelu": (500, ("attention/float32", "gelu/float32",
                                                                 "linear/float32/gelu")),
    # soft double add/sub/mul/div and conversions; 64-bit division (__udivmoddi4)
    "attention/float32+layernorm/float32": (2088, ("attention/float32", "layernorm/float32")),
    "attention/int+layernorm/int": (702, ("attention/int", "layernorm/int")),
    # sqrt and double compares; erfcf, erff
    "layernorm/float32": (828, ("layernorm/float32",)),
    "linear/float32/gelu": (2034, ("linear/float32/gelu",)),
}

# Calibration result (2026-11-22): functions generated/estimated, measured vs estimated code, flash error:
# program                  funcs weights   code   flash    code est  error
# fmnist-tiny int8         12/12  170424   8072  178496        7994  -0.0%
# fmnist-tiny float32      12/12  556072   9752  565824        9712  -0.0%
# r16-d24 int8             12/12   20592   8456   29048        8039  -1.4%
# r16-d24 float32          12/12   43032  10200   53232       10085  -0.2%
# r12-d20 int8             11/11   22624   7432   30056        7319  -0.4%
# r12-d20 float32          11/11   45712   9368   55080        9274  -0.2%
# r8-d13 int8              12/12    7928   6920   14848        7157  +1.6%
# r8-d13 float32           12/12    7632   8984   16616        9213  +1.4%
# r28-d48 int8             12/12   80680   8136   88816        8408  +0.3%
# r28-d48 float32          12/12  242920  10136  253056       10165  +0.0%
# w8-d16 int8              11/11   21424   6600   28024        6728  +0.5%
# w8-d16 float32           11/11   44880   9048   53928        9087  +0.1%
# w10-d18 int8             18/18   25776   9928   35704       10071  +0.4%
# w10-d18 float32          18/18   58816  10584   69400       10763  +0.3%
# r12-d30 int8             12/12   28280   7304   35584        7377  +0.2%
# r12-d30 float32          12/12   68096   9368   77464        9302  -0.1%
# r14-d22-gelu int8        12/12   19168   6344   25512        6603  +1.0%
# r14-d22-gelu float32     12/12   38760   8088   46848        8214  +0.3%
# r20-d32-lowrank int8     14/14   25768   8136   33904        7956  -0.5%
# r20-d32-lowrank float32  14/14   54568  10008   64576       10019  +0.0%
# m12-d16-merged int8      33/33   17448  23368   40816       23333  -0.1%
# m12-d16-merged float32   33/33   29840  21856   51696       21923  +0.1%
# m16-d20-merged int8      23/23   17384  15688   33072       15567  -0.4%
# m16-d20-merged float32   23/23   33464  16160   49624       16046  -0.2%

_CODE_ATTRS = ("activation", "weight_bits", "mode", "heads", "head_dim", "patch")
_SAME_CODE = {"add_pos": "add"}  # ops whose function is gcc-folded into another op's of the same key


# ---- per-function model ----------------------------------------------------------------------------
def family_of(dtype: str) -> str:
    """ "float32" for float32 kernels, "int" for integer ones (int8/int16 activations)."""
    return "float32" if dtype == "float32" else "int"


def gemm_regions(rows: int, cols: int) -> list[str]:
    """Output regions of the fast GEMM schedule over rows x cols: "main" (2x2 tiles), "bottom"
    (the odd last row), "right" (the odd last column)."""
    main_rows, main_cols = rows - rows % 2, cols - cols % 2
    kinds = ["main"] if main_rows and main_cols else []
    if rows > main_rows and main_cols:
        kinds.append("bottom")
    if cols > main_cols:
        kinds.append("right")
    return kinds


def k_unroll(extent: int) -> int:
    """Unroll factor of the innermost reduction loop: all of it up to 4, else the largest of 4, 2
    (or 1) dividing it."""
    if extent <= 4:
        return extent
    return 4 if extent % 4 == 0 else 2 if extent % 2 == 0 else 1


def _gemm_terms(kernel, fam: str, rows: int, cols: int, extent: int | None) -> dict[str, float]:
    """Terms of a GEMM function: per fast-schedule region its base (and, given the reduction
    extent, per-k-unroll) term, and the GELU epilogue."""
    op = kernel.op
    terms: dict[str, float] = {}
    for kind in gemm_regions(rows, cols):
        terms[f"{op}/{fam}/{kind}"] = 1
        if extent is not None:
            terms[f"{op}/{fam}/{kind}*u"] = k_unroll(extent)
    if kernel.attrs.get("activation", "none") == "gelu":
        terms[f"{op}/{fam}/gelu"] = 1
    return terms


def function_terms(kernel, in_infos, out_infos, rows: int | None) -> dict[str, float]:
    """{term name: multiplier}: the function of `kernel` specialised for `rows` rows (None = all)
    costs sum(OP_CODE_BYTES[name] * multiplier) (`terms_bytes`)."""
    fam = family_of(in_infos[0].dtype if in_infos else "float32")
    op, n = kernel.op, rows if rows is not None else (in_infos[0].shape[0] if in_infos else 1)
    if op == "linear":
        return _gemm_terms(kernel, fam, n, out_infos[0].shape[-1], in_infos[0].shape[-1])
    if op == "patch_embed":  # one per model: too few samples for per-unroll terms
        return _gemm_terms(kernel, fam, out_infos[0].shape[0], out_infos[0].shape[-1], None)
    if op == "attention":
        terms = {f"attention/{fam}": 1, f"attention/{fam}*hd": int(kernel.attrs["head_dim"]),
                 f"attention/{fam}*tail": in_infos[0].shape[0] % 4}
        if len(in_infos) > 1:
            terms[f"attention/{fam}/sizes"] = 1
        return terms
    if op in ("add", "add_pos"):
        elements = n * (out_infos[0].size // out_infos[0].shape[0])
        return {f"add/{fam}": 1, f"add/{fam}*tail": elements % 4}
    if op == "layernorm":
        return {f"layernorm/{fam}": 1, f"layernorm/{fam}/one_row": int(n == 1)}
    if op == "pool":
        mode = "mean" if kernel.attrs.get("mode") == "mean" else "cls"  # "prefix": the same row copy as cls
        return {f"pool/{fam}/{mode}": 1}
    if op == "token_merge":
        return {f"token_merge/{fam}": 1, f"token_merge/{fam}*hd": int(kernel.attrs["head_dim"])}
    if op == "reshape":
        return {}
    return {f"{op}/{fam}": 1}


def terms_bytes(terms: dict[str, float], table: dict[str, float] | None = None) -> float:
    """Bytes of a term dict with `table` (default OP_CODE_BYTES); a base term missing there (an op
    never calibrated) costs UNKNOWN_OP_BYTES, a missing per-unit term nothing."""
    table = OP_CODE_BYTES if table is None else table
    total = 0.0
    for name, mult in terms.items():
        value = table.get(name)
        total += (value if value is not None else 0.0 if "*" in name else UNKNOWN_OP_BYTES) * mult
    return total


def function_bytes(kernel, in_infos, out_infos, rows: int | None = None) -> float:
    """Estimated standalone bytes of the function of `kernel` specialised for `rows` rows."""
    return terms_bytes(function_terms(kernel, in_infos, out_infos, rows))


def function_key(kernel, in_infos, out_infos, rows: int | None) -> tuple:
    """What a kernel function's code depends on: op, dtypes, shapes (first axis = `rows` when
    chunked), code-relevant attrs. Kernels with equal keys share one C function."""

    def shape(t):
        return (rows,) + tuple(t.shape[1:]) if rows is not None else tuple(t.shape)

    op = _SAME_CODE.get(kernel.op, kernel.op)
    ins = [(t.dtype, shape(t)) for t in in_infos]
    if kernel.op == "add_pos" and ins:  # the position table is add's second operand
        ins = [ins[0], ins[0]]
    attrs = tuple((a, str(kernel.attrs[a])) for a in _CODE_ATTRS if a in kernel.attrs)
    return (op, tuple(ins), tuple((t.dtype, shape(t)) for t in out_infos), attrs)


def function_tags(kernel, in_infos) -> tuple[str, ...]:
    """Tags naming the runtime routines a kernel's code may need: "op/family" (+ "op/family/gelu")."""
    fam = family_of(in_infos[0].dtype if in_infos else "float32")
    tags = (f"{kernel.op}/{fam}",)
    return tags + ((f"{kernel.op}/{fam}/gelu",) if kernel.attrs.get("activation", "none") == "gelu" else ())


def function_variants(step) -> list[int | None]:
    """The `rows` of the functions a plan step calls per kernel: None for a single kernel; for a
    chain the chunk's rows and, when rows % chunk_rows, the tail's rows."""
    if step.chunk_rows is None:
        return [None]
    return [r for r in (step.chunk_rows if step.rows >= step.chunk_rows else 0, step.rows % step.chunk_rows) if r]


# ---- per-program model ------------------------------------------------------------------------------
def program_family(program) -> str:
    """ "float32" when every kernel computes in float32, else "int"."""
    dtypes = {program.tensors[k.inputs[0]].dtype for k in program.kernels if k.inputs}
    return "float32" if dtypes <= {"float32"} else "int"


def code_summary(program, steps) -> dict:
    """What the code estimate counts: distinct functions {key: standalone bytes}, call sites,
    chunk loops and runtime tags of `program` run as `steps`."""
    funcs: dict[tuple, float] = {}
    calls = chains = 0
    tags: set[str] = set()
    for step in steps:
        chains += step.chunk_rows is not None
        for i in step.kernels:
            k = program.kernels[i]
            if k.op == "reshape":
                continue
            ins, outs = [program.tensors[t] for t in k.inputs], [program.tensors[t] for t in k.outputs]
            tags.update(function_tags(k, ins))
            for rows in function_variants(step):
                key = function_key(k, ins, outs, rows)
                if key not in funcs:
                    funcs[key] = function_bytes(k, ins, outs, rows)
                calls += 1
    return {"functions": funcs, "calls": calls, "chains": chains, "tags": tags}


def runtime_bytes(tags, groups: dict | None = None) -> int:
    """Bytes of the runtime routine groups (`groups`, default RUNTIME_BYTES) any of `tags` needs."""
    groups = RUNTIME_BYTES if groups is None else groups
    return sum(size for size, users in groups.values() if set(users) & set(tags))


def program_code_bytes(family: str, function_bytes_sum: float, calls: int, chains: int, tags,
                       terms: dict | None = None, groups: dict | None = None) -> float:
    """The per-program formula (module docstring) with PROGRAM_TERMS / RUNTIME_BYTES (or `terms`,
    `groups`: the calibration script evaluates fitted tables with it)."""
    p = (PROGRAM_TERMS if terms is None else terms)[family]
    return (p["driver"] + p["shrink"] * function_bytes_sum + p["call"] * calls + p["chain"] * chains
            + runtime_bytes(tags, groups))


def estimate_code_bytes(program, steps, profile=None) -> int:
    """Code bytes of `program` run as `steps` (planner Steps): see the module docstring. `profile`
    is accepted for future per-core tables (the tables are Cortex-M7 measurements)."""
    s = code_summary(program, steps)
    total = program_code_bytes(program_family(program), sum(s["functions"].values()), s["calls"], s["chains"],
                               s["tags"])
    return max(0, int(round(total)))
