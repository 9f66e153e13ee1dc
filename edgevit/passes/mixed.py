"""Mixed precision: 8- or 4-bit weights per linear layer, chosen by measured sensitivity under a flash budget.

Sensitivity of layer L = KL(float || quantized) of the output distribution, averaged over
calibration images, when only L's weights are 4-bit (every activation quantized, all other
weights 8-bit), minus the same KL with all weights 8-bit. It is measured on the NumPy
fake-quant model (`calibrate.simulate`), a fast proxy of the int8 Program that rounds
activations, weights and softmax probabilities exactly where the int8 kernels do.
Layers are then switched to 4 bits greedily, least sensitivity per byte saved first, until
the Program's weight bytes fit the budget; then the most sensitive of the switched layers go
back to 8 bits while the slack left under the budget allows.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from edgevit.errors import UserInputError

KB = 1024


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def kl_divergence(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(softmax(ref) || softmax(logits)) over rows."""
    lp, lq = log_softmax(ref_logits), log_softmax(logits)
    return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())


def layer_savings(shapes: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Bytes saved by storing each weight [M, K] as packed 4-bit (M * ceil(K/2)) instead of int8 (M * K)."""
    return {n: m * k - m * ((k + 1) // 2) for n, (m, k) in shapes.items()}


def sensitivities(names: list[str], run: Callable[[dict[str, int]], np.ndarray],
                  ref_logits: np.ndarray) -> dict[str, float]:
    """KL increase caused by each layer alone at 4 bits; `run(bits)` returns logits for a bits mapping."""
    base = kl_divergence(ref_logits, run({}))
    return {n: max(kl_divergence(ref_logits, run({n: 4})) - base, 0.0) for n in names}


def choose_bits(sens: dict[str, float], savings: dict[str, int], bytes_all8: int, budget: int) -> dict[str, int]:
    """Greedy: switch layers to 4 bits (least KL per byte saved first) until bytes_all8 - saved <= budget.

    UserInputError if even all candidate layers at 4 bits exceed the budget (names the minimum).
    """
    minimum = bytes_all8 - sum(savings.values())
    if budget < minimum:
        need = math.ceil(minimum / KB * 10) / 10
        raise UserInputError(f"quant: flash_kb={budget / KB:.6g} is infeasible: with every linear at 4 bits the "
                             f"int8 Program still needs {minimum:,} bytes; the minimum achievable is "
                             f"flash_kb={need:.1f}")
    order = sorted(sens, key=lambda n: (sens[n] / max(savings[n], 1), n))
    bits, total = {}, bytes_all8
    for n in order:
        if total <= budget:
            break
        bits[n] = 4
        total -= savings[n]
    for n in sorted(bits, key=lambda n: (-sens[n], n)):  # give back 8 bits where the slack allows
        if total + savings[n] <= budget:
            del bits[n]
            total += savings[n]
    return bits
