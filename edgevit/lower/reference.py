"""The NumPy reference interpreter: it defines what a Program means.

Runs kernels in order over batched arrays ([B, *per-image shape]), vectorised over the
batch, in chunks of `batch_size` images to bound memory; each intermediate tensor is
dropped right after its last use. Every kernel's runner is chosen by its dtype
(`edgevit.lower.ops.kernel_dtype`): float32 kernels run `run_float`, int8/int16 kernels
run `run_int8`, which is bit-exact (docs/integer-semantics.md): integer results do not depend
on the batch size or the chunking.

Thread counts: integer matmuls are exact (integers in floats, `exact_matmul`), so any BLAS thread
count gives the same results. Float32 matmuls are not: OpenBLAS rounds some GEMM shapes
differently with 2 threads than with 1, so a Program with float kernels runs with one BLAS thread
(`edgevit.threads.single_thread_blas`) and its outputs (the float test vectors of an artifact) are
the same bytes for any core count.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from edgevit.lower.intmath import qrange, round_half_up_array
from edgevit.lower.ops import get_op, kernel_dtype
from edgevit.lower.program import Program, ProgramError, resolve_consts
from edgevit.threads import single_thread_blas

CHUNK_BYTES = 64 << 20  # default memory budget per chunk of images
MAX_CHUNK = 256  # images per chunk at most (larger chunks gain nothing and leave the cache)


class ReferenceInterpreter:
    """A Program prepared for repeated runs (validated once, runners and constants resolved)."""

    def __init__(self, program: Program) -> None:
        program.validate()
        self.program = program
        self._last = program.last_uses()
        self._steps = []
        for i, k in enumerate(program.kernels):
            in_infos = [program.tensors[t] for t in k.inputs]
            run = get_op(k.op, kernel=k.name).runner(kernel_dtype(k, in_infos), kernel=k)
            dead = [t for t in k.inputs if self._last.get(t) == i]
            self._steps.append((k, run, resolve_consts(k, program.consts), sorted(set(dead))))
        self._has_float = any(program.tensors[t].dtype == "float32" for k in program.kernels for t in k.outputs)

    def peak_bytes_per_image(self) -> int:
        """Largest live set of tensors while any kernel runs (inputs + outputs), plus its scratch.

        Scratch is counted generously: attention's scores [H, N, N] twice, and a float64
        copy of the outputs (LayerNorm, GELU work in wider temporaries). Integer kernels work in
        int64 temporaries: 48 bytes per output element, and 64 bytes per score of one head.
        """
        p = self.program
        live = {t: p.tensors[t].nbytes for t in p.inputs}
        peak = sum(live.values())
        for k, _, _, dead in self._steps:
            outs = sum(p.tensors[t].nbytes for t in k.outputs)
            is_int = p.tensors[k.outputs[0]].dtype != "float32"
            scratch = 48 * sum(p.tensors[t].size for t in k.outputs) if is_int else 2 * outs
            if k.op == "attention":
                n = p.tensors[k.inputs[0]].shape[0]
                scratch += 64 * n * n if is_int else 8 * n * n * int(k.attrs["heads"])
            peak = max(peak, sum(live.values()) + outs + scratch)
            for t in dead:
                if t not in p.outputs:
                    live.pop(t, None)
            live.update({t: p.tensors[t].nbytes for t in k.outputs})
        return peak

    def default_batch_size(self) -> int:
        """Images per chunk so that `peak_bytes_per_image` times the chunk fits CHUNK_BYTES (<= MAX_CHUNK)."""
        return int(max(1, min(MAX_CHUNK, CHUNK_BYTES // max(self.peak_bytes_per_image(), 1))))

    def run_chunk(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on one chunk: name -> [B, *shape] arrays (already checked) -> outputs [B, *shape]."""
        if self._has_float:  # float32 kernels: one BLAS thread (module doc)
            with single_thread_blas():
                return self._run_chunk(inputs)
        return self._run_chunk(inputs)

    def _run_chunk(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = dict(inputs)
        for t in list(env):
            if t not in self._last:
                del env[t]  # an input nobody reads
        for k, run, consts, dead in self._steps:
            results = run(k, [env[t] for t in k.inputs], consts)
            for t in dead:
                if t not in self.program.outputs:
                    del env[t]
            for t, v in zip(k.outputs, results):
                env[t] = v
        return {t: env[t] for t in self.program.outputs}

    def __call__(self, inputs: Mapping[str, np.ndarray] | np.ndarray,
                 batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Run the whole batch in chunks; returns output name -> [B, *shape] arrays."""
        arrays = self.check_inputs(inputs)
        total = next(iter(arrays.values())).shape[0] if arrays else 1
        bs = int(batch_size or self.default_batch_size())
        if bs < 1:
            raise ProgramError(f"{self.program.name}: batch_size must be >= 1 (got {batch_size})")
        results = None
        for start in range(0, total, bs):
            chunk = self.run_chunk({n: a[start:start + bs] for n, a in arrays.items()})
            if results is None:
                results = {n: np.empty((total, *v.shape[1:]), dtype=v.dtype) for n, v in chunk.items()}
            for n, v in chunk.items():
                results[n][start:start + bs] = v
        if results is None:  # an empty batch
            infos = [self.program.tensors[t] for t in self.program.outputs]
            return {i.name: np.empty((0, *i.shape), dtype=i.dtype) for i in infos}
        return results

    def check_inputs(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Match inputs to the program's ([B, *shape] each, one batch size); float32 inputs cast."""
        p = self.program
        if isinstance(inputs, np.ndarray):
            if len(p.inputs) != 1:
                raise ProgramError(f"{p.name}: the program has inputs {p.inputs}; pass a dict name -> array")
            inputs = {p.inputs[0]: inputs}
        missing = [t for t in p.inputs if t not in inputs]
        extra = sorted(set(inputs) - set(p.inputs))
        if missing or extra:
            raise ProgramError(f"{p.name}: inputs missing {missing}, unknown {extra}; the program takes {p.inputs}")
        out, batch = {}, None
        for t in p.inputs:
            info, a = p.tensors[t], np.asarray(inputs[t])
            if a.shape[1:] != info.shape:
                raise ProgramError(f"{p.name}: input {t!r} has shape {list(a.shape)}; expected [B, "
                                   f"{', '.join(map(str, info.shape))}]")
            if batch is not None and a.shape[0] != batch:
                raise ProgramError(f"{p.name}: inputs have different batch sizes ({batch} and {a.shape[0]})")
            batch = a.shape[0]
            out[t] = _as_dtype(a, info.dtype, t, p.name)
        return out


def _as_dtype(a: np.ndarray, dtype: str, name: str, prog: str) -> np.ndarray:
    """Float inputs of a float32 tensor are cast; integer tensors need the exact dtype."""
    if str(a.dtype) == dtype:
        return a
    if dtype == "float32" and np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    raise ProgramError(f"{prog}: input {name!r} has dtype {a.dtype}; the program expects {dtype}")


def run_program(program: Program, inputs: Mapping[str, np.ndarray] | np.ndarray,
                batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Run `program` on batched inputs (name -> [B, *shape], or one array if it has one input).

    Returns output name -> [B, *shape] arrays of the outputs' dtypes. The batch is processed
    `batch_size` images at a time (default: sized to a ~64 MB working set).
    """
    return ReferenceInterpreter(program)(inputs, batch_size)


def quantize_input(program: Program, float_images: np.ndarray) -> np.ndarray:
    """Normalised float images [N, *shape] -> the integer input of `program` (its dtype, [N, *shape]).

    With the input's quantization (scale s, zero point z; TensorInfo.quant of the single input):
        q = clamp(round_half_up(x / s) + z, qmin, qmax)
    where x / s is one IEEE double division of the float32 value widened to double and
    round_half_up(v) = floor(v + 1/2) computed exactly (docs/integer-semantics.md "Program input").
    """
    if len(program.inputs) != 1:
        raise ProgramError(f"{program.name}: quantize_input needs a program with one input (got {program.inputs})")
    info = program.tensors[program.inputs[0]]
    if info.dtype == "float32" or not info.quant:
        raise ProgramError(f"{program.name}: input {info.name!r} is {info.dtype} without quantization; "
                           "only integer programs take quantized inputs")
    lo, hi = qrange(info.dtype)
    zp = int(info.quant["zero_point"])
    v = np.asarray(float_images, dtype=np.float32).astype(np.float64) / float(info.quant["scale"])
    v = np.clip(v, lo - zp - 1, hi - zp + 1)  # keeps the int64 conversion safe; the clamp below decides
    return np.clip(round_half_up_array(v) + zp, lo, hi).astype(info.dtype)


def predict(program: Program, images_uint8: np.ndarray, preprocess: Any = None,
            batch_size: int | None = None) -> np.ndarray:
    """uint8 images [N, C, H, W] -> the program's first output [N, *shape] (logits [N, K]).

    Images are normalised chunk by chunk with `preprocess` (a Normalization; default: the
    one recorded in program.meta["preprocess"]) in float32. A float32 program gets them as
    they are; an integer program (int8 `image`) gets them through `quantize_input`, and returns
    its integer logits (argmax = the prediction; see `predict_labels`).
    """
    from edgevit.data.normalize import Normalization

    if preprocess is None:
        if "preprocess" not in program.meta:
            raise ProgramError(f"{program.name}: no meta['preprocess'] in the program; pass `preprocess`")
        preprocess = Normalization.from_dict(program.meta["preprocess"])
    if len(program.inputs) != 1:
        raise ProgramError(f"{program.name}: predict needs one image input (got {program.inputs})")
    interp = ReferenceInterpreter(program)
    bs = int(batch_size or interp.default_batch_size())
    name, out_name = program.inputs[0], program.outputs[0]
    is_float = program.tensors[name].dtype == "float32"
    info = program.tensors[out_name]
    result = np.empty((len(images_uint8), *info.shape), dtype=info.dtype)
    for start in range(0, len(images_uint8), bs):
        x = preprocess.apply(np.asarray(images_uint8[start:start + bs]))
        if not is_float:
            x = quantize_input(program, x)
        result[start:start + bs] = interp.run_chunk(interp.check_inputs({name: x}))[out_name]
    return result


def predict_labels(program: Program, images_uint8: np.ndarray, preprocess: Any = None,
                   batch_size: int | None = None) -> np.ndarray:
    """uint8 images [N, C, H, W] -> predicted labels int64 [N]: argmax of `predict`'s logits [N, K].

    Ties go to the lowest class index (np.argmax), for float and integer logits alike.
    """
    logits = predict(program, images_uint8, preprocess, batch_size)
    return logits.reshape(len(logits), -1).argmax(axis=1).astype(np.int64)
