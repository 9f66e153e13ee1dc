"""gelu: elementwise exact GELU, x * Phi(x) = 0.5 * x * erfc(-x / sqrt(2)) (torch's default, not tanh).

NumPy has no erf, so `erfc` below is the Chebyshev-fitted approximation of Numerical
Recipes (erfcc), fractional error < 1.2e-7 in float64. The float path (`gelu`) evaluates
the same formula in float32, in cache-sized blocks: absolute error < 4e-7 and relative
error < 2e-6 for |GELU(x)| >= 1e-3 against the exact function (torch's own float32 GELU
is within 1.2e-6). Any shape, float32 -> float32.

Integer kernel (int8 -> int8, any shape; docs/integer-semantics.md "gelu"): y = lut[x + 128] with
constant `lut` int8 [256] (`intlut.make_gelu_lut`: exact erf GELU of the dequantised input,
quantized to out_quant with round half up). Attr: out_quant.
"""

from __future__ import annotations

import numpy as np

from edgevit.lower.intlut import gelu_int
from edgevit.lower.ops import OpDef, expect_attrs, expect_const, expect_dtype, out, register_op
from edgevit.lower.ops.intcommon import expect_roles, out_quant
from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import Kernel, TensorInfo

DTYPES = ("float32", "int8")
# Numerical Recipes' erfcc: erfc(z) = t exp(-z^2 + sum_i c_i t^i), t = 1 / (1 + z/2), z >= 0 (also the
# generated float GELU kernel's coefficients)
ERFC_COEFFS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
               -0.82215223, 0.17087277)


def erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function of any float array, computed in float64 (relative error < 1.2e-7)."""
    z = np.abs(np.asarray(x, dtype=np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.full_like(t, ERFC_COEFFS[-1])
    for c in ERFC_COEFFS[-2::-1]:
        poly *= t
        poly += c
    ans = t * np.exp(poly - z * z)
    return np.where(np.asarray(x) >= 0, ans, 2.0 - ans)


def gelu64(x: np.ndarray) -> np.ndarray:
    """GELU of any float array in float64 (relative error < 1.2e-7); float64 out, same shape."""
    x64 = np.asarray(x, dtype=np.float64)
    return 0.5 * x64 * erfc(x64 * -0.7071067811865476)


_C32 = tuple(np.float32(c) for c in ERFC_COEFFS)
_BLOCK = 1 << 16  # elements per block: the ~10 temporaries stay in L2


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU of any float array, evaluated in float32 blocks; float32 out, same shape."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    result = np.empty_like(x)
    xf, of = x.reshape(-1), result.reshape(-1)
    for s in range(0, xf.size, _BLOCK):
        _gelu_block(xf[s:s + _BLOCK], of[s:s + _BLOCK])
    return result


def _gelu_block(x: np.ndarray, y: np.ndarray) -> None:
    """y = x * Phi(x) for 1-D float32 x, with q = Phi(-|x|) = erfc(|x|/sqrt(2)) / 2."""
    z = np.abs(x)
    z *= np.float32(0.7071067811865476)
    t = z * np.float32(0.5)
    t += np.float32(1.0)
    np.divide(np.float32(1.0), t, out=t)
    p = t * _C32[-1]
    for c in _C32[-2:0:-1]:
        p += c
        p *= t
    p += _C32[0]
    z *= z
    p -= z
    np.exp(p, out=p)
    p *= t
    p *= np.float32(0.5)
    np.copyto(y, p)
    np.subtract(np.float32(1.0), p, out=y, where=x >= 0)
    y *= x


def infer(kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
    """Any shape float32 -> same shape; int8 (with lut int8 [256]) -> int8 of out_quant."""
    (x,) = in_infos
    expect_dtype(kernel, x, DTYPES)
    if x.dtype == "float32":
        expect_attrs(kernel, [])
        expect_roles(kernel, consts, [], kind="float32")
        return [out(kernel, x.shape, x.dtype)]
    expect_attrs(kernel, ["out_quant"])
    expect_roles(kernel, consts, ["lut"])
    expect_const(kernel, consts, "lut", (256,), ("int8",))
    dtype, quant = out_quant(kernel, ("int8",))
    return [out(kernel, x.shape, dtype, quant)]


def run_float(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, ...] float32 -> [B, ...] float32."""
    return [gelu(inputs[0])]


def run_int8(kernel: Kernel, inputs: list[np.ndarray], consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[B, ...] int8 -> [B, ...] int8 by table lookup."""
    return [gelu_int(inputs[0], consts["lut"])]


OP = register_op(OpDef(name="gelu", infer=infer, run={"float32": run_float, "int8": run_int8}, inputs=("x",),
                       optional_consts=("lut",), traits=PlanTraits(inplace=(0,), row_wise=True),
                       doc=__doc__))
