"""What the quantization pass decides and the int8 lowering consumes.

The `quant` pass calibrates a float model and returns a `QuantizedViT`: the (possibly
re-parameterised) float module plus a `QuantConfig`. `edgevit.lower.lower_int8` turns a
QuantizedViT into an int8 Program whose integer constants (quantized weights, int32
biases, multipliers/shifts, lookup tables) all derive from this config.

Activation quantization is keyed by the tensor names of the UNFUSED float Program,
`lower_float(model, fuse_gelu=False)`, so that the pre-GELU fc1 output has its own entry
(`t{i}.fc1`) beside the GELU output (`t{i}.gelu`). The program input `image` has an entry
too (the normalised image is quantized on the host / in the test vectors).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from edgevit.errors import UserInputError

ACT_DTYPES = ("int8", "int16")
WEIGHT_BITS = (4, 8)


@dataclass(frozen=True)
class TensorQuant:
    """Affine quantization of one activation tensor: real = scale * (q - zero_point).

    `dtype` int8 (range [-128, 127]) or int16 (the residual-stream option, symmetric).
    """

    scale: float
    zero_point: int = 0
    dtype: Literal["int8", "int16"] = "int8"

    def __post_init__(self) -> None:
        if not (self.scale > 0.0) or self.scale != self.scale:
            raise UserInputError(f"quantization scale must be a positive number (got {self.scale!r})")
        if self.dtype not in ACT_DTYPES:
            raise UserInputError(f"activation dtype must be one of {ACT_DTYPES} (got {self.dtype!r})")
        lo, hi = (-128, 127) if self.dtype == "int8" else (-32768, 32767)
        if not lo <= self.zero_point <= hi:
            raise UserInputError(f"zero_point {self.zero_point} outside the {self.dtype} range")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype}


@dataclass(frozen=True)
class QuantConfig:
    """The pass's decisions.

    activations: tensor name of the unfused float Program -> TensorQuant (every activation
        tensor the int8 Program materialises, including `image`).
    weight_bits: constant name of a linear weight (e.g. `blocks.0.attn.qkv.weight`) -> 4 or 8;
        absent means 8. Weights are symmetric per output channel ([-127, 127] or [-7, 7]);
        4-bit weights are packed two per byte in the Program constants.
    residual_dtype: int8, or int16 for the residual stream (`t{i}.res1`, `t{i}.out`, the
        embedding output) where int8 costs accuracy.
    options: the pass options that produced it (observer, calibration size, ...), for reports.
    """

    activations: dict[str, TensorQuant]
    weight_bits: dict[str, int] = field(default_factory=dict)
    residual_dtype: Literal["int8", "int16"] = "int8"
    options: dict[str, Any] = field(default_factory=dict)

    def bits_of(self, weight_name: str) -> int:
        """Bits of the named linear weight (default 8)."""
        return self.weight_bits.get(weight_name, 8)

    def act(self, tensor: str) -> TensorQuant:
        """The quantization of an activation tensor; UserInputError naming it if missing."""
        try:
            return self.activations[tensor]
        except KeyError:
            raise UserInputError(f"quant config has no entry for activation tensor {tensor!r}") from None

    def with_weight_bits(self, weight_bits: dict[str, int]) -> "QuantConfig":
        """A copy with other per-weight bit widths."""
        bad = {k: v for k, v in weight_bits.items() if v not in WEIGHT_BITS}
        if bad:
            raise UserInputError(f"weight bits must be one of {WEIGHT_BITS} (got {bad})")
        return replace(self, weight_bits=dict(weight_bits))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for manifests and reports)."""
        return {"activations": {k: v.to_dict() for k, v in sorted(self.activations.items())},
                "weight_bits": dict(sorted(self.weight_bits.items())),
                "residual_dtype": self.residual_dtype, "options": self.options}


@dataclass(frozen=True)
class QuantizedViT:
    """A float VisionTransformer plus the QuantConfig that says how to run it in integers."""

    model: Any  # edgevit.model.vit.VisionTransformer (re-parameterised by the pass if it chose to)
    config: QuantConfig

    @property
    def spec(self):
        """The architecture (unchanged by quantization)."""
        return self.model.spec

    @property
    def preprocess(self):
        """The input normalisation (unchanged by quantization)."""
        return self.model.preprocess
