"""onnxruntime as the oracle of an ONNX import: the original graph and the imported torch model run
on the same seeded random inputs and must agree, or the import is refused.

Agreement is measured per input as max|torch - onnxruntime| / max|onnxruntime| over the logits of
that input (relative to the input's largest logit, so logits near zero do not blow it up); the
import passes when the largest of these is within `rtol`. Inputs are standard-normal images (the
graph takes normalised images), drawn from `numpy.random.default_rng(seed)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
import torch

from edgevit.errors import CheckpointError
from edgevit.model.importers.onnx_graph import ort_session

MAX_BATCH = 50  # images per run when the graph's batch size is dynamic ...
BATCH_BYTES = 256 << 20  # ... and its largest activation fits in this many bytes
ORACLE_SEED = 0


class ImportMismatchError(CheckpointError):
    """The imported model does not compute what the ONNX file computes in onnxruntime (exit 2)."""


@dataclass
class Agreement:
    """How closely the imported model matched onnxruntime: the largest absolute logit difference,
    the largest per-input relative difference, and how it was measured."""

    max_abs: float
    max_rel: float
    inputs: int
    batch: int
    seed: int
    rtol: float

    def to_dict(self) -> dict:
        """Plain dict for reports."""
        return asdict(self)


def compare_with_onnxruntime(onnx_model: onnx.ModelProto, model: torch.nn.Module, input_name: str,
                             output_name: str, image_shape: tuple[int, int, int], *, inputs: int = 100,
                             batch: int | None = None, rtol: float = 1e-4, seed: int = ORACLE_SEED,
                             source: str = "model", hint: str = "", bytes_per_image: int = 0) -> Agreement:
    """Run `onnx_model` (onnxruntime, CPU) and `model` (torch, eval) on `inputs` random images [C, H, W].

    `batch` is the graph's fixed batch size; None (dynamic) runs up to MAX_BATCH images at once, fewer
    when the largest activation (`bytes_per_image` per image) would exceed BATCH_BYTES. Raises
    ImportMismatchError with the differences (and `hint`) when the relative difference exceeds `rtol`.
    """
    session = ort_session(onnx_model, source)
    run_batch = batch or max(1, min(MAX_BATCH, inputs, BATCH_BYTES // max(bytes_per_image, 1)))
    rng = np.random.default_rng(seed)
    max_abs = max_rel = 0.0
    done = 0
    model = model.eval()
    while done < inputs:
        count = run_batch if batch else min(run_batch, inputs - done)
        images = rng.standard_normal((count, *image_shape)).astype(np.float32)
        try:
            (expected,) = session.run([output_name], {input_name: images})
        except Exception as e:  # onnxruntime's own exception types
            raise CheckpointError(f"{source}: onnxruntime failed on a batch of {count} images "
                                  f"({type(e).__name__}: {e})") from None
        with torch.inference_mode():
            got = model(torch.from_numpy(images)).numpy()
        expected = expected.reshape(count, -1).astype(np.float64)
        got = got.reshape(count, -1).astype(np.float64)
        if got.shape != expected.shape:
            raise ImportMismatchError(f"{source}: the imported model gives {got.shape[1]} logits per image, "
                                      f"onnxruntime gives {expected.shape[1]}")
        diff = np.abs(got - expected).max(axis=1)
        scale = np.maximum(np.abs(expected).max(axis=1), np.finfo(np.float32).tiny)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float((diff / scale).max()))
        done += count
    agreement = Agreement(max_abs, max_rel, done, run_batch, seed, rtol)
    if not max_rel <= rtol:  # also catches NaN
        raise ImportMismatchError(
            f"{source}: the imported model disagrees with onnxruntime: max abs difference {max_abs:.3g}, "
            f"max relative difference {max_rel:.3g} over {done} random inputs (allowed: {rtol:g} relative)."
            + (f" {hint}" if hint else "") + " The graph is not imported; please open an issue with the file's exporter.")
    return agreement
