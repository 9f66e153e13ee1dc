"""What `edgevit compile` checks before the heavy work (calibration, lowering, code generation).

- `check_vectors(n)`: --vectors an integer in 1..MAX_VECTORS (None: the default);
- `vectors_to_bundle(n, test, data)`: an explicit --vectors is refused, like `run --count`, when the
  test split has fewer images (no silent clamp); the default is DEFAULT_VECTORS, or the whole test
  split when it is smaller;
- `check_pipeline_for_target(steps, target, profile)`: pass options the target's integer kernels
  cannot execute (`Target.quant_constraints`: weight widths, an int16 residual);
- `check_weights_fit(spec, steps, profile, source)`: InfeasibleError (exit 3) when even the
  smallest weights the pipeline can give (every parameter at the fewest bits it asks for)
  exceed what the device keeps weights in (`Profile.weight_capacity`: MCU flash, CPU RAM), so a
  model that cannot fit is refused in a second, not after minutes of calibration. Pipelines that
  remove parameters (prune, lowrank, anything but quant and tome) are left to the exact budget
  check after lowering.
"""

from __future__ import annotations

from typing import Any

from edgevit.backend.budget_hints import reduce_hint
from edgevit.errors import InfeasibleError, UserInputError
from edgevit.validate import int_in_range

MAX_VECTORS = 10_000
DEFAULT_VECTORS = 50
FLOAT_BITS = 32
KEEPS_PARAMETERS = ("quant", "tome")  # passes that never remove parameters


def check_vectors(vectors: int | None) -> int | None:
    """`vectors` when it is None (the default) or an integer in 1..MAX_VECTORS; UserInputError naming
    --vectors otherwise."""
    if vectors is None:
        return None
    return int_in_range(vectors, "--vectors", low=1, high=MAX_VECTORS,
                        hint="the test images bundled with the artifact for `edgevit run`")


def vectors_to_bundle(vectors: int | None, test, data: str) -> int:
    """How many test vectors to bundle from the test split `test` (an ArrayDataset): `vectors` when it
    has that many (UserInputError otherwise: the rule of `edgevit run --count`), for None
    DEFAULT_VECTORS or the whole split when it is smaller."""
    if vectors is None:
        return min(DEFAULT_VECTORS, len(test))
    if vectors > len(test):
        raise UserInputError(f"--vectors {vectors}: the test split of {data} has only {len(test):,} image"
                             f"{'s' if len(test) != 1 else ''}; use --vectors {len(test)} or fewer. Nothing was "
                             "written.")
    return vectors


def check_pipeline_for_target(steps: list[tuple[str, dict[str, Any]]], target, profile) -> None:
    """UserInputError when a pass option asks for integer formats `target` cannot execute on
    `profile` (its quant_constraints: weight widths, an int16 residual), before any calibration."""
    constraints = target.quant_constraints(profile)
    for name, options in steps:
        if name != "quant":
            continue
        w = options.get("w")
        widths = constraints.weight_bits
        if isinstance(w, int) and w not in widths:
            raise UserInputError(f"quant(w={w}): the {target.kind} target runs {', '.join(map(str, widths))}-bit "
                                 f"weights on {profile.name}; use w={max(widths)}")
        if options.get("residual") == "int16" and not constraints.residual_int16:
            raise UserInputError(f"quant(residual=int16): the {target.kind} target has no int16 residual on "
                                 f"{profile.name}; use residual=int8")


def min_weight_bits(steps: list[tuple[str, dict[str, Any]]]) -> int | None:
    """The fewest bits per parameter the pipeline can give every weight: 32 (float) without quant,
    its w (4 for "mixed"); None when a pass may remove parameters (no lower bound known)."""
    if any(name not in KEEPS_PARAMETERS for name, _ in steps):
        return None
    bits = FLOAT_BITS
    for name, options in steps:
        if name == "quant":
            w = options.get("w", 8)
            bits = min(bits, w if isinstance(w, int) else 4)
    return bits


def check_weights_fit(spec, steps: list[tuple[str, dict[str, Any]]], profile, source: str) -> None:
    """InfeasibleError (exit 3) when `spec`'s parameters at the fewest bits the pipeline `steps`
    gives them cannot fit the memory `profile` keeps weights in (see the module doc)."""
    from edgevit.model.counts import count_params

    capacity = profile.weight_capacity()
    bits = min_weight_bits(steps)
    if capacity is None or bits is None:
        return
    budget, where = capacity
    params = count_params(spec)
    need = params * bits // 8
    if need <= budget:
        return
    how = "float32" if bits == FLOAT_BITS else f"{bits}-bit"
    program = _FloatOrInt(quantized=bits < FLOAT_BITS)
    raise InfeasibleError(
        f"{source}: {params:,} parameters take at least {need:,} B as {how} weights, more than the "
        f"{budget:,} B of {where} on {profile.name} (before code, buffers or anything else): "
        f"{reduce_hint('weights', program)}; or choose a device with more memory, or let `edgevit search "
        f"--profile {profile.name}` find an architecture that fits. Nothing was written.")


class _FloatOrInt:
    """The little of a Program `reduce_hint` reads (its lowering), before any Program exists."""

    def __init__(self, quantized: bool) -> None:
        self.meta = {"lowering": "int8" if quantized else "float"}
