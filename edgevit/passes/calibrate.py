"""Calibration: run a float Program on images and observe every tensor it computes.

`run_tapped` is a small variant of the reference interpreter's loop (same op runners, same
kernel order) that hands every tensor to a `tap(name, array)` callback as soon as it is
computed; a tap may return a replacement array. Two taps are built on it:

- `collect_stats`: per-tensor `TensorStats` (exact min/max, per-channel min/max/mean over
  the last axis, and a deterministic strided sample of at most `sample_cap` values for the
  percentile / MSE observers) over a calibration set;
- `simulate`: a NumPy fake-quant model of the int8 Program (every activation quantized and
  dequantized with its TensorQuant, weights rounded to their per-channel grid, softmax
  probabilities rounded to 1/255), used as a fast proxy for sensitivity measurements.

Thread counts: `run_tapped` runs with one BLAS thread (`edgevit.threads.single_thread_blas`). Its
float32 matmuls decide every activation scale, and OpenBLAS rounds a GEMM differently with 2
threads than with 1 for some shapes (it splits the reduction over K differently), so a multi-threaded
BLAS would make the scales, and every artifact byte after them, depend on the core count. The
statistics themselves are folded in a fixed order (per chunk, in image order; channel sums and
squares in float64 by NumPy's own, single-threaded reductions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgevit.lower.ops import get_op
from edgevit.lower.program import Program, resolve_consts
from edgevit.passes.observers import fake_quant
from edgevit.lower.qconfig import QuantConfig
from edgevit.threads import single_thread_blas

Tap = Callable[[str, np.ndarray], "np.ndarray | None"]
SAMPLE_CAP = 1 << 18
CHUNK = 128


@dataclass
class TensorStats:
    """Statistics of one tensor over the calibration images (channels = last axis)."""

    name: str
    total: int  # elements expected over the whole calibration set (sets the sampling stride)
    min: float = np.inf
    max: float = -np.inf
    ch_min: np.ndarray | None = None
    ch_max: np.ndarray | None = None
    ch_sum: np.ndarray | None = None
    ch_sq: np.ndarray | None = None
    rows: int = 0
    seen: int = 0
    parts: list = field(default_factory=list)
    sample_cap: int = SAMPLE_CAP
    gram: np.ndarray | None = None  # sum of x x^T over rows [C, C] (float64), when asked for
    want_gram: bool = False

    def update(self, a: np.ndarray) -> None:
        """Fold a batched array [B, ..., C] into the statistics."""
        flat = a.reshape(-1, a.shape[-1])
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        self.ch_min = lo if self.ch_min is None else np.minimum(self.ch_min, lo)
        self.ch_max = hi if self.ch_max is None else np.maximum(self.ch_max, hi)
        s = flat.sum(axis=0, dtype=np.float64)
        self.ch_sum = s if self.ch_sum is None else self.ch_sum + s
        sq = np.einsum("ij,ij->j", flat, flat, dtype=np.float64)
        self.ch_sq = sq if self.ch_sq is None else self.ch_sq + sq
        if self.want_gram:
            f64 = flat.astype(np.float64)
            self.gram = f64.T @ f64 if self.gram is None else self.gram + f64.T @ f64
        self.rows += flat.shape[0]
        self.min, self.max = min(self.min, float(lo.min())), max(self.max, float(hi.max()))
        stride = max(1, -(-self.total // self.sample_cap))
        v = a.reshape(-1)
        self.parts.append(v[(-self.seen) % stride::stride].copy())
        self.seen += v.size

    @property
    def sample(self) -> np.ndarray:
        """The strided sample (float32, at most ~sample_cap values)."""
        if len(self.parts) != 1:
            self.parts = [np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)]
        return self.parts[0]

    @property
    def ch_mean(self) -> np.ndarray:
        """Per-channel mean over all rows."""
        return self.ch_sum / max(self.rows, 1)


def run_tapped(program: Program, images: np.ndarray, preprocess, tap: Tap | None = None,
               consts: dict[str, np.ndarray] | None = None, batch_size: int = CHUNK,
               quant_softmax: bool = False) -> np.ndarray:
    """Run `program` (float32) on uint8 images [N, C, H, W]; return the first output [N, ...].

    `tap(name, array)` sees every tensor (the normalised `image` too) and may return a
    replacement; `consts` overrides the program's constants; `quant_softmax` rounds the
    attention probabilities to multiples of 1/255 as the int8 kernel does.
    """
    consts = program.consts if consts is None else consts
    last = program.last_uses()
    steps = [(k, _runner(k, quant_softmax), resolve_consts(k, consts)) for k in program.kernels]
    out_name, results = program.outputs[0], []
    with single_thread_blas():  # the same float32 rounding for any core count (module doc)
        for start in range(0, len(images), batch_size):
            env = {program.inputs[0]: preprocess.apply(np.asarray(images[start:start + batch_size]))}
            _apply_tap(tap, env, program.inputs[0])
            for i, (k, run, kc) in enumerate(steps):
                for t, v in zip(k.outputs, run(k, [env[t] for t in k.inputs], kc)):
                    env[t] = v
                    _apply_tap(tap, env, t)
                for t in k.inputs:
                    if last.get(t) == i and t not in program.outputs:
                        env.pop(t, None)
            results.append(env[out_name])
    return np.concatenate(results) if results else np.zeros((0, *program.tensors[out_name].shape), np.float32)


def _apply_tap(tap: Tap | None, env: dict[str, np.ndarray], name: str) -> None:
    if tap is not None:
        new = tap(name, env[name])
        if new is not None:
            env[name] = new


def _runner(kernel, quant_softmax: bool):
    if quant_softmax and kernel.op == "attention":
        return _attention_quant_softmax
    return get_op(kernel.op, kernel=kernel.name).runner("float32", kernel=kernel)


def _attention_quant_softmax(kernel, inputs, consts):
    """The float attention with probabilities rounded to k/255 (the int8 kernel's uint8 softmax)."""
    qkv = inputs[0]
    b, n, _ = qkv.shape
    h, hd = int(kernel.attrs["heads"]), int(kernel.attrs["head_dim"])
    q, k, v = qkv.reshape(b, n, 3, h, hd).transpose(2, 0, 3, 1, 4)
    s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(kernel.attrs["scale"])
    if len(inputs) > 1:  # token sizes: proportional attention
        s += np.log(inputs[1].astype(np.float32))[:, None, None, :]
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    p = np.minimum(np.floor(s * (255.0 / s.sum(axis=-1, keepdims=True)) + 0.5), 255.0) / np.float32(255.0)
    o = p.astype(np.float32) @ v
    return [np.ascontiguousarray(o.transpose(0, 2, 1, 3)).reshape(b, n, h * hd)]


def collect_stats(program: Program, images: np.ndarray, preprocess, sample_cap: int = SAMPLE_CAP,
                  consts: dict[str, np.ndarray] | None = None, names=None, gram: bool = False,
                  progress: Callable[[int], None] | None = None) -> dict[str, TensorStats]:
    """TensorStats of the tensors of `program` (all, or those in `names`) over uint8 `images`.

    `consts` overrides the program's constants (e.g. weights already rounded to their grid);
    `gram` also accumulates each tensor's channel Gram matrix (for GPTQ). `progress(k)` is
    called after each chunk of k images.
    """
    n = len(images)
    stats = {t: TensorStats(t, n * info.size, sample_cap=sample_cap, want_gram=gram)
             for t, info in program.tensors.items() if names is None or t in names}

    def tap(name: str, a: np.ndarray) -> None:
        if name in stats:
            stats[name].update(a)
        if progress is not None and name == program.outputs[0]:
            progress(a.shape[0])

    run_tapped(program, images, preprocess, tap, consts=consts)
    return stats


def quantized_weights(program: Program, config: QuantConfig) -> dict[str, np.ndarray]:
    """The program's constants with every linear / patch-embedding weight rounded to its grid.

    Symmetric per output channel (row), scale = max|w| / qmax, qmax 127 (8-bit) or 7 (4-bit).
    """
    consts = dict(program.consts)
    for k in program.kernels:
        if k.op in ("linear", "patch_embed"):
            name = k.consts["weight"]
            consts[name] = fake_quant_weight(consts[name], config.bits_of(name))
    return consts


def fake_quant_weight(w: np.ndarray, bits: int) -> np.ndarray:
    """Per-row symmetric quantize-dequantize of a weight [M, K] with 2^(bits-1) - 1 levels each side."""
    qmax = (1 << (bits - 1)) - 1
    scale = np.abs(w).max(axis=1, keepdims=True) / qmax
    scale[scale == 0] = 1.0
    return (np.clip(np.floor(w / scale + 0.5), -qmax, qmax) * scale).astype(np.float32)


def simulate(program: Program, config: QuantConfig, images: np.ndarray, preprocess,
             batch_size: int = CHUNK) -> np.ndarray:
    """Logits of the fake-quant model of `config` on uint8 images (float32 [N, K])."""
    acts = config.activations

    def tap(name: str, a: np.ndarray):
        return fake_quant(a, acts[name]) if name in acts else None

    return run_tapped(program, images, preprocess, tap, consts=quantized_weights(program, config),
                      batch_size=batch_size, quant_softmax=True)
