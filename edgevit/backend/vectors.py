"""Test vectors bundled with an artifact: inputs, the reference interpreter's outputs, labels.

Inputs are the first `count` images of a dataset split (the test split for `edgevit compile`)
normalised exactly as the model does (`Normalization.apply`, float32) and, for integer
programs, quantized with `edgevit.lower.reference.quantize_input`. `expected` is what
`run_program` computes for them: every backend must reproduce it bit-exactly (int8) or within
1e-4 relative (float32). Artifacts carry them as `vectors/{inputs,expected,labels}.npy`
(`vector_npy_files`, read back by `Artifact.load_vectors`); a target may also compile them into
its test program.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from edgevit.errors import DataError, UserInputError

RANDOM_SEED = 0


@dataclass(frozen=True)
class Vectors:
    """inputs [n, *input shape] (program input dtype), expected [n, *output shape] (output dtype),
    labels int64 [n] (-1: unknown), source: where the images came from (for the manifest)."""

    inputs: np.ndarray
    expected: np.ndarray
    labels: np.ndarray
    source: str

    @property
    def count(self) -> int:
        """Number of vectors."""
        return int(self.inputs.shape[0])

    @property
    def output_bytes(self) -> int:
        """Bytes of one expected output (output elements x element size; 0 without vectors)."""
        return int(self.expected[0].nbytes) if self.count else 0


def _io_names(program) -> tuple[str, str]:
    if len(program.inputs) != 1 or len(program.outputs) != 1:
        raise UserInputError(f"program {program.name!r}: compiled programs need exactly one input and one output "
                             f"(got inputs {program.inputs}, outputs {program.outputs})")
    return program.inputs[0], program.outputs[0]


def program_inputs(program, images_uint8: np.ndarray) -> np.ndarray:
    """uint8 images [n, C, H, W] -> the program's input [n, *shape]: normalised float32, and
    quantized with `quantize_input` for integer programs (docs/integer-semantics.md)."""
    from edgevit.data.normalize import Normalization
    from edgevit.lower.reference import quantize_input

    name, _ = _io_names(program)
    if "preprocess" not in program.meta:
        raise UserInputError(f"program {program.name!r} has no meta['preprocess'] (the input normalisation); "
                             "lower it from a checkpoint")
    info = program.tensors[name]
    images = np.asarray(images_uint8)
    if images.shape[1:] != info.shape:
        raise DataError(f"dataset images are {list(images.shape[1:])} but the model's input {name!r} is "
                        f"{list(info.shape)}; use the dataset the model was trained on (--data)")
    x = Normalization.from_dict(program.meta["preprocess"]).apply(images)
    return x if info.dtype == "float32" else quantize_input(program, x)


def make_vectors(program, images_uint8: np.ndarray, labels: np.ndarray, source: str) -> Vectors:
    """Vectors for uint8 images [n, C, H, W] with their labels int64 [n] (n >= 1): the program's
    inputs and the reference interpreter's outputs for them."""
    from edgevit.lower.reference import run_program

    if len(images_uint8) == 0:
        raise DataError(f"{source}: no images to make test vectors from")
    name, out = _io_names(program)
    inputs = program_inputs(program, images_uint8)
    expected = run_program(program, {name: inputs})[out]
    return Vectors(np.ascontiguousarray(inputs), np.ascontiguousarray(expected),
                   np.asarray(labels, dtype=np.int64).copy(), source)


def dataset_vectors(program, dataset, count: int) -> Vectors:
    """Vectors from the first `count` images of an ArrayDataset (all of them if it has fewer)."""
    n = min(int(count), len(dataset))
    return make_vectors(program, dataset.images[:n], dataset.labels[:n], f"{dataset.name}[0:{n}]")


def random_vectors(program, count: int, seed: int = RANDOM_SEED) -> Vectors:
    """Vectors from `count` uniformly random uint8 images (seeded; labels -1): for builds without
    a dataset, e.g. `Target.build` and tests of random architectures."""
    name, _ = _io_names(program)
    shape = program.tensors[name].shape
    images = np.random.default_rng(seed).integers(0, 256, (int(count), *shape), dtype=np.uint8)
    return make_vectors(program, images, np.full(int(count), -1), f"random uint8 images (seed {seed})")


def npy_bytes(array: np.ndarray) -> bytes:
    """The .npy file content of `array` (deterministic: same array, same bytes)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def vector_npy_files(vectors: Vectors) -> dict[str, bytes]:
    """Relative path -> content of vectors/inputs.npy, expected.npy and labels.npy."""
    return {"vectors/inputs.npy": npy_bytes(vectors.inputs), "vectors/expected.npy": npy_bytes(vectors.expected),
            "vectors/labels.npy": npy_bytes(vectors.labels)}
