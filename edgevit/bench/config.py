"""The `edgevit bench` configuration: a YAML file naming models, pass pipelines, profiles and, per
profile, the runners to measure them on; validated here into a BenchConfig with errors naming the field.

    version: 1
    name: nightly                     # optional, shown in the report
    data: fashion-mnist               # calibration and test vectors (compile --data); data_root optional
    vectors: 50                       # test vectors bundled in every artifact (compile --vectors)
    count: 50                         # vectors each cell runs (default: vectors; a runner may override)
    timeout: 600                      # optional, seconds per run
    kernel_profile: {count: 3}        # per-step times from a profiling build (false: off; default count 3)
    models:                           # checkpoint directories: a path, or {name, path}
      - models/fmnist-tiny
      - {name: small, path: models/fmnist-small}
    passes:                           # name: pipeline (compile --passes; null or "" for none)
      int8: "quant(w=8,a=8)"
    profiles:                         # shipped profile names or YAML paths, each with its runners
      - {profile: stm32f746-disco, runners: [qemu]}
      - profile: host
        runners: {host: {bench_runs: 200}}        # runner: its options (edgevit run's: count, bench_runs,
      - {profile: stm32f746-disco, runners: {serial: {port: /dev/ttyACM0}}}  # threads, port, baud, ssh_host...)
        compile: {schedule: fast}                  # optional build options of the profile's target

A profile entry without `runners` uses its target's default runner for it. Relative paths
(models, profile YAMLs, data_root) are looked up in the current directory, then beside the config
file (then, for the shipped default config, in the source checkout holding the package).
Validation loads every profile and pipeline and instantiates every runner with its options (a
runner that does not exist for the profile's target, or an option it does not take, is an error
here, before anything is compiled); whether a runner is *available here* (its tools, a port, a
host) is decided per cell when the bench runs (matrix.py), and unavailable cells are skipped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgevit.errors import EdgevitError, UserInputError

VERSION = 1
DEFAULT_CONFIG = Path(__file__).resolve().parent / "default.yaml"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding edgevit/ (models/ lives there)
TOP_KEYS = ("version", "name", "data", "data_root", "vectors", "count", "timeout", "kernel_profile", "models",
            "passes", "profiles")
PROFILE_KEYS = ("profile", "runners", "compile")
MODEL_KEYS = ("name", "path")
KERNEL_PROFILE_KEYS = ("count",)
DEFAULT_VECTORS = 50
DEFAULT_KERNEL_PROFILE_COUNT = 3
RUN_KEYS = ("count", "timeout")  # runner options the bench itself takes; the rest go to the runner


class ConfigError(UserInputError):
    """A bench configuration that does not validate: names the file and the field. Exit code 2."""


@dataclass(frozen=True)
class ModelEntry:
    """A checkpoint directory and the short name cells use."""

    name: str
    path: Path


@dataclass(frozen=True)
class RunnerEntry:
    """A runner of one profile: its name, the vectors to run, a time limit and its own options."""

    name: str
    count: int
    timeout: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileEntry:
    """A device profile (name or YAML path as given, and the loaded Profile), its target's kind,
    the runners to use and build options for its target."""

    label: str
    profile: Any
    target: str
    runners: tuple[RunnerEntry, ...]
    compile_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchConfig:
    """A validated bench configuration (see the module docstring)."""

    path: Path
    name: str
    data: str
    data_root: Path | None
    vectors: int
    models: tuple[ModelEntry, ...]
    passes: tuple[tuple[str, str | None], ...]  # (name, pipeline or None)
    profiles: tuple[ProfileEntry, ...]
    kernel_profile_count: int  # 0: no per-step profiling run
    timeout: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for bench.json (paths as strings, profiles by name)."""
        return {"path": str(self.path), "name": self.name, "data": self.data,
                "data_root": None if self.data_root is None else str(self.data_root), "vectors": self.vectors,
                "kernel_profile_count": self.kernel_profile_count, "timeout": self.timeout,
                "models": [{"name": m.name, "path": str(m.path)} for m in self.models],
                "passes": {n: p for n, p in self.passes},
                "profiles": [{"profile": p.profile.name, "target": p.target, "compile": p.compile_options,
                              "runners": {r.name: {"count": r.count, "timeout": r.timeout, **r.options}
                                          for r in p.runners}} for p in self.profiles]}


def load_config(path: str | Path | None = None) -> BenchConfig:
    """Read and validate the bench configuration at `path` (None: the shipped default.yaml);
    ConfigError naming the file and field for anything wrong."""
    path = DEFAULT_CONFIG if path is None else Path(path)
    if not path.is_file():
        raise ConfigError(f"no bench configuration file {str(path)!r}; pass a YAML file (see docs/bench.md) or "
                          "use `edgevit bench --default`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    bases = [Path.cwd(), path.resolve().parent] + ([SOURCE_ROOT] if path.resolve() == DEFAULT_CONFIG else [])
    return parse_config(data, path, bases)


def parse_config(data: Any, path: Path, bases: list[Path]) -> BenchConfig:
    """Validate the YAML document `data` read from `path`; relative paths resolve against `bases`."""
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the configuration must be a mapping with keys {', '.join(TOP_KEYS)}")
    _no_unknown(data, TOP_KEYS, where, "")
    version = data.get("version", VERSION)
    if version != VERSION:
        raise ConfigError(f"{where}: version: this edgevit reads bench configuration version {VERSION} (got {version!r})")
    vectors = _positive_int(data.get("vectors", DEFAULT_VECTORS), where, "vectors")
    count = _positive_int(data.get("count", vectors), where, "count")
    _at_most(count, vectors, where, "count")
    timeout = _timeout(data.get("timeout"), where, "timeout")
    data_root = data.get("data_root")
    if data_root is not None:
        data_root = _existing(data_root, bases, where, "data_root", directory=True)
    return BenchConfig(
        path=path, name=str(data.get("name") or path.stem), data=_text(data.get("data", "fashion-mnist"), where, "data"),
        data_root=data_root, vectors=vectors, models=_models(data.get("models"), bases, where),
        passes=_passes(data.get("passes"), where),
        profiles=_profiles(data.get("profiles"), bases, where, count, vectors, timeout),
        kernel_profile_count=_kernel_profile(data.get("kernel_profile", True), where, vectors), timeout=timeout)


# ---------------------------------------------------------------- sections

def _models(raw: Any, bases: list[Path], where: str) -> tuple[ModelEntry, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: models: give a non-empty list of checkpoint directories (a path, or {{name, path}})")
    out: list[ModelEntry] = []
    for i, item in enumerate(raw):
        at = f"models[{i}]"
        if isinstance(item, dict):
            _no_unknown(item, MODEL_KEYS, where, at)
            if "path" not in item:
                raise ConfigError(f"{where}: {at}: missing `path` (the checkpoint directory)")
            path = _existing(item["path"], bases, where, f"{at}.path")
            name = _name(item.get("name") or path.name, where, f"{at}.name")
        else:
            path = _existing(item, bases, where, at)
            name = _name(path.name, where, at)
        if any(m.name == name for m in out):
            raise ConfigError(f"{where}: {at}: a second model named {name!r}; give each a distinct `name`")
        out.append(ModelEntry(name, path))
    return tuple(out)


def _passes(raw: Any, where: str) -> tuple[tuple[str, str | None], ...]:
    if raw is None:
        return (("none", None),)
    if isinstance(raw, list):
        raw = {(p or "none"): p for p in raw}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: passes: give a mapping of names to pipelines, e.g. {{int8: \"quant(w=8,a=8)\"}}")
    from edgevit.passes.pipeline import parse_pipeline

    out = []
    for name, pipeline in raw.items():
        at = f"passes.{name}"
        name = _name(name, where, at)
        if pipeline is not None and not isinstance(pipeline, str):
            raise ConfigError(f"{where}: {at}: a pipeline is a string such as \"quant(w=8,a=8)\" (got {pipeline!r})")
        pipeline = pipeline or None
        if pipeline:
            try:
                parse_pipeline(pipeline)
            except EdgevitError as e:
                raise ConfigError(f"{where}: {at}: {e}") from None
        out.append((name, pipeline))
    return tuple(out)


def _profiles(raw: Any, bases: list[Path], where: str, count: int, vectors: int,
              timeout: float | None) -> tuple[ProfileEntry, ...]:
    from edgevit.backend.target import get_target
    from edgevit.profiles.profile import load_profile

    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: profiles: give a non-empty list of {{profile: NAME, runners: [...]}}")
    out: list[ProfileEntry] = []
    for i, item in enumerate(raw):
        at = f"profiles[{i}]"
        item = {"profile": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or "profile" not in item:
            raise ConfigError(f"{where}: {at}: give {{profile: NAME or YAML path, runners: [...]}}")
        _no_unknown(item, PROFILE_KEYS, where, at)
        label = _text(item["profile"], where, f"{at}.profile")
        candidate = next((b / label for b in bases if (b / label).is_file()), None) if label.endswith(
            (".yaml", ".yml")) else None
        try:
            profile = load_profile(candidate or label)
            target = get_target(profile)
        except EdgevitError as e:
            raise ConfigError(f"{where}: {at}.profile: {e}") from None
        options = item.get("compile") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: {at}.compile: a mapping of build options, e.g. {{schedule: fast}}")
        try:
            target.check_options(dict(options))
        except EdgevitError as e:
            raise ConfigError(f"{where}: {at}.compile: {e}") from None
        runners = _runners(item.get("runners"), target, profile, where, at, count, vectors, timeout)
        if any(p.profile.name == profile.name for p in out):
            raise ConfigError(f"{where}: {at}: profile {profile.name!r} is listed twice; list all its runners in one entry")
        out.append(ProfileEntry(label, profile, target.kind, runners, dict(options)))
    return tuple(out)


def _runners(raw: Any, target, profile, where: str, at: str, count: int, vectors: int,
             timeout: float | None) -> tuple[RunnerEntry, ...]:
    from edgevit.backend.runner import get_runner

    if raw is None:
        raw = {target.default_runner_for(profile): {}}
    elif isinstance(raw, list):
        raw = {_text(n, where, f"{at}.runners[{j}]"): {} for j, n in enumerate(raw)}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: {at}.runners: a list of runner names or a mapping runner: {{options}}")
    known = dict(target.runners())
    out = []
    for name, options in raw.items():
        here = f"{at}.runners.{name}"
        if name not in known:
            raise ConfigError(f"{where}: {here}: the {target.kind} target of profile {profile.name!r} has no runner "
                              f"{name!r}; its runners: {', '.join(sorted(known))}")
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"{where}: {here}: runner options are a mapping, e.g. {{count: 20}}")
        options = dict(options or {})
        run_count = _positive_int(options.pop("count", count), where, f"{here}.count")
        _at_most(run_count, vectors, where, f"{here}.count")
        run_timeout = _timeout(options.pop("timeout", timeout), where, f"{here}.timeout")
        try:
            get_runner(name, target, **options)
        except TypeError as e:
            raise ConfigError(f"{where}: {here}: an option the {name} runner does not take ({e}); edgevit run --help "
                              "lists the runners' options") from None
        except EdgevitError as e:
            raise ConfigError(f"{where}: {here}: {e}") from None
        out.append(RunnerEntry(name, run_count, run_timeout, options))
    return tuple(out)


def _kernel_profile(raw: Any, where: str, vectors: int) -> int:
    if raw is False or raw is None:
        return 0
    if raw is True:
        return min(DEFAULT_KERNEL_PROFILE_COUNT, vectors)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: kernel_profile: true, false or {{count: N}} (got {raw!r})")
    _no_unknown(raw, KERNEL_PROFILE_KEYS, where, "kernel_profile")
    n = _positive_int(raw.get("count", DEFAULT_KERNEL_PROFILE_COUNT), where, "kernel_profile.count")
    _at_most(n, vectors, where, "kernel_profile.count")
    return n


# ---------------------------------------------------------------- values

def _no_unknown(mapping: dict, allowed: tuple[str, ...], where: str, at: str) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(allowed)}"
            raise ConfigError(f"{where}: {at + '.' if at else ''}{key}: unknown key{hint}")


def _positive_int(value: Any, where: str, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {at}: a whole number of at least 1 (got {value!r})")
    return value


def _at_most(value: int, vectors: int, where: str, at: str) -> None:
    if value > vectors:
        raise ConfigError(f"{where}: {at}: {value} but every artifact bundles only `vectors` = {vectors} test vectors; "
                          f"lower {at} or raise vectors")


def _timeout(value: Any, where: str, at: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where}: {at}: a positive number of seconds (got {value!r})")
    return float(value)


def _text(value: Any, where: str, at: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {at}: a non-empty string (got {value!r})")
    return value.strip()


def _name(value: Any, where: str, at: str) -> str:
    text = _text(str(value) if isinstance(value, (int, float)) else value, where, at)
    if "/" in text or any(c.isspace() for c in text):
        raise ConfigError(f"{where}: {at}: names may not contain '/' or spaces (got {text!r}); cell keys join names "
                          "with '/'")
    return text


def _existing(raw: Any, bases: list[Path], where: str, at: str, directory: bool = True) -> Path:
    text = _text(raw, where, at)
    path = Path(text).expanduser()
    tried = [path] if path.is_absolute() else [b / path for b in bases]
    for p in tried:
        if p.is_dir() if directory else p.is_file():
            return p.resolve()
    looked = ", ".join(str(p.parent) for p in tried)
    raise ConfigError(f"{where}: {at}: no {'directory' if directory else 'file'} {text!r} (looked in {looked})")
