"""The bench matrix: models x passes x profiles x (each profile's) runners, as Cells, grouped by the
artifact they share, and whether a cell's runner is available on this machine.

    cells = expand(config)                 # in config order: model, passes, profile, runner
    for group in groups(cells): ...        # cells sharing (model, passes, profile): one compile
    unavailable_reason(cell)               # "the qemu runner needs `qemu-system-arm` ..." or None

A cell's `key` ("fmnist-tiny/int8/stm32f746-disco/qemu") names it in bench.json, the report and
baseline comparisons. Availability is checked twice: before compiling (the runner's tools for the
profile: a missing emulator or cross compiler skips the cell without compiling anything) and, once
the artifact exists, with the runner's own `check` (execute.py: a serial runner without a port, an
ssh runner without a host). Unavailable cells are *skipped* with the reason, never errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevit.bench.config import BenchConfig, ModelEntry, ProfileEntry, RunnerEntry
from edgevit.errors import UserInputError


@dataclass(frozen=True)
class Cell:
    """One measurement: a model compiled with a pipeline for a profile, run on one of its runners."""

    model: ModelEntry
    passes_name: str
    passes: str | None
    profile: ProfileEntry
    runner: RunnerEntry

    @property
    def key(self) -> str:
        """"model/passes/profile/runner", unique within a config."""
        return "/".join((self.model.name, self.passes_name, self.profile.profile.name, self.runner.name))

    @property
    def artifact_key(self) -> str:
        """"model/passes/profile": cells with the same artifact_key share one compile."""
        return "/".join((self.model.name, self.passes_name, self.profile.profile.name))

    def fields(self) -> dict:
        """The cell's identity for bench.json: key, model, model_path, passes_name, passes, profile, target, runner."""
        return {"key": self.key, "model": self.model.name, "model_path": str(self.model.path),
                "passes_name": self.passes_name, "passes": self.passes, "profile": self.profile.profile.name,
                "target": self.profile.target, "runner": self.runner.name}


def expand(config: BenchConfig) -> list[Cell]:
    """Every cell of the configuration, in config order (model, then passes, profile, runner)."""
    return [Cell(model, name, pipeline, profile, runner)
            for model in config.models
            for name, pipeline in config.passes
            for profile in config.profiles
            for runner in profile.runners]


def groups(cells: list[Cell]) -> list[list[Cell]]:
    """The cells grouped by artifact (model, passes, profile), groups and cells in their first order."""
    out: dict[str, list[Cell]] = {}
    for cell in cells:
        out.setdefault(cell.artifact_key, []).append(cell)
    return list(out.values())


def make_runner(cell: Cell, **extra):
    """A Runner instance of the cell's runner for its profile's target, with the cell's options
    (and `extra`, e.g. profile_steps=True)."""
    from edgevit.backend.runner import get_runner
    from edgevit.backend.target import get_target

    return get_runner(cell.runner.name, get_target(cell.profile.profile), **{**cell.runner.options, **extra})


def unavailable_reason(cell: Cell) -> str | None:
    """Why the cell's runner cannot run here before anything is compiled (a tool it needs for the
    profile is missing, the profile is not one it runs), or None when it may."""
    from edgevit.backend.process import require_tools

    runner = make_runner(cell)
    try:
        require_tools(runner.tools(cell.profile.profile), runner.name, runner.install_hint)
    except UserInputError as e:  # ToolchainError is one
        return str(e)
    return None
