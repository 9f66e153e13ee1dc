"""GPTQ-style rounding of 4-bit weights (Frantar et al. 2022, "GPTQ"; learned from, not copied).

Rounding every weight to its nearest grid point (RTN) ignores that the errors of a row add up
on the same output. GPTQ quantizes the columns of W [M, K] one at a time and spreads each
column's rounding error over the columns not yet quantized, weighted by the inverse of the
input's second-moment matrix H = E[x x^T] (from calibration), which minimises the layer's
output error ||(W - Q) x||^2 far better than RTN at 4 bits. Columns go in order of decreasing
H_kk ("act order"), the most important inputs first.

The grid is fixed before the sweep: per row, symmetric, scale = clip / qmax with the clip
from `reparam.clip_rows`. The result is returned as float weights ON that grid (q * scale), so
the int8 lowering, which takes scale = max|w| / qmax per row, recovers exactly these codes. A
row whose codes no longer reach +-qmax after the sweep (its max |w| would give another scale)
falls back to plain rounding on the same grid.
"""

from __future__ import annotations

import numpy as np

DAMP = 0.01  # Tikhonov damping of H, as a fraction of its mean diagonal


def inverse_cholesky(h: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor U of H^-1 (H^-1 = U^T U), H damped so it is positive definite."""
    k = h.shape[0]
    h = h + DAMP * max(float(np.mean(np.diag(h))), 1e-12) * np.eye(k)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    hinv = np.linalg.inv(h)
    return np.linalg.cholesky((hinv + hinv.T) / 2).T


def gptq_rows(w: np.ndarray, h: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    """Quantize w [M, K] on the per-row grids `scale` [M] with GPTQ error feedback; float32 on-grid weights."""
    qmax = (1 << (bits - 1)) - 1
    order = np.argsort(-np.diag(h), kind="stable")
    u = inverse_cholesky(h[np.ix_(order, order)])
    work = w[:, order].astype(np.float64)
    s = scale.astype(np.float64)
    codes = np.empty_like(work)
    for i in range(work.shape[1]):
        col = work[:, i]
        codes[:, i] = np.clip(np.floor(col / s + 0.5), -qmax, qmax)
        err = (col - codes[:, i] * s) / u[i, i]
        work[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    out = np.empty_like(codes)
    out[:, order] = codes
    rtn = np.clip(np.floor(w / s[:, None] + 0.5), -qmax, qmax)
    bad = np.abs(out).max(axis=1) < qmax  # the lowering would pick another scale for these rows
    out[bad] = rtn[bad]
    return (out * s[:, None]).astype(np.float32)


def row_scales(w: np.ndarray, bits: int) -> np.ndarray:
    """Per-row scale max|w| / qmax of an (already clipped) weight (1 for an all-zero row)."""
    qmax = (1 << (bits - 1)) - 1
    s = np.abs(w).max(axis=1).astype(np.float64) / qmax
    return np.where(s > 0, s, 1.0)
