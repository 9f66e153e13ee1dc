"""Synthetic datasets (edgevit/data/synthetic.py): name parsing, shapes, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.data import load_dataset
from edgevit.data.synthetic import SPLIT_SIZES, parse_synthetic
from edgevit.errors import DataError


def test_parse_synthetic_reads_shape_and_classes() -> None:
    assert parse_synthetic("synthetic:3x224x224") == ((3, 224, 224), 10)
    assert parse_synthetic(" Synthetic:1x28x28:1000 ") == ((1, 28, 28), 1000)


@pytest.mark.parametrize("name", ["synthetic:", "synthetic:3x224", "synthetic:0x8x8", "synthetic:3x8x8:0",
                                  "synthetic:3x8x8:k", "synthetic:1x9999x9999"])
def test_parse_synthetic_rejects_bad_names(name: str) -> None:
    with pytest.raises(DataError, match="synthetic"):
        parse_synthetic(name)


def test_load_dataset_gives_deterministic_random_splits() -> None:
    a = load_dataset("synthetic:3x8x6:5")
    b = load_dataset("synthetic:3x8x6:5")
    assert a.sizes() == SPLIT_SIZES
    assert a.train.images.shape == (SPLIT_SIZES["train"], 3, 8, 6) and a.train.images.dtype == np.uint8
    assert a.test.num_classes == 5 and a.test.labels.max() < 5
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.get(split).images, b.get(split).images)
        np.testing.assert_array_equal(a.get(split).labels, b.get(split).labels)
    assert not np.array_equal(a.train.images[:16], a.val.images)  # each split has its own seed
    assert 100 < a.train.images.mean() < 155  # uniform over 0..255
