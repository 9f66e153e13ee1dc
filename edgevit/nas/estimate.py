"""NAS cost estimation: what a spec would cost on a profile's target, in a few milliseconds.

`Estimator(profile)(spec) -> SpecCosts`: the spec's int8 Program is the real lowering,
`lower_int8`, of a placeholder quantized model (`edgevit/nas/placeholder.py`: zero weights, unit
quantizations, the quant pass's weight widths) — the Program `edgevit compile --passes quant(w=..)`
would build for a trained model of that spec, up to constant values — and its costs are
`get_target(profile).estimate(program, profile)`: the figures `edgevit compile` reports (resource
pools with budgets, MACs, activation bytes, the target's named figures and, when the target has a
latency model for the profile, latency_ms). `SpecCosts` adds the spec's parameter count. Results
are cached by spec (its name is not part of the key: it changes nothing that is costed).

NAS reads costs generically: a spec fits when every pool is within its budget, and the memory
objective is the first pool (`Costs.memory`; MCU: "sram", arena + stack). `max_memory` (`edgevit
search --max-sram`) lowers that pool's budget (`edgevit.nas.reuse.limit_memory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgevit.backend.costs import Costs
from edgevit.errors import UserInputError
from edgevit.model.spec import ViTSpec
from edgevit.profiles.profile import load_profile


def pool_key(name: str, unit: str) -> str:
    """The key of a pool's use in a costs dict: `<name>_bytes` for a byte pool (e.g. sram_bytes),
    else the pool's name (a count such as LUTs); its budget is `<name>_budget`."""
    return f"{name}_bytes" if unit == "B" else name


@dataclass(frozen=True)
class SpecCosts:
    """What a spec costs on a profile: the target's Costs of its int8 Program and its parameters."""

    costs: Costs
    params: int

    @property
    def fits(self) -> bool:
        """True when every pool is within its budget."""
        return self.costs.fits

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: `Costs.to_dict()` (the target's figures, pools, macs, activation_bytes,
        latency_ms, fits), params, and per pool its use and budget under `pool_key` / `<name>_budget`
        (MCU: sram_bytes, sram_budget, flash_bytes, flash_budget)."""
        d = {**self.costs.to_dict(), "params": self.params}
        for p in self.costs.pools:
            d[pool_key(p.name, p.unit)] = p.used
            d[f"{p.name}_budget"] = p.budget
        return d


def _spec_key(spec: ViTSpec) -> tuple:
    """What the costs depend on: every field of the spec but its name."""
    return (spec.image_size, spec.in_channels, spec.patch_size, spec.embed_dim, spec.num_classes, spec.blocks,
            spec.pool, spec.norm_eps, spec.distill_token)


class Estimator:
    """SpecCosts of ViTSpecs on one profile: `Estimator(profile)(spec)`; cached by spec (name ignored).

    weight_bits: the quant pass's `w` the Programs are lowered with (8, or 4: the head stays 8-bit);
    max_memory: a tighter budget for the memory pool (bytes; UserInputError naming --max-sram at
    the first estimate when it is above the pool's own). UserInputError for a profile without a
    target (module doc).
    """

    def __init__(self, profile, weight_bits: int = 8, max_memory: int | None = None) -> None:
        from edgevit.backend.target import get_target

        self.profile = load_profile(profile)
        if weight_bits not in (4, 8):
            raise UserInputError(f"weight_bits must be 8 or 4 (got {weight_bits!r})")
        self.weight_bits, self.max_memory = weight_bits, max_memory
        try:
            self.target = get_target(self.profile)
        except UserInputError as e:
            raise UserInputError(f"NAS estimates costs with the profile's target: {e}") from None
        self._cache: dict[tuple, SpecCosts] = {}

    def __call__(self, spec: ViTSpec) -> SpecCosts:
        """The costs of `spec` (computed once per distinct spec)."""
        key = _spec_key(spec)
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = self.compute(spec)
        return got

    def __len__(self) -> int:
        """Number of cached specs."""
        return len(self._cache)

    def program(self, spec: ViTSpec):
        """The int8 Program whose costs are the spec's: `lower_int8` of its placeholder quantized model."""
        from edgevit.lower.from_quantized import lower_int8
        from edgevit.nas.placeholder import placeholder_qmodel

        return lower_int8(placeholder_qmodel(spec, self.weight_bits))

    def compute(self, spec: ViTSpec) -> SpecCosts:
        """The costs of `spec`, uncached."""
        from edgevit.model.counts import count_params

        program = self.program(spec)
        problems = self.target.supports(program, self.profile)
        if problems:
            raise UserInputError(f"the {self.target.kind} target cannot run architecture {spec.name!r} of the search "
                                 f"space: {'; '.join(problems)}. Remove what it needs from the space")
        costs = self.target.estimate(program, self.profile)
        if self.max_memory is not None:
            from edgevit.nas.reuse import limit_memory

            costs = limit_memory(costs, self.max_memory, self.profile.name)
        return SpecCosts(costs, count_params(spec))
