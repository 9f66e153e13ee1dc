"""layernorm: per row of x [N, D]: (x - mean) / sqrt(var + eps) * gamma + beta -> [N, D].

mean and the biased variance are over the D features of each row (as torch.nn.LayerNorm).
Constants: gamma [D], beta [D]. Attr: eps (float > 0). The float path accumulates the
statistics in float64 and normalises in float32.

Integer kernel (int8 or int16 input, int8 output; docs/integer-semantics.md "layernorm"):
`intmath.layernorm_int` with constants gain int32 [D], bias int64 [D] and attrs frac_bits,
eps_fixed, out_shift, out_quant (all from `intmath.make_layernorm_params`). The input zero point
cancels, so the kernel needs none.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intmath import LN_MAX_DIM, layernorm_int, qrange
from edgevit.lower.ops import (OpDef, attr_float, expect_attrs, expect_const, expect_dtype, expect_rank, fail,
                               out, register_op)
from edgevit.lower.ops.intcommon import INT_DTYPES, expect_roles, int_attr, out_quant
from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32",) + INT_DTYPES
INT_ATTRS = ("frac_bits", "eps_fixed", "out_shift", "out_quant")


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """[N, D] float32 (gamma, beta float32 [D]) or int8/int16 (gain int32, bias int64 [D]) -> [N, D]."""
    (x,) = in_infos
    expect_rank(kernel, x, 2, "[N, D]")
    expect_dtype(kernel, x, DTYPES)
    d = x.shape[-1]
    if x.dtype == "float32":
        expect_attrs(kernel, ["eps"])
        attr_float(kernel, "eps")
        expect_roles(kernel, consts, ["gamma", "beta"], kind="float32")
        expect_const(kernel, consts, "gamma", (d,))
        expect_const(kernel, consts, "beta", (d,))
        return [out(kernel, x.shape, x.dtype)]
    expect_attrs(kernel, INT_ATTRS)
    expect_roles(kernel, consts, ["gain", "bias"])
    if d > LN_MAX_DIM:
        fail(kernel, f"input {x.name!r}: integer LayerNorm supports D <= {LN_MAX_DIM} (got {d})")
    expect_const(kernel, consts, "gain", (d,), ("int32",))
    bias = expect_const(kernel, consts, "bias", (d,), ("int64",))
    if bias.size and np.abs(bias).max() > 1 << 59:
        fail(kernel, f"constant {kernel.consts['bias']!r}: |bias| must be <= 2^59")
    f = int_attr(kernel, "frac_bits", 0, 30)
    lo, hi = qrange(x.dtype)
    if f % 2 or (-(-(d ** 3) * (hi - lo) ** 2 // 4)) << f > 1 << 61:
        fail(kernel, f"attr 'frac_bits' {f} must be even with D^3 (qmax-qmin)^2/4 * 2^F <= 2^61 for D = {d}")
    int_attr(kernel, "eps_fixed", 1, (1 << 61) - 1)
    int_attr(kernel, "out_shift", 40, 61)
    dtype, quant = out_quant(kernel, ("int8",))
    return [out(kernel, x.shape, dtype, quant)]


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis of a float32 array [..., D]; float32 out, same shape.

    Mean and variance are accumulated in float64; centring and the affine map run in float32.
    """
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float64)
    xc = x - mean.astype(np.float32)
    var = np.einsum("...i,...i->...", xc, xc, dtype=np.float64)[..., None] / x.shape[-1]
    xc *= (1.0 / np.sqrt(var + eps)).astype(np.float32)
    xc *= gamma
    xc += beta
    return xc


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] float32 -> [B, N, D] float32."""
    return [layernorm(inputs[0], consts["gamma"], consts["beta"], float(kernel.attrs["eps"]))]


def int_params(kernel: Kernel, consts: dict[str, np.ndarray], in_dtype: str) -> dict:
    """The `layernorm_int` params dict of an integer kernel."""
    q = kernel.attrs["out_quant"]
    lo, hi = qrange(q["dtype"])
    a = kernel.attrs
    return {"dim": int(consts["gain"].shape[0]), "frac_bits": a["frac_bits"], "eps_fixed": a["eps_fixed"],
            "gain": consts["gain"], "bias": consts["bias"], "out_shift": a["out_shift"],
            "out_zp": q["zero_point"], "qmin": lo, "qmax": hi, "in_dtype": in_dtype, "out_dtype": q["dtype"]}


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, N, D] int8/int16 -> [B, N, D] int8 (integer LayerNorm per row)."""
    x = inputs[0]
    return [layernorm_int(x, int_params(kernel, consts, str(x.dtype)))]


OP = register_op(OpDef(name="layernorm", infer=infer, run={"float32": run_float, "int8": run_int8, "int16": run_int8},
                       inputs=("x",), optional_consts=("gamma", "beta", "gain", "bias"),
                       traits=PlanTraits(inplace=(0,), row_wise=True), doc=__doc__))
