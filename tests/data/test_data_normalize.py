"""Normalization: apply (NumPy and torch), serialization, statistics."""

import json

import numpy as np
import pytest
import torch

from edgevit.data import ArrayDataset, Normalization, compute_normalization
from edgevit.errors import DataError


def test_apply_matches_formula():
    norm = Normalization(mean=(0.5,), std=(0.25,))
    x = np.array([0, 51, 255], np.uint8).reshape(1, 1, 1, 3)
    out = norm.apply(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.ravel(), [(0 - 0.5) / 0.25, (0.2 - 0.5) / 0.25, (1 - 0.5) / 0.25], rtol=1e-6)


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    norm = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    a = norm.apply(x)
    b = norm.apply_torch(torch.from_numpy(x))
    assert b.dtype == torch.float32
    np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-6)
    assert norm.apply(x[0]).shape == (3, 8, 8)


def test_apply_rejects_bad_input():
    norm = Normalization(mean=(0.5,), std=(0.5,))
    with pytest.raises(DataError, match="uint8"):
        norm.apply(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(DataError, match="1 channel"):
        norm.apply(np.zeros((1, 3, 2, 2), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        norm.apply_torch(torch.zeros(1, 1, 2, 2))


def test_dict_round_trip_through_json():
    norm = Normalization(mean=[0.2862], std=[0.3531])
    assert norm.mean == (0.2862,) and isinstance(norm.mean, tuple)
    d = json.loads(json.dumps(norm.to_dict()))
    assert d == {"mean": [0.2862], "std": [0.3531]}
    assert Normalization.from_dict(d) == norm
    with pytest.raises(Exception):
        norm.mean = (0.0,)  # frozen


@pytest.mark.parametrize(
    "d, message",
    [
        ({"mean": [0.5, 0.5], "std": [0.5]}, "one per channel"),
        ({"mean": [0.5], "std": [0.0]}, "> 0"),
        ({"mean": [0.5], "std": [-1]}, "> 0"),
        ({"mean": [0.5]}, "missing std"),
        ({"mean": [], "std": []}, "empty"),
        ({"mean": ["x"], "std": [1]}, "numbers"),
        ({"mean": [float("nan")], "std": [1]}, "finite"),
        ([0.5, 0.5], "mapping"),
    ],
)
def test_from_dict_validates(d, message):
    with pytest.raises(DataError, match=message):
        Normalization.from_dict(d)


def test_compute_normalization_per_channel():
    images = np.zeros((4, 2, 3, 3), np.uint8)
    images[:, 0] = 255
    images[:2, 1] = 0
    images[2:, 1] = 255
    ds = ArrayDataset(images, np.zeros(4, np.int64), ["a"])
    norm = compute_normalization(ds)
    assert norm.mean == (1.0, 0.5)
    assert norm.std == (1.0, 0.5)  # constant channel 0 gets std 1.0
    with pytest.raises(DataError, match="empty"):
        compute_normalization(ds.take(0))


def test_compute_normalization_rounds_to_4_decimals():
    rng = np.random.default_rng(1)
    ds = ArrayDataset(rng.integers(0, 256, (50, 1, 7, 7), dtype=np.uint8), np.zeros(50, np.int64), ["a"])
    norm = compute_normalization(ds)
    x = ds.images.astype(np.float64) / 255
    assert norm.mean[0] == round(x.mean(), 4) and norm.std[0] == round(x.std(), 4)
