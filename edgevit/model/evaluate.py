"""Evaluation of float models: top-1 on a dataset split, plus analytic MACs and params."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgevit.data import ArrayDataset, load_dataset
from edgevit.model.counts import count_macs, count_params


def predict(model: torch.nn.Module, ds: ArrayDataset, batch_size: int = 500) -> np.ndarray:
    """Predicted class per image: images uint8 [N,C,H,W] -> int64 [N] (model's own preprocessing)."""
    model.eval()
    preds = []
    with torch.inference_mode():
        for start in range(0, len(ds), batch_size):
            x = model.preprocess.apply_torch(torch.from_numpy(ds.images[start:start + batch_size]))
            preds.append(model(x).argmax(1).numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def accuracy(model: torch.nn.Module, ds: ArrayDataset) -> float:
    """Top-1 accuracy of `model` on `ds` (fraction in [0, 1])."""
    return float((predict(model, ds) == ds.labels).mean()) if len(ds) else 0.0


def evaluate_checkpoint(path: Path, data: str, split: str = "test", limit: int | None = None,
                        data_root: Path | None = None) -> dict:
    """Load a checkpoint and report {"top1", "macs", "params", "images", "split"} on `data`/`split`."""
    from edgevit.model.checkpoint import load_checkpoint

    model = load_checkpoint(path)
    ds = load_dataset(data, root=data_root).get(split)
    if limit is not None:
        ds = ds.take(limit)
    return {"top1": round(accuracy(model, ds), 6), "macs": count_macs(model.spec),
            "params": count_params(model.spec), "images": len(ds), "split": split}
