"""Input resolution: uint8 images resized down to a spec's image_size, the same way everywhere
(training, evaluation, compile's test vectors)."""

import numpy as np
import pytest
import torch

from edgevit.data import ArrayDataset, DatasetSplits
from edgevit.data.resize import fit_splits, resize_dataset, resize_images, resize_tensor
from edgevit.errors import UserInputError


def splits_of(images: np.ndarray) -> DatasetSplits:
    labels = np.arange(len(images)) % 2
    ds = ArrayDataset(images, labels, ["a", "b"], "syn/train")
    return DatasetSplits("syn", ds, ds.subset([0, 1], "syn/val"), ds.subset([2, 3], "syn/test"))


def test_same_size_is_the_input_itself() -> None:
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    assert resize_images(x, 8) is x
    t = torch.from_numpy(x)
    assert resize_tensor(t, 8) is t


def test_resized_images_are_uint8_deterministic_and_average_preserving() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (5, 2, 28, 28), dtype=np.uint8)
    y = resize_images(x, 14)
    assert y.shape == (5, 2, 14, 14) and y.dtype == np.uint8
    assert np.array_equal(y, resize_images(x, 14))
    assert np.array_equal(y, resize_tensor(torch.from_numpy(x), 14).numpy())  # numpy and torch paths agree
    # a constant image stays that constant; an image keeps its mean brightness (antialiasing
    # filters, it does not pick pixels)
    const = np.full((1, 1, 28, 28), 77, np.uint8)
    assert np.all(resize_images(const, 20) == 77)
    assert np.abs(y.astype(float).mean(axis=(2, 3)) - x.astype(float).mean(axis=(2, 3))).max() < 2.0
    assert y.std() < x.std()  # a low-pass filter: random pixels are smoothed


def test_fit_splits_resizes_every_split_and_keeps_labels() -> None:
    x = np.random.default_rng(2).integers(0, 256, (6, 1, 12, 12), dtype=np.uint8)
    splits = splits_of(x)
    fitted = fit_splits(splits, 1, 8, "spec.yaml")
    for name in ("train", "val", "test"):
        before, after = getattr(splits, name), getattr(fitted, name)
        assert after.image_shape == (1, 8, 8) and np.array_equal(after.labels, before.labels)
    assert fit_splits(splits, 1, 12, "spec.yaml") is splits
    assert resize_dataset(splits.train, 12) is splits.train


@pytest.mark.parametrize("channels,size,words", [(3, 8, "3 input channel"), (1, 16, "16x16")])
def test_fit_splits_errors_name_the_spec(channels, size, words) -> None:
    splits = splits_of(np.zeros((4, 1, 12, 12), np.uint8))
    with pytest.raises(UserInputError, match="spec.yaml") as e:
        fit_splits(splits, channels, size, "spec.yaml")
    assert words in str(e.value)
