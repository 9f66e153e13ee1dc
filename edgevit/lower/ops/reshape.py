"""reshape: same elements in C order, new per-image shape (attr `shape`, a list of ints).

A view: no arithmetic and no data movement, any dtype; backends may alias the buffers.
Used e.g. to turn the head's [1, K] into the program output `logits` [K].
"""

from __future__ import annotations

import math

import numpy as np

from edgevit.lower.ops import OpDef, expect_attrs, fail, out, register_op
from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import DTYPES, Kernel, TensorInfo


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[*in_shape] -> [*shape] with the same element count and dtype (quant kept)."""
    expect_attrs(kernel, ["shape"])
    (x,) = in_infos
    shape = kernel.attrs.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
        fail(kernel, f"attr 'shape' must be a non-empty list of positive integers (got {shape!r})")
    if math.prod(shape) != x.size:
        fail(kernel, f"input {x.name!r} {list(x.shape)} has {x.size} elements; shape {shape} has {math.prod(shape)}")
    return [out(kernel, shape, x.dtype, x.quant)]


def run(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, *in_shape] -> [B, *shape] (a view), any dtype."""
    x = inputs[0]
    return [x.reshape(x.shape[0], *kernel.attrs["shape"])]


OP = register_op(OpDef(name="reshape", infer=infer, run={d: run for d in DTYPES}, inputs=("x",),
                       traits=PlanTraits(alias=True), doc=__doc__))
