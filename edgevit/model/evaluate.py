"""Evaluation of float models in torch: predicted classes and top-1 accuracy on a dataset.

(The `edgevit eval` command, which also evaluates compressed models as their Program, is
edgevit/passes/evaluate.py.)
"""

from __future__ import annotations

import numpy as np
import torch

from edgevit.data import ArrayDataset


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
