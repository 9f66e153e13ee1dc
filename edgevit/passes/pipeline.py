"""Pipelines: read one (a string, YAML text or a YAML file) and run its passes in order.

`parse_pipeline` accepts a pipeline string (edgevit/passes/grammar.py, e.g. `tome(r=4),quant(w=8,a=8)`),
YAML text or a `.yaml`/`.yml` path (edgevit/passes/yaml_pipeline.py). `run_pipeline` runs the passes
(edgevit/passes/registry.py) on a deep copy of the model. The passes know no target: a caller that
wants peak-memory figures in the reports injects `memory_of(program) -> bytes` (`edgevit compile`
passes its target's estimate of the activation memory on the artifact's profile).

Every pass runs inside `edgevit.threads.deterministic_section()` (torch and BLAS on one thread
each): its results (calibrated scales, re-parameterised, pruned or fine-tuned weights) reach the
artifact, and float reductions split across threads round differently for each thread count, so
they would make the artifact depend on the machine's core count.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from edgevit.errors import EdgevitError, UserInputError
from edgevit.passes.grammar import check_order, parse_pipeline_string
from edgevit.passes.registry import PassReport, known_passes
from edgevit.passes.yaml_pipeline import parse_pipeline_yaml
from edgevit.threads import deterministic_section


def parse_pipeline(text: str) -> list[tuple[str, dict[str, Any]]]:
    """A pipeline -> [(pass name, options with defaults)]; UserInputError on any mistake.

    `text` is a pipeline string (`"quant(w=8,a=8)"`), a `.yaml`/`.yml` path, or YAML text (several
    lines, or starting with `-` or `passes:`).
    """
    stripped = text.strip()
    if stripped.endswith((".yaml", ".yml")):
        path = Path(stripped)
        if not path.is_file():
            raise UserInputError(f"pipeline file {path} not found")
        return parse_pipeline_yaml(path.read_text(), str(path))
    if "\n" in stripped or stripped.startswith(("-", "passes:")):
        return parse_pipeline_yaml(text)
    return parse_pipeline_string(text)


def run_pipeline(model: Any, passes: str | Sequence[tuple[str, dict[str, Any]]], calib: Any,
                 eval_data: Any = None, progress: Callable[[str], None] | None = None,
                 memory_of: Callable[[Any], int] | None = None) -> tuple[Any, list[PassReport]]:
    """Run the passes of a pipeline (text, see parse_pipeline, or a parsed list) in order on a deep copy
    of `model`. Returns (model or QuantizedViT, one PassReport per pass).

    `calib` is the calibration dataset (an ArrayDataset, training split); `eval_data` (optional)
    makes each report carry top-1 before and after; `memory_of(program) -> bytes` (a target's peak
    activation memory of a Program, injected by the caller) fills each report's peak_bytes_before/after.
    """
    steps = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
    check_order(steps, "given as a list")
    registry, reports, current = known_passes(), [], model
    peak = PeakMemory(memory_of) if memory_of is not None else None
    for name, opts in steps:
        say = None if progress is None else (lambda msg, name=name: progress(f"{name}: {msg}"))
        if say is not None:
            say("starting")
        t0 = time.perf_counter()
        with deterministic_section():  # results independent of the core count (module doc)
            current, report = registry[name].fn(copy.deepcopy(current), calib, eval_data=eval_data, progress=say,
                                                **opts)
        report.seconds = round(time.perf_counter() - t0, 3)
        if peak is not None:
            peak.fill(report, before=reports[-1].peak_bytes_after if reports else peak.of(model), after=current)
        reports.append(report)
    return current, reports


class PeakMemory:
    """Peak memory of models through an injected `memory_of(program) -> bytes` (passes import no target)."""

    def __init__(self, memory_of: Callable[[Any], int]) -> None:
        self.memory_of = memory_of
        self.reason: str | None = None

    def of(self, model: Any) -> int | None:
        """Peak bytes of `model`'s Program (float or int8); None (with a reason) if it cannot be estimated."""
        from edgevit.lower import lower

        try:
            return int(self.memory_of(lower(model)))
        except (EdgevitError, NotImplementedError) as e:
            self.reason = f"peak memory not estimated: {e}"
            return None

    def fill(self, report: PassReport, before: int | None, after: Any) -> None:
        """Set the report's peak bytes before / after (a note says why when missing)."""
        report.peak_bytes_before, report.peak_bytes_after = before, self.of(after)
        if report.peak_bytes_after is None and self.reason:
            report.notes.append(self.reason)
