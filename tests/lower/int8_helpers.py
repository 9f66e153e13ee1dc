"""Test-only helpers for integer programs: a simple min/max calibration (NOT the quant pass).

`minmax_config` runs the unfused float Program on calibration images and takes per-tensor
min/max: q, k, v (`t{i}.qkv`) symmetric int8, the residual stream (`embed`, `t{i}.res1`,
`t{i}.out`, and `patches`/`tokens`/`pooled` that feed or copy it) int16 symmetric when asked,
everything else asymmetric int8 over [min(min, 0), max(max, 0)].
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from edgevit.lower.from_model import lower_float
from edgevit.lower.reference import run_program
from edgevit.lower.qconfig import QuantConfig, QuantizedViT, TensorQuant

RESIDUAL = ("patches", "tokens", "embed", "pooled")


def is_residual(name: str) -> bool:
    """Tensors of the residual stream (and the ones that feed or copy it)."""
    return name in RESIDUAL or name.endswith((".res1", ".out"))


def tensor_ranges(model, float_images: np.ndarray) -> dict[str, tuple[float, float]]:
    """name -> (min, max) of every tensor of lower_float(model, fuse_gelu=False) on the images."""
    program = lower_float(model, fuse_gelu=False)
    every = dataclasses.replace(program, outputs=list(program.tensors))
    outs = run_program(every, {"image": float_images})
    return {n: (float(v.min()), float(v.max())) for n, v in outs.items()}


def minmax_quant(lo: float, hi: float, symmetric: bool = False, dtype: str = "int8") -> TensorQuant:
    """TensorQuant covering [lo, hi] (and 0): symmetric (zp 0) or asymmetric int8."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmax = 127 if dtype == "int8" else 32767
    if symmetric or dtype == "int16":
        return TensorQuant(max(-lo, hi, 1e-8) / qmax, 0, dtype)
    scale = max(hi - lo, 1e-8) / 255.0
    return TensorQuant(scale, int(np.clip(round(-128 - lo / scale), -128, 127)), dtype)


def minmax_config(model, float_images: np.ndarray, residual_dtype: str = "int8",
                  weight_bits: dict[str, int] | None = None) -> QuantConfig:
    """A QuantConfig from per-tensor min/max over `float_images` (normalised, [B, C, H, W])."""
    acts = {}
    for name, (lo, hi) in tensor_ranges(model, float_images).items():
        dtype = "int16" if residual_dtype == "int16" and is_residual(name) else "int8"
        acts[name] = minmax_quant(lo, hi, symmetric=name.endswith(".qkv"), dtype=dtype)
    return QuantConfig(acts, weight_bits=dict(weight_bits or {}), residual_dtype=residual_dtype,
                       options={"observer": "minmax (test helper)", "images": len(float_images)})


def minmax_qmodel(model, float_images: np.ndarray, **kwargs) -> QuantizedViT:
    """QuantizedViT(model, minmax_config(model, float_images, **kwargs))."""
    return QuantizedViT(model, minmax_config(model, float_images, **kwargs))


def randomise(model, seed: int):
    """Non-trivial weights everywhere (biases, LayerNorm affine, cls, positions), in place; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.3 if name.endswith("weight") and p.dim() > 1 else 0.2
            p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if "norm" in name and "weight" in name else 0.0))
    return model.eval()
