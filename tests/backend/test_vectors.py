"""Test vectors: inputs prepared exactly like the reference path, expected outputs from run_program."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest

from edgevit.data import ArrayDataset
from edgevit.data.normalize import Normalization
from edgevit.errors import DataError
from edgevit.lower.from_model import lower_float
from edgevit.lower.reference import predict, quantize_input, run_program
from edgevit.model.vit import build_model
from edgevit.backend import vectors as vec
from edgevit.targets.mcu.vectors import vector_files
from tests.lower.int8_helpers import minmax_qmodel, randomise


@pytest.fixture(scope="module")
def programs():
    from edgevit.lower import lower_int8
    from edgevit.model.spec import ViTSpec

    spec = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=8, image_size=8, in_channels=1, patch_size=4,
                           embed_dim=8, num_classes=3, name="t")
    model = randomise(build_model(spec, seed=0), 0)
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    return lower_float(model), lower_int8(minmax_qmodel(model, x))


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)


@pytest.mark.parametrize("which", [0, 1])
def test_inputs_and_expected_follow_the_reference(programs, which) -> None:
    program = programs[which]
    imgs = images(5)
    v = vec.make_vectors(program, imgs, np.arange(5) % 3, "synthetic")
    norm = Normalization.from_dict(program.meta["preprocess"]).apply(imgs)
    want = norm if which == 0 else quantize_input(program, norm)
    np.testing.assert_array_equal(v.inputs, want)
    assert v.inputs.dtype == program.tensors["image"].dtype
    np.testing.assert_array_equal(v.expected, run_program(program, want)["logits"])
    np.testing.assert_array_equal(v.expected, predict(program, imgs))  # the interpreter's own image path
    assert v.labels.dtype == np.int64 and v.count == 5


def test_dataset_vectors_take_the_first_images_and_clamp_the_count(programs) -> None:
    ds = ArrayDataset(images(4), np.array([0, 1, 2, 0]), classes=["a", "b", "c"], name="tiny")
    v = vec.dataset_vectors(programs[1], ds, 10)
    assert v.count == 4 and v.source == "tiny[0:4]"
    np.testing.assert_array_equal(v.labels, ds.labels)
    assert vec.dataset_vectors(programs[1], ds, 2).count == 2


def test_wrong_image_shape_is_a_data_error(programs) -> None:
    bad = np.zeros((2, 1, 28, 28), np.uint8)
    with pytest.raises(DataError, match=r"dataset images are \[1, 28, 28\].*--data"):
        vec.make_vectors(programs[1], bad, np.zeros(2), "fmnist")


def test_random_vectors_are_deterministic(programs) -> None:
    a, b = vec.random_vectors(programs[1], 3), vec.random_vectors(programs[1], 3)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert (a.labels == -1).all() and "seed" in a.source


def test_files_round_trip_and_c_array_compiles(programs, tmp_path) -> None:
    v = vec.random_vectors(programs[1], 3)
    files = vector_files(v)
    assert sorted(files) == ["src/vectors.c", "src/vectors.h", "vectors/expected.npy", "vectors/inputs.npy",
                             "vectors/labels.npy"]
    np.testing.assert_array_equal(np.load(io.BytesIO(files["vectors/inputs.npy"])), v.inputs)
    np.testing.assert_array_equal(np.load(io.BytesIO(files["vectors/expected.npy"])), v.expected)
    assert files["vectors/inputs.npy"] == vector_files(v)["vectors/inputs.npy"]
    assert "#define EDGEVIT_VECTOR_COUNT 3" in files["src/vectors.h"]
    (tmp_path / "edgevit_model.h").write_text("#include <stdint.h>\n#define EDGEVIT_INPUT_SIZE 64\n"
                                              "typedef int8_t edgevit_in_t;\n")
    (tmp_path / "vectors.h").write_text(files["src/vectors.h"])
    (tmp_path / "vectors.c").write_text(files["src/vectors.c"])
    (tmp_path / "t.c").write_text('#include <stdio.h>\n#include "vectors.h"\nint main(void) { for (int i = 0; i < '
                                  'EDGEVIT_VECTOR_COUNT * EDGEVIT_INPUT_SIZE; i++) printf("%d ", '
                                  'edgevit_vector_inputs[i]); return 0; }\n')
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "t.c", "vectors.c", "-o", "t"], cwd=tmp_path,
                   check=True)
    out = subprocess.run(["./t"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    np.testing.assert_array_equal(np.array(out.split(), dtype=np.int64), v.inputs.reshape(-1))
