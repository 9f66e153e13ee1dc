"""Synthetic datasets: deterministic uniformly random uint8 images, for models without a dataset.

    --data synthetic:3x224x224          3 channels, 224 x 224, labels in [0, 10)
    --data synthetic:3x224x224:1000     ... labels in [0, 1000)

Meant for benchmarks and tests of models with random weights (e.g. a DeiT-Tiny-shaped model): the
images give quantization something to calibrate on and test vectors something to run, and are the
same bytes on every machine (numpy PCG64, one fixed seed per split). The labels are random too, so
a top-1 against them means nothing; agreement with the reference interpreter does. Splits: train
256 images (the default calibration size of `quant`), val 16, test 64.
"""

from __future__ import annotations

import re

import numpy as np

from edgevit.data.dataset import ArrayDataset, DatasetSplits
from edgevit.errors import DataError

PREFIX = "synthetic:"
SPLIT_SIZES = {"train": 256, "val": 16, "test": 64}
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_CLASSES = 10
MAX_PIXELS = 4096 * 4096
_PATTERN = re.compile(r"^(\d+)x(\d+)x(\d+)(?::(\d+))?$")


def is_synthetic(name: str) -> bool:
    """True when `name` asks for a synthetic dataset (starts with "synthetic:", any case)."""
    return str(name).strip().lower().startswith(PREFIX)


def parse_synthetic(name: str) -> tuple[tuple[int, int, int], int]:
    """"synthetic:CxHxW[:K]" -> ((C, H, W), K); DataError naming the accepted form otherwise."""
    text = str(name).strip()
    m = _PATTERN.match(text[len(PREFIX):]) if is_synthetic(text) else None
    if m is None:
        raise DataError(f"--data {text!r}: a synthetic dataset is written synthetic:CxHxW[:CLASSES], "
                        "e.g. synthetic:3x224x224 or synthetic:3x224x224:1000")
    c, h, w = (int(g) for g in m.groups()[:3])
    k = int(m.group(4)) if m.group(4) is not None else DEFAULT_CLASSES
    if min(c, h, w, k) < 1 or h * w > MAX_PIXELS:
        raise DataError(f"--data {text!r}: channels, height, width and classes must be >= 1 and "
                        f"height x width <= {MAX_PIXELS}")
    return (c, h, w), k


def load_synthetic(name: str) -> DatasetSplits:
    """The synthetic dataset `name` ("synthetic:CxHxW[:K]"): train / val / test `ArrayDataset`s of
    uint8 [N, C, H, W] uniformly random images and int64 [N] random labels in [0, K), N per
    SPLIT_SIZES, each split from its own fixed seed (identical on every call and machine)."""
    shape, classes = parse_synthetic(name)
    base = f"synthetic-{'x'.join(str(d) for d in shape)}"
    names = [f"class{i}" for i in range(classes)]
    splits = {}
    for split, n in SPLIT_SIZES.items():
        rng = np.random.default_rng(SPLIT_SEEDS[split])
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        labels = rng.integers(0, classes, n).astype(np.int64)
        splits[split] = ArrayDataset(images, labels, names, f"{base}/{split}")
    return DatasetSplits(name=base, **splits)
