"""Passes by name: the pass contract, the registry and the report every pass returns.

A pass is a function `(model, calib, eval_data=None, progress=None, **options) -> (model_or_qmodel,
PassReport)` (`progress(message)` reports what it is doing; `eval_data` adds accuracy) registered
with `register_pass(name, fn, options, doc)`, where `options` maps each option name to an
`Option` (edgevit/passes/options.py). It never edits its input in place: the pipeline hands each
pass a deep copy. `known_passes()` imports the built-in passes (tome, prune, lowrank, quant).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from edgevit.errors import UserInputError
from edgevit.passes.options import Option


@dataclass(frozen=True)
class PassDef:
    """A registered pass."""

    name: str
    fn: Callable[..., tuple[Any, "PassReport"]]
    options: dict[str, Option]
    doc: str = ""

    def option(self, key: str) -> Option:
        """The Option called `key`; UserInputError listing the valid ones if there is none."""
        if key not in self.options:
            raise UserInputError(f"{self.name}: unknown option {key!r}; valid options: {', '.join(self.options)}")
        return self.options[key]

    def defaults(self) -> dict[str, Any]:
        """Every option at its default value."""
        return {k: o.default for k, o in self.options.items()}


@dataclass
class PassReport:
    """What one pass did: costs before/after, optional accuracy and peak memory, notes and wall time.

    `peak_bytes_before/after` are the peak activation memory of the model's Program before and after
    the pass, as the caller's `memory_of` measures it (`edgevit compile`: the target's estimate on the
    artifact's profile); None when no `memory_of` was given or it could not estimate (a note says why).
    """

    name: str
    options: dict[str, Any]
    macs_before: int = 0
    macs_after: int = 0
    params_before: int = 0
    params_after: int = 0
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    seconds: float = 0.0
    top1_before: float | None = None
    top1_after: float | None = None
    peak_bytes_before: int | None = None
    peak_bytes_after: int | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


PASSES: dict[str, PassDef] = {}


def register_pass(name: str, fn: Callable[..., Any], options: dict[str, Option], doc: str = "") -> PassDef:
    """Register pass `name` (re-registering the same function is a no-op; another one is an error)."""
    if name in PASSES and PASSES[name].fn is not fn:
        raise ValueError(f"pass {name!r} is already registered")
    PASSES[name] = PassDef(name, fn, dict(options), doc)
    return PASSES[name]


def known_passes() -> dict[str, PassDef]:
    """All registered passes (importing the built-in ones first)."""
    import edgevit.passes.lowrank  # noqa: F401  (registers `lowrank`)
    import edgevit.passes.prune  # noqa: F401  (registers `prune`)
    import edgevit.passes.quantize  # noqa: F401  (registers `quant`)
    import edgevit.passes.token_merge  # noqa: F401  (registers `tome`)

    return PASSES


def lookup_pass(name: str, where: str) -> PassDef:
    """The registered pass `name`; UserInputError (prefixed by `where`) listing the known ones if none."""
    registry = known_passes()
    if name not in registry:
        raise UserInputError(f"{where}: unknown pass {name!r}; known passes: {', '.join(sorted(registry))}")
    return registry[name]


def structural_report(name: str, options: dict[str, Any], before: Any, after: Any, eval_data: Any = None,
                      notes: list[str] | None = None, details: dict[str, Any] | None = None) -> PassReport:
    """PassReport of a float-to-float pass: analytic MACs / params of both specs, fp32 weight bytes and,
    with `eval_data`, top-1 of both models (torch)."""
    from edgevit.model.counts import count_macs, count_params

    pb, pa = count_params(before.spec), count_params(after.spec)
    report = PassReport(name=name, options=dict(options), macs_before=count_macs(before.spec),
                        macs_after=count_macs(after.spec), params_before=pb, params_after=pa,
                        weight_bytes_before=4 * pb, weight_bytes_after=4 * pa, notes=list(notes or []),
                        details=dict(details or {}))
    if eval_data is not None and len(eval_data):
        from edgevit.model.evaluate import accuracy

        report.top1_before = round(accuracy(before, eval_data), 6)
        report.top1_after = round(accuracy(after, eval_data), 6)
    return report
