"""Per-channel input normalization: (x / 255 - mean) / std.

A `Normalization` is stored with every model checkpoint (`to_dict` / `from_dict`) so
that training, evaluation and the deployed firmware preprocess images identically.
mean and std are in units of [0, 1] pixel values, one entry per channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from edgevit.errors import DataError

from edgevit.data.dataset import ArrayDataset

_DECIMALS = 4
_CHUNK = 4096  # images per chunk in compute_normalization


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std (tuples of floats, one per channel, in [0, 1] pixel units)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean, std = _check_stats(self.mean, self.std)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        """Number of channels this normalization is for."""
        return len(self.mean)

    def apply(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 [N, C, H, W] (or [C, H, W]) → float32 of the same shape: (x/255 - mean)/std."""
        self._check_input(images_uint8, "numpy array", np.ndarray)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)
        x = images_uint8.astype(np.float32) / np.float32(255.0)
        return (x - mean) / std

    def apply_torch(self, images: Any) -> Any:
        """torch uint8 [N, C, H, W] (or [C, H, W]) → torch float32 on the same device: (x/255 - mean)/std."""
        import torch

        self._check_input(images, "torch tensor", torch.Tensor)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).reshape(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).reshape(-1, 1, 1)
        x = images.to(torch.float32) / 255.0
        return (x - mean) / std

    def to_dict(self) -> dict[str, list[float]]:
        """{"mean": [...], "std": [...]} — plain lists, safe for JSON and YAML."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Normalization":
        """Inverse of `to_dict`; DataError if keys are missing, lengths differ or a std <= 0."""
        if not isinstance(d, Mapping):
            raise DataError(f"normalization must be a mapping with 'mean' and 'std', got {type(d).__name__}")
        missing = [k for k in ("mean", "std") if k not in d]
        if missing:
            raise DataError(f"normalization is missing {', '.join(missing)}; expected keys 'mean' and 'std'")
        return cls(mean=d["mean"], std=d["std"])

    def _check_input(self, images: Any, kind: str, typ: type) -> None:
        """images must be a uint8 `typ` with the channel axis at -3 matching `channels`."""
        if not isinstance(images, typ):
            raise DataError(f"normalization expects a {kind}, got {type(images).__name__}")
        dtype = str(images.dtype)
        if not dtype.endswith("uint8"):
            raise DataError(f"normalization expects uint8 images, got {dtype}")
        if images.ndim not in (3, 4) or images.shape[-3] != self.channels:
            raise DataError(
                f"normalization is for {self.channels} channel(s) and expects [N, C, H, W] images, "
                f"got shape {list(images.shape)}"
            )


def compute_normalization(ds: ArrayDataset) -> Normalization:
    """Per-channel mean and (population) std of `ds.images` (uint8 [N, C, H, W]) in [0, 1] units.

    Sums are exact integers, and results are rounded to 4 decimals so they are stable
    in YAML / JSON. A channel with zero spread gets std 1.0 (centering only).
    """
    if len(ds) == 0:
        raise DataError(f"{ds.name}: cannot compute normalization of an empty dataset")
    c = ds.image_shape[0]
    total = np.zeros(c, dtype=np.int64)
    total_sq = np.zeros(c, dtype=np.int64)
    for start in range(0, len(ds), _CHUNK):
        chunk = ds.images[start : start + _CHUNK].astype(np.int64)
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += (chunk * chunk).sum(axis=(0, 2, 3))
    count = len(ds) * ds.image_shape[1] * ds.image_shape[2]
    mean = total / count
    var = np.maximum(total_sq / count - mean * mean, 0.0)
    mean01 = tuple(round(float(m) / 255.0, _DECIMALS) for m in mean)
    std01 = tuple(round(math.sqrt(float(v)) / 255.0, _DECIMALS) for v in var)
    std01 = tuple(s if s > 0 else 1.0 for s in std01)
    return Normalization(mean=mean01, std=std01)


def _check_stats(mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Validate and convert mean / std to equal-length tuples of finite floats, std > 0."""
    out = []
    for key, values in (("mean", mean), ("std", std)):
        if isinstance(values, (int, float)):
            values = [values]
        if isinstance(values, (str, bytes, Mapping)):
            raise DataError(f"normalization {key} must be a list of numbers, got {values!r}")
        try:
            vals = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise DataError(f"normalization {key} must be a list of numbers, got {values!r}") from None
        if not vals:
            raise DataError(f"normalization {key} is empty; give one value per channel")
        if not all(math.isfinite(v) for v in vals):
            raise DataError(f"normalization {key} must be finite, got {list(vals)}")
        out.append(vals)
    mean_t, std_t = out
    if len(mean_t) != len(std_t):
        raise DataError(
            f"normalization mean has {len(mean_t)} value(s) but std has {len(std_t)}; give one per channel"
        )
    if any(s <= 0 for s in std_t):
        raise DataError(f"normalization std must be > 0 for every channel, got {list(std_t)}")
    return mean_t, std_t
