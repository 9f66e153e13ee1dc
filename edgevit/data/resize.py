"""Input resolution: resize uint8 images to the square size a spec expects.

A spec's `image_size` may be smaller than the dataset's images (NAS searches the input
resolution). The model's input is then the image resized here: antialiased bilinear
(torch `interpolate`, `antialias=True`), rounded half-up and clamped back to uint8, so the
whole uint8 -> normalise -> int8 pipeline is unchanged and the device gets the same bytes the
reference interpreter saw. Deterministic: the same images give the same bytes on every run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from edgevit.data.dataset import ArrayDataset, DatasetSplits
from edgevit.errors import UserInputError

_CHUNK = 4096


def resize_tensor(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 tensor [N, C, H, W] -> uint8 [N, C, size, size]; the input itself when already that size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear",
                                        align_corners=False, antialias=True)
    return torch.floor(x + 0.5).clamp_(0, 255).to(torch.uint8)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size] (see the module doc); the input when already that size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = [resize_tensor(torch.from_numpy(np.ascontiguousarray(images[i:i + _CHUNK])), size).numpy()
           for i in range(0, len(images), _CHUNK)]
    return np.concatenate(out) if out else np.zeros((0, images.shape[1], size, size), np.uint8)


def resize_dataset(ds: ArrayDataset, size: int) -> ArrayDataset:
    """`ds` with every image resized to size x size (same labels and classes)."""
    if ds.image_shape[1:] == (size, size):
        return ds
    return ArrayDataset(resize_images(ds.images, size), ds.labels, list(ds.classes), f"{ds.name}@{size}px")


def fit_splits(splits: DatasetSplits, channels: int, size: int, source: str) -> DatasetSplits:
    """Splits whose images are [channels, size, size]: resized down when the dataset is larger.

    UserInputError (naming `source`, the spec) if the channels differ, the images are not square,
    or the spec asks for a larger resolution than the data has (no upsampling).
    """
    c, h, w = splits.train.image_shape
    if c != channels:
        raise UserInputError(f"{source}: spec expects {channels} input channel(s) but the data has {c}")
    if (h, w) == (size, size):
        return splits
    if h != w or size > h:
        raise UserInputError(f"{source}: spec expects {size}x{size} images but the data has {h}x{w}; "
                             "edgevit only resizes square images down (set image_size <= the data's size)")
    return replace(splits, **{name: resize_dataset(getattr(splits, name), size)
                              for name in ("train", "val", "test")})


def load_for_spec(data: str, spec, root=None, source: str | None = None) -> DatasetSplits:
    """`load_dataset(data, root)` with images fitted to `spec` ([in_channels, image_size, image_size])."""
    from edgevit.data import load_dataset

    splits = load_dataset(data, root=root)
    return fit_splits(splits, spec.in_channels, spec.image_size, source or spec.name or "spec")
