"""Helpers for the streamed-run tests: a small int8 MCU artifact (a random 8x8 ViT, no C sources:
the boards in these tests are Python), a .npz data set for it, and board models.

    art = stream_artifact(tmp_path)          # manifest (mcu target: host, qemu, serial), vectors, reference/
    data = stream_dataset(tmp_path, 300)     # .npz with 300 test images of 1x8x8
    model = reference_model(load_program(load_artifact(art)))   # bytes -> bytes, what the firmware computes
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgevit.backend.artifact_program import program_files
from edgevit.backend.artifact_write import seal, write_atomically
from edgevit.backend.manifest import program_summary, reference_top1
from edgevit.backend.target import get_target
from edgevit.backend.vectors import dataset_vectors, vector_npy_files
from edgevit.data import load_dataset
from edgevit.lower import lower_int8
from edgevit.lower.reference import run_program
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.model.vit import build_model
from edgevit.profiles.profile import load_profile
from tests.lower.int8_helpers import minmax_qmodel, randomise

PROFILE = "stm32f746-disco"
SIZE = 8
CLASSES = 4


def tiny_int8_program(seed: int = 3):
    """An int8 Program of a random 2-block ViT on 1x8x8 images (4 classes)."""
    blocks = (BlockSpec(heads=2, head_dim=4, mlp_hidden=16),) * 2
    spec = ViTSpec(image_size=SIZE, in_channels=1, patch_size=2, embed_dim=8, num_classes=CLASSES, blocks=blocks,
                   name="stream-tiny")
    model = randomise(build_model(spec, seed=seed), seed)
    x = np.random.default_rng(seed).standard_normal((32, 1, SIZE, SIZE)).astype(np.float32)
    return lower_int8(minmax_qmodel(model, x))


def stream_dataset(tmp_path: Path, test_images: int = 300, name: str = "stream-data.npz") -> Path:
    """An .npz data set of 1x8x8 uint8 images: 16 train, `test_images` test (seeded)."""
    rng = np.random.default_rng(11)
    path = tmp_path / name
    np.savez(path, x_train=rng.integers(0, 256, (16, SIZE, SIZE), dtype=np.uint8),
             y_train=rng.integers(0, CLASSES, 16), x_test=rng.integers(0, 256, (test_images, SIZE, SIZE), dtype=np.uint8),
             y_test=rng.integers(0, CLASSES, test_images))
    return path


def stream_artifact(tmp_path: Path, program=None, bundled: int = 6, name: str = "art") -> Path:
    """An artifact directory for `program` (default tiny_int8_program()) and the stm32f746-disco profile:
    manifest, `bundled` vectors from the stream_dataset test split, reference/ files; no sources."""
    program = program or tiny_int8_program()
    profile = load_profile(PROFILE)
    data = stream_dataset(tmp_path, 64, name=f"{name}-vectors.npz")
    vectors = dataset_vectors(program, load_dataset(str(data)).test, bundled)
    manifest = {"profile": profile.model_dump(mode="json"), "program": program_summary(program),
                "vectors": {"count": vectors.count, "source": vectors.source, "reference_top1": reference_top1(vectors)}}
    files = {"manifest.json": json.dumps(manifest), **vector_npy_files(vectors), **program_files(program)}
    out = tmp_path / name
    write_atomically(out, seal(files, get_target("mcu"), profile), force=True)
    return out


def reference_model(program):
    """input bytes -> output bytes: the reference interpreter on one input (what correct firmware computes)."""
    info = program.tensors[program.inputs[0]]

    def model(data: bytes) -> bytes:
        x = np.frombuffer(data, dtype=info.dtype).reshape(1, *info.shape)
        return run_program(program, {program.inputs[0]: x})[program.outputs[0]][0].tobytes()

    return model


def bundled_inputs(art: Path) -> list[bytes]:
    """The artifact's bundled input vectors as bytes (what its firmware compiles in)."""
    return [row.tobytes() for row in np.load(art / "vectors" / "inputs.npy")]
