"""The target contract: what a backend provides, and how shared code finds one by name.

A backend is one package `edgevit.targets.<name>` that exposes `TARGET`, a `Target` subclass.
Shared code never imports a backend: `get_target(profile)` imports `edgevit.targets.<name>`
by name, where name is the profile's `target` field or, by default, its `kind` ("mcu", "cpu",
"fpga"). Backends that live outside the package (plug-ins, tests) call `register_target`.

    target = get_target(profile)
    problems = target.supports(program, profile)        # [] or reasons, before any work
    costs = target.estimate(program, profile)            # cheap, no codegen: Costs (backend/costs.py)
    files = target.build(program, profile, costs, vectors, **options)   # {relative path: text | bytes}
    target.runners()                                     # {runner name: Runner class}; target.default_runner

`build` returns every file of the artifact but the final manifest: it may return a partial
`manifest.json` with its own sections; `backend/artifact_write.py` adds the format, the target,
its runners and the digests, then writes the directory atomically.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from edgevit.backend.costs import Costs
from edgevit.errors import EdgevitError, UserInputError

TARGETS_PACKAGE = "edgevit.targets"


@dataclass(frozen=True)
class QuantConstraints:
    """What a target's integer kernels can execute, for the quant pass and `supports`.

    weight_bits: weight widths it runs; per_channel_weights: per-output-channel weight scales;
    per_tensor_activations: one scale per activation tensor (always true today);
    power_of_two_scales: requantization by shifts only (some FPGA overlays);
    residual_int16: an int16 residual stream."""

    weight_bits: tuple[int, ...] = (4, 8)
    per_channel_weights: bool = True
    per_tensor_activations: bool = True
    power_of_two_scales: bool = False
    residual_int16: bool = True


class Target(ABC):
    """A backend: early support checks, cheap cost estimates, artifact builds and its runners."""

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_runner: ClassVar[str] = ""

    def own_profile(self, profile):
        """`profile` (a Profile, or a shipped name / YAML path, loaded) if it is of this target's kind;
        UserInputError naming its kind otherwise."""
        from edgevit.profiles.profile import load_profile

        profile = load_profile(profile)
        if profile.kind != self.kind:
            raise UserInputError(f"profile {profile.name!r} is a {profile.kind!r} device; the {self.kind} target "
                                 f"needs a profile with `kind: {self.kind}` (see `edgevit profiles`)")
        return profile

    def supports(self, program, profile) -> list[str]:
        """Reasons this target cannot run `program` on `profile` (op, dtype, shape), [] when it can."""
        return []

    def check_profile(self, profile) -> None:
        """UserInputError when this target cannot compile for `profile` at all (e.g. a core or ISA it
        generates no code for), checked before any work; by default it can."""

    def check_options(self, options: dict[str, Any]) -> None:
        """UserInputError for a build option this target does not know or accept (before any work)."""
        if options:
            raise UserInputError(f"the {self.kind} target takes no build options (got {sorted(options)})")

    def quant_constraints(self, profile) -> QuantConstraints:
        """The integer formats this target's kernels execute on `profile`."""
        return QuantConstraints()

    @abstractmethod
    def estimate(self, program, profile) -> Costs:
        """Costs of `program` on `profile` without generating code (NAS calls this thousands of times)."""

    @abstractmethod
    def build(self, program, profile, costs: Costs, vectors, **options) -> dict[str, str | bytes]:
        """Every artifact file for `program` as {relative posix path: text or bytes}, built with the
        plan carried by `costs` (from `estimate`) and the test `vectors` (backend/vectors.py)."""

    def over_budget_hint(self, costs: Costs, program) -> str:
        """What to look at when `costs` exceed a budget (e.g. the largest buffers), or ""."""
        return ""

    def runners(self) -> dict[str, type]:
        """{name: Runner class} of the runners that can run this target's artifacts."""
        return {}

    def default_runner_for(self, profile) -> str:
        """The runner `edgevit run DIR` uses for an artifact built for `profile` (a function of the profile
        only, so artifacts stay the same bytes on every machine); by default `default_runner`."""
        return self.default_runner

    def flash(self, artifact, **options) -> dict:
        """Build `artifact` (an Artifact) for the profile's physical board and write it there (`edgevit
        flash DIR`); returns {tool, image, seconds, ...}. Options are the target's (MCU: tool, probe,
        stage, timeout). Targets whose artifacts do not go onto a board raise UserInputError."""
        raise UserInputError(f"the {self.kind} target cannot flash: its artifacts are not written onto a board "
                             "by a programming tool; run them with `edgevit run DIR` (see `--runner`)")

    def serve_emulated(self, artifact, port: int = 0, **options) -> None:
        """Run `artifact` (an Artifact) on the emulated board of its profile with the board's serial port
        on socket://127.0.0.1:`port` (0: a free one) until interrupted (`edgevit emulate DIR`). Options:
        ready(url), called once it listens; stage(message). Targets without such a board raise
        UserInputError."""
        raise UserInputError(f"the {self.kind} target has no emulated board with a serial port; `edgevit emulate` "
                             "serves MCU artifacts")


_REGISTERED: dict[str, Callable[[], Target]] = {}


def register_target(name: str, factory: Callable[[], Target]) -> None:
    """Make `name` resolve to `factory()` (a Target) without a package under edgevit/targets/.
    Registering a name again replaces it (tests register and unregister throw-away targets)."""
    _REGISTERED[name] = factory


def unregister_target(name: str) -> None:
    """Forget a target added with `register_target` (no-op when absent)."""
    _REGISTERED.pop(name, None)


def target_names() -> list[str]:
    """Every target name: the packages under edgevit/targets/ that expose `TARGET` and the registered
    ones, sorted."""
    pkg = importlib.import_module(TARGETS_PACKAGE)
    found = {m.name for m in pkgutil.iter_modules(pkg.__path__) if m.ispkg
             and hasattr(importlib.import_module(f"{TARGETS_PACKAGE}.{m.name}"), "TARGET")}
    return sorted(found | set(_REGISTERED))


def target_name_of(profile) -> str:
    """The target a profile compiles with: its `target` field, else its kind."""
    return getattr(profile, "target", None) or profile.kind


def _named(target: Target, name: str) -> Target:
    """`target`, checked to carry the name it was found by (artifacts record `kind` to find it again)."""
    if target.kind != name:
        raise EdgevitError(f"target {name!r} says its kind is {target.kind!r}; a Target's kind must be the name "
                           "it is found by (its package under edgevit/targets/ or its register_target name)")
    return target


def get_target(profile_or_name) -> Target:
    """The Target for a Profile (see `target_name_of`) or a target name; UserInputError naming the
    profile and the known targets when there is none."""
    name = profile_or_name if isinstance(profile_or_name, str) else target_name_of(profile_or_name)
    if name in _REGISTERED:
        return _named(_REGISTERED[name](), name)
    if name.isidentifier():
        try:
            module = importlib.import_module(f"{TARGETS_PACKAGE}.{name}")
        except ModuleNotFoundError as e:
            if e.name not in (f"{TARGETS_PACKAGE}.{name}",):
                raise
            module = None
        cls = getattr(module, "TARGET", None)
        if cls is not None:
            return _named(cls(), name)
    what = name if isinstance(profile_or_name, str) else f"profile {profile_or_name.name!r} ({name})"
    raise UserInputError(f"{what}: no backend can compile for it yet; targets available: "
                         f"{', '.join(target_names())}. Choose a profile of one of those kinds "
                         "(`edgevit profiles list`)")
