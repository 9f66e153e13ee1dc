"""Flash estimate of the generated code, without generating it (NAS calls this through the planner).

The firmware holds one C function per distinct kernel specialisation: functions are shared
between identical layers, their name encoding the op, dtypes, shapes (with the chunk's rows for
chained kernels; a shorter last chunk is another specialisation), code-relevant attrs and ISA
(docs/mcu-backend.md, "Kernels"). Per-layer numbers are arguments, so they cost call-site bytes
only. Estimate = sum over distinct functions of OP_CODE_BYTES + call sites + DRIVER_BYTES
(+ LIBM_EXP_BYTES when a float kernel needs expf).

Origin of the numbers: not measured on edgevit's own kernels yet (none were emitted when this was
written). They are scaled from TVM-NOTES.md's measurement (the runtime-free C of a tiny fp32 ViT,
dim 64, depth 4: 5.2 KB of kernel code for ~9 distinct functions, i.e. ~400-800 B per function at
-O2 for Thumb-2) and from typical CMSIS-NN int8 kernel sizes (requantizing GEMMs ~0.5-1 KB,
elementwise kernels ~0.1-0.3 KB). Calibrate them against `arm-none-eabi-size` of emitted firmware.
"""

from __future__ import annotations

# (op, dtype) -> bytes of one specialised function (Thumb-2, -O2); dtype "int" covers int8/int16.
OP_CODE_BYTES = {
    ("linear", "int"): 700, ("linear", "float32"): 420,
    ("attention", "int"): 1400, ("attention", "float32"): 900,
    ("layernorm", "int"): 800, ("layernorm", "float32"): 500,
    ("add", "int"): 300, ("add", "float32"): 120,
    ("add_pos", "int"): 300, ("add_pos", "float32"): 120,
    ("gelu", "int"): 80, ("gelu", "float32"): 400,
    ("patch_embed", "int"): 700, ("patch_embed", "float32"): 450,
    ("cls_concat", "int"): 120, ("cls_concat", "float32"): 120,
    ("pool", "int"): 250, ("pool", "float32"): 200,
    ("reshape", "int"): 0, ("reshape", "float32"): 0,
}
UNKNOWN_OP_BYTES = 800  # an op missing from the table
GELU_EPILOGUE_BYTES = 100  # linear with a fused GELU (LUT or erf polynomial)
DSP_EXTRA_BYTES = 200  # int8 GEMM-like kernels using SMLAD micro-kernels on DSP cores
DRIVER_BYTES = 1536  # vector table (~450 B on a Cortex-M7), reset/.data/.bss init, edgevit_run frame
LIBM_EXP_BYTES = 1000  # expf (float attention softmax, float GELU)
CALL_BYTES, ARG_BYTES, CHAIN_LOOP_BYTES = 12, 6, 32  # per call site, per argument, per chunk loop
_CODE_ATTRS = ("activation", "weight_bits", "mode", "heads", "head_dim", "patch")
_DSP_OPS = ("linear", "attention", "patch_embed")


def function_key(kernel, in_infos, out_infos, rows: int | None) -> tuple:
    """What a kernel function's code depends on: op, dtypes, shapes (first axis = `rows` when
    chunked), code-relevant attrs. Kernels with equal keys share one C function."""

    def shape(t):
        return (rows,) + tuple(t.shape[1:]) if rows is not None else tuple(t.shape)

    attrs = tuple((a, str(kernel.attrs[a])) for a in _CODE_ATTRS if a in kernel.attrs)
    return (kernel.op, tuple((t.dtype, shape(t)) for t in in_infos), tuple((t.dtype, shape(t)) for t in out_infos),
            attrs)


def function_bytes(kernel, dtype: str, dsp: bool) -> int:
    """Estimated bytes of one specialised function of `kernel` (table lookup plus epilogues)."""
    family = "float32" if dtype == "float32" else "int"
    size = OP_CODE_BYTES.get((kernel.op, family), UNKNOWN_OP_BYTES)
    if kernel.attrs.get("activation", "none") == "gelu":
        size += GELU_EPILOGUE_BYTES
    if dsp and family == "int" and kernel.op in _DSP_OPS:
        size += DSP_EXTRA_BYTES
    return size


def _call_bytes(kernel) -> int:
    """One call site: the call plus loading tensor, constant and (about two per const) int arguments."""
    args = len(kernel.inputs) + len(kernel.outputs) + 3 * len(kernel.consts) + 1
    return CALL_BYTES + ARG_BYTES * args


def estimate_code_bytes(program, steps, profile=None) -> int:
    """Code bytes of `program` run as `steps` (planner Steps): distinct functions + call sites +
    driver (+ libm expf for float programs that need it). `profile` adds DSP variants when its ISA
    has "dsp"."""
    dsp = profile is not None and "dsp" in getattr(profile, "isa", ())
    funcs: dict[tuple, int] = {}
    total, needs_exp = DRIVER_BYTES, False
    for step in steps:
        chunk, rows = step.chunk_rows, step.rows
        variants = [None] if chunk is None else sorted({chunk, rows % chunk} - {0})
        total += CHAIN_LOOP_BYTES if chunk is not None else 0
        for i in step.kernels:
            k = program.kernels[i]
            ins, outs = [program.tensors[t] for t in k.inputs], [program.tensors[t] for t in k.outputs]
            dtype = ins[0].dtype if ins else "float32"
            needs_exp |= dtype == "float32" and (k.op in ("attention", "gelu") or k.attrs.get("activation") == "gelu")
            for r in variants:
                funcs.setdefault(function_key(k, ins, outs, r), function_bytes(k, dtype, dsp))
                total += _call_bytes(k) if k.op != "reshape" else 0
    return total + sum(funcs.values()) + (LIBM_EXP_BYTES if needs_exp else 0)
