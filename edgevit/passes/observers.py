"""Observers: from calibration statistics of one tensor to a quantization range and a TensorQuant.

Every observer maps `TensorStats` (exact min/max plus a deterministic sample of values, see
`edgevit.passes.calibrate`) to a real clipping range [lo, hi] that contains 0:

- `minmax`: the observed extremes;
- `percentile`: the p-th and (100 - p)-th percentiles of the sample (clips rare outliers);
- `mse`: the range minimising the mean squared quantize-dequantize error of the sampled
  distribution, searched over shrink factors of the observed range (down to 1/200, for heavy
  tails); clipping error exact from prefix sums, rounding error on a subsample (`MseEvaluator`).

`quant_from_range` turns a range into the affine `TensorQuant` of the int8 semantics
(real = scale * (q - zero_point)), symmetric (zp 0) or asymmetric.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from edgevit.lower.qconfig import TensorQuant

OBSERVERS = ("minmax", "percentile", "mse")
ROUND_SAMPLE = 4096  # values on which the MSE search measures rounding error
# shrink factors of the observed range searched by `mse`: fine near 1, geometric down to 1/200
GRID = np.unique(np.concatenate([np.geomspace(0.005, 0.3, 20), np.linspace(0.3, 1.0, 36)]))
TINY = 1e-8  # smallest range width quantized (an all-zero tensor still gets a valid scale)
QRANGES = {"int8": (-128, 127), "int16": (-32768, 32767)}


def levels(dtype: str, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax) used for a tensor: symmetric ranges drop the most negative code (-127..127)."""
    lo, hi = QRANGES[dtype]
    return (-hi, hi) if symmetric else (lo, hi)


def quant_from_range(lo: float, hi: float, dtype: str = "int8", symmetric: bool = False) -> TensorQuant:
    """The TensorQuant covering [lo, hi] (widened to contain 0) with `dtype` codes.

    Symmetric: zp 0, scale = max(|lo|, |hi|) / qmax. Asymmetric: scale = (hi - lo) / (qmax - qmin)
    and the zero point that maps lo to qmin, rounded and clamped to the dtype range.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    qmin, qmax = levels(dtype, symmetric)
    if symmetric:
        return TensorQuant(scale=max(max(-lo, hi), TINY) / qmax, zero_point=0, dtype=dtype)
    scale = max(hi - lo, TINY) / (qmax - qmin)
    zp = int(np.clip(math.floor(qmin - lo / scale + 0.5), qmin, qmax))
    return TensorQuant(scale=scale, zero_point=zp, dtype=dtype)


def fake_quant(x: np.ndarray, q: TensorQuant) -> np.ndarray:
    """Quantize-dequantize `x` with `q` (round half up, clamp to the dtype range), float32 out."""
    qmin, qmax = QRANGES[q.dtype]
    codes = np.floor(x / np.float32(q.scale) + np.float32(0.5)) + q.zero_point
    np.clip(codes, qmin, qmax, out=codes)
    return ((codes - q.zero_point) * np.float32(q.scale)).astype(np.float32, copy=False)


# ---------------------------------------------------------------- observers

def observe_minmax(stats, symmetric: bool, dtype: str, **_) -> tuple[float, float]:
    """The observed extremes."""
    return stats.min, stats.max


def observe_percentile(stats, symmetric: bool, dtype: str, percentile: float = 99.99, **_) -> tuple[float, float]:
    """Percentiles of the sample: [P(100 - p), P(p)] (symmetric: the p-th percentile of |x|)."""
    s = stats.sample
    if s.size == 0:
        return stats.min, stats.max
    if symmetric:
        m = float(np.percentile(np.abs(s), percentile))
        return -m, m
    return float(np.percentile(s, 100.0 - percentile)), float(np.percentile(s, percentile))


def observe_mse(stats, symmetric: bool, dtype: str, **_) -> tuple[float, float]:
    """The clipping range with the least quantize-dequantize MSE on the sample.

    Symmetric: one shrink factor of max|x| on GRID. Asymmetric: the best common shrink factor
    of both ends, then two rounds of coordinate search on each end alone.
    """
    if dtype != "int8" or stats.sample.size == 0:
        return stats.min, stats.max  # 16-bit codes: clipping buys nothing measurable
    lo, hi = min(stats.min, 0.0), max(stats.max, 0.0)
    err = MseEvaluator(stats.sample, dtype, symmetric)
    if symmetric:
        m = max(-lo, hi)
        return err.best([(-m * f, m * f) for f in GRID])
    best = err.best([(lo * f, hi * f) for f in GRID])
    for _ in range(2):
        best = err.best([(lo * f, best[1]) for f in GRID])
        best = err.best([(best[0], hi * f) for f in GRID])
    return best


def observe_mse_hi(stats, dtype: str, **_) -> tuple[float, float]:
    """MSE search of the upper end only, lower end kept at the observed min (post-GELU, >= -0.17)."""
    lo, hi = min(stats.min, 0.0), max(stats.max, 0.0)
    if dtype != "int8" or stats.sample.size == 0:
        return lo, hi
    return MseEvaluator(stats.sample, dtype, False).best([(lo, hi * f) for f in GRID])


class MseEvaluator:
    """Quantization MSE of a sample for candidate ranges, fast enough to try hundreds per tensor.

    Clipping error is exact over the whole sample (sorted values and prefix sums of x and x^2);
    the rounding error of the in-range values is measured on an evenly strided subsample of at
    most ROUND_SAMPLE sorted values.
    """

    def __init__(self, sample: np.ndarray, dtype: str, symmetric: bool) -> None:
        self.x = np.sort(sample.astype(np.float64))
        self.p1 = np.concatenate([[0.0], np.cumsum(self.x)])
        self.p2 = np.concatenate([[0.0], np.cumsum(self.x * self.x)])
        self.sub = self.x[:: max(1, self.x.size // ROUND_SAMPLE)]
        self.dtype, self.symmetric = dtype, symmetric

    def best(self, cands: list[tuple[float, float]]) -> tuple[float, float]:
        """The candidate (lo, hi) with the least MSE (the first of equals)."""
        errs = self(np.array(cands, dtype=np.float64))
        lo, hi = cands[int(np.argmin(errs))]
        return float(lo), float(hi)

    def __call__(self, ranges: np.ndarray) -> np.ndarray:
        """MSE for each candidate range [R, 2] -> [R]."""
        scale, zp, qmin, qmax = _grid_params(ranges, self.dtype, self.symmetric)
        qlo, qhi = QRANGES[self.dtype]
        lo, hi = scale * (qlo - zp), scale * (qhi - zp)  # the real values the end codes stand for
        n = self.x.size
        i_lo = np.searchsorted(self.x, lo, "left")
        i_hi = np.searchsorted(self.x, hi, "right")
        below = self.p2[i_lo] - 2 * lo * self.p1[i_lo] + i_lo * lo * lo
        above = (self.p2[n] - self.p2[i_hi]) - 2 * hi * (self.p1[n] - self.p1[i_hi]) + (n - i_hi) * hi * hi
        v = self.sub[None, :]
        err = (np.floor(v / scale[:, None] + 0.5) * scale[:, None] - v) ** 2  # zp shifts codes, not errors
        inside = (v >= lo[:, None]) & (v <= hi[:, None])
        rounding = (err * inside).sum(axis=1) / np.maximum(inside.sum(axis=1), 1)
        return (below + above) / n + rounding * (i_hi - i_lo) / n


def quant_mse(values: np.ndarray, weights: np.ndarray, ranges: np.ndarray, dtype: str,
              symmetric: bool) -> np.ndarray:
    """Exact weighted MSE of quantize-dequantize of `values` for each candidate range [R, 2] -> [R]."""
    out = np.empty(len(ranges))
    block = max(1, (1 << 20) // max(values.size, 1))
    for s in range(0, len(ranges), block):
        r = ranges[s:s + block]
        scale, zp, _, _ = _grid_params(r, dtype, symmetric)
        qlo, qhi = QRANGES[dtype]
        codes = np.clip(np.floor(values[None, :] / scale[:, None] + 0.5) + zp[:, None], qlo, qhi)
        err = (codes - zp[:, None]) * scale[:, None] - values[None, :]
        out[s:s + block] = (err * err) @ weights / weights.sum()
    return out


def _grid_params(ranges: np.ndarray, dtype: str, symmetric: bool):
    """Vectorised `quant_from_range` for candidate ranges [R, 2]: (scale, zp, qmin, qmax)."""
    qmin, qmax = levels(dtype, symmetric)
    lo, hi = np.minimum(ranges[:, 0], 0.0), np.maximum(ranges[:, 1], 0.0)
    if symmetric:
        return np.maximum(np.maximum(-lo, hi), TINY) / qmax, np.zeros(len(ranges)), qmin, qmax
    scale = np.maximum(hi - lo, TINY) / (qmax - qmin)
    zp = np.clip(np.floor(qmin - lo / scale + 0.5), qmin, qmax)
    return scale, zp, qmin, qmax


OBSERVER_FNS: dict[str, Callable[..., tuple[float, float]]] = {
    "minmax": observe_minmax, "percentile": observe_percentile, "mse": observe_mse,
}


def observe(stats, observer: str, symmetric: bool = False, dtype: str = "int8",
            percentile: float = 99.99) -> TensorQuant:
    """TensorQuant for a tensor's stats with the named observer."""
    lo, hi = OBSERVER_FNS[observer](stats, symmetric=symmetric, dtype=dtype, percentile=percentile)
    return quant_from_range(lo, hi, dtype, symmetric)
