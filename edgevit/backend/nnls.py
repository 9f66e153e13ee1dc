"""Non-negative least squares, the fit of the latency models' coefficients (targets' latency.py and
calibration scripts)."""

from __future__ import annotations

import numpy as np


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """min |a x - b|_2 subject to x >= 0 (Lawson-Hanson active set); a [m, n], b [m] -> x [n]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m, n = a.shape
    x, passive = np.zeros(n), np.zeros(n, bool)
    for _ in range(max_iter or 3 * n + 10):
        w = a.T @ (b - a @ x)
        if passive.all() or w[~passive].max(initial=-np.inf) <= 1e-10 * max(1.0, np.abs(w).max()):
            break
        passive[np.argmax(np.where(passive, -np.inf, w))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
            x[~passive] = 0.0
    return x


def relative_nnls(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x >= 0 making a x approximate y in relative terms (each row weighs 1 / max(y, 1)), every column
    scaled to unit norm before solving (`nnls`); a [m, n], y [m] -> x [n]."""
    a, y = np.asarray(a, np.float64), np.asarray(y, np.float64)
    weight = 1.0 / np.maximum(y, 1.0)
    aw = a * weight[:, None]
    norms = np.linalg.norm(aw, axis=0)
    norms[norms == 0] = 1.0
    return nnls(aw / norms, y * weight) / norms
