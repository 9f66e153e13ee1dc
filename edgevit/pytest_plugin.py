"""edgevit's pytest plugin: latency, memory and bit-exactness tests a team keeps in its own CI.

Installed with edgevit (entry point `pytest11: edgevit`), so any test suite can write

    def test_model_fits_its_budget(edgevit_artifact, edgevit_run):
        art = edgevit_artifact("models/fmnist-tiny", "stm32f746-disco", passes="quant(w=8,a=8)")
        run = edgevit_run(art)
        assert run.matches == run.count          # bit-exact with the reference interpreter
        assert run.latency_ms < 100              # measured on a board, else the instruction estimate
        assert run.memory["sram"].used < 64 * 1024

and choose where it runs on the command line:

    pytest --edgevit-runner qemu                     # the profile's emulated board (default: the artifact's runner)
    pytest --edgevit-runner host                     # this machine's compiler
    pytest --edgevit-runner ssh:pi@rpi4.local        # a CPU board over ssh ([user@]host[:port])
    pytest --edgevit-runner serial:/dev/ttyACM0 --edgevit-flash    # a real board: flash, then run over its UART
    pytest --edgevit-runner serial:socket://127.0.0.1:5555         # `edgevit emulate DIR --port 5555`

Options: --edgevit-runner, --edgevit-count N (vectors per run; also how many the artifacts
bundle), --edgevit-timeout SECONDS, --edgevit-flash and --edgevit-baud (serial runner).

Fixtures: `edgevit_runner` (the parsed RunnerChoice), `edgevit_run(artifact_dir, count=None)
-> EdgevitRun` and `edgevit_artifact(model, profile, passes=None, **compile_options) -> Path`
(compiled once per session and arguments into a temporary directory). A test skips, with the
reason, when the chosen runner cannot run the artifact's target or a program the runner needs
is not installed; every other problem (no board on the port, a flash error, a mismatch) fails it.
Without these options and fixtures nothing changes: the plugin only adds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

DEFAULT_VECTORS = 20  # vectors an artifact bundles when neither --edgevit-count nor `vectors=` says


@dataclass(frozen=True)
class RunnerChoice:
    """The runner `--edgevit-runner` names: `name` (None: each artifact's default runner), the runner
    options it implies (serial: port; ssh: ssh_host, ssh_user, ssh_port) and the text given."""

    name: Optional[str]
    options: dict = field(default_factory=dict)
    text: str = ""

    def describe(self) -> str:
        """For messages: the option as given, or "the artifact's default runner"."""
        return f"--edgevit-runner {self.text}" if self.text else "the artifact's default runner"


def parse_runner_choice(text: Optional[str]) -> RunnerChoice:
    """The RunnerChoice for an --edgevit-runner value: NAME, serial:PORT or ssh:[USER@]HOST[:PORT]
    (None or "": the artifacts' default runners). pytest.UsageError for serial without a port or a
    malformed value."""
    if not text:
        return RunnerChoice(None)
    name, sep, rest = text.partition(":")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise pytest.UsageError(f"--edgevit-runner {text!r}: expected a runner name (qemu, host, ...), "
                                "serial:PORT or ssh:[USER@]HOST[:PORT]")
    if name == "serial":
        if not rest:
            raise pytest.UsageError(f"--edgevit-runner {text!r}: the serial runner needs the board's port, e.g. "
                                    "serial:/dev/ttyACM0 or serial:socket://127.0.0.1:5555")
        return RunnerChoice("serial", {"port": rest}, text)
    if name == "ssh":
        return RunnerChoice("ssh", _ssh_options(rest, text) if rest else {}, text)
    if sep:
        raise pytest.UsageError(f"--edgevit-runner {text!r}: only serial:PORT and ssh:HOST take a value "
                                f"after ':' (use --edgevit-runner {name})")
    return RunnerChoice(name, {}, text)


def _ssh_options(rest: str, text: str) -> dict:
    """{ssh_host, ssh_user?, ssh_port?} of "[user@]host[:port]"."""
    user, _, hostport = rest.rpartition("@")
    host, _, port = hostport.partition(":")
    if not host or (port and not port.isdigit()):
        raise pytest.UsageError(f"--edgevit-runner {text!r}: write ssh:[USER@]HOST[:PORT], e.g. ssh:pi@rpi4.local:22")
    options = {"ssh_host": host}
    if user:
        options["ssh_user"] = user
    if port:
        options["ssh_port"] = int(port)
    return options


@dataclass(frozen=True)
class EdgevitRun:
    """One checked run of an artifact's test vectors (edgevit.backend.run.run_vectors).

    latency_ms: per inference, measured when the runner measures (a board's cycle counter or a
    benching runner: the median), else the instruction-count estimate at the profile's clock;
    None when the runner gives neither. latency_kind: "measured", "estimated" or None.
    matches / count: vectors bit-exact (float: within tolerance) with the reference, and run.
    top1: top-1 on the device's outputs. instructions: executed instructions per inference
    (counting runners), else None. memory: the artifact's resource pools by name (MCU: "sram",
    "flash"; CPU: "ram"), each a Pool with used, budget, unit, detail, fits. raw: the full result
    dict, as `edgevit run --json` prints it."""

    latency_ms: Optional[float]
    latency_kind: Optional[str]
    matches: int
    count: int
    top1: float
    instructions: Optional[int]
    memory: dict
    raw: dict
    runner: str
    artifact: str

    def __repr__(self) -> str:
        latency = "no latency" if self.latency_ms is None else f"{self.latency_ms:.3f} ms {self.latency_kind}"
        return (f"EdgevitRun({self.artifact} on {self.runner}: {self.matches}/{self.count} match, {latency}, "
                f"top-1 {self.top1:.2%})")


def latency_of(result: dict) -> tuple[Optional[float], Optional[str]]:
    """(latency_ms, "measured" | "estimated") of a run's result dict, (None, None) without either."""
    if result.get("latency_ms_median") is not None:
        return float(result["latency_ms_median"]), "measured"
    if result.get("estimated_latency_ms") is not None:
        return float(result["estimated_latency_ms"]), "estimated"
    return None, None


def memory_of(artifact) -> dict:
    """{pool name: Pool} of a loaded artifact: its Program's costs on its profile, as `edgevit compile`
    reported them ({} for an artifact from before artifacts carried their Program)."""
    from edgevit.backend.artifact_program import PROGRAM_JSON, load_program
    from edgevit.backend.target import get_target

    if PROGRAM_JSON not in artifact.files:
        return {}
    costs = get_target(artifact.target_info()["kind"]).estimate(load_program(artifact), artifact.profile())
    return {pool.name: pool for pool in costs.pools}


def run_artifact_checked(artifact_dir, choice: RunnerChoice, *, count: Optional[int] = None,
                         timeout: Optional[float] = None, runner_options: Optional[dict] = None) -> EdgevitRun:
    """Run the bundled vectors of `artifact_dir` on `choice` and return an EdgevitRun; pytest.skip
    when the runner cannot run the artifact's target or one of its programs is missing."""
    from edgevit.backend.artifact import load_artifact
    from edgevit.backend.errors import ToolchainError
    from edgevit.backend.run import pick_runner, run_vectors

    art = load_artifact(artifact_dir)
    info = art.target_info()
    if choice.name is not None and choice.name not in info["runners"]:
        pytest.skip(f"{choice.describe()}: the {choice.name} runner cannot run {art.root} (a {info['kind']} "
                    f"artifact; its runners: {', '.join(info['runners'])})")
    runner = pick_runner(art, choice.name, **choice.options, **(runner_options or {}))
    try:
        runner.check(art, art.profile())
    except ToolchainError as e:
        pytest.skip(f"{choice.describe()}: {e}")
    try:
        result = run_vectors(art, runner, count=count, timeout=timeout, progress=False)
    except ToolchainError as e:
        if type(e) is not ToolchainError:  # a tool that is there but cannot work (e.g. USB permission): a failure
            raise
        pytest.skip(f"{choice.describe()}: {e}")
    latency, kind = latency_of(result)
    return EdgevitRun(latency_ms=latency, latency_kind=kind, matches=int(result["matches"]), count=int(result["count"]),
                      top1=float(result["top1"]), instructions=result.get("instructions_per_inference"),
                      memory=memory_of(art), raw=result, runner=runner.name, artifact=str(art.root))


def pytest_addoption(parser) -> None:
    """The --edgevit-* options (see the module docstring)."""
    group = parser.getgroup("edgevit", "edgevit: where edgevit_run runs artifacts")
    group.addoption("--edgevit-runner", default=None, metavar="RUNNER",
                    help="qemu | host | ssh:[USER@]HOST[:PORT] | serial:PORT (e.g. serial:/dev/ttyACM0, "
                         "serial:socket://127.0.0.1:5555); default: each artifact's default runner")
    group.addoption("--edgevit-count", type=int, default=None, metavar="N",
                    help="test vectors per edgevit_run (default: all bundled; edgevit_artifact bundles N)")
    group.addoption("--edgevit-timeout", type=float, default=None, metavar="SECONDS",
                    help="seconds allowed for one edgevit_run (default: the runner's)")
    group.addoption("--edgevit-flash", action="store_true", default=False,
                    help="serial runner: build the board firmware and flash it before running")
    group.addoption("--edgevit-baud", type=int, default=None, metavar="BAUD",
                    help="serial runner: the UART's baud rate (default 115200)")


def pytest_configure(config) -> None:
    """Check the --edgevit-* values once, before any test runs (pytest.UsageError when wrong)."""
    choice = parse_runner_choice(config.getoption("edgevit_runner"))
    count = config.getoption("edgevit_count")
    if count is not None and count < 1:
        raise pytest.UsageError(f"--edgevit-count must be at least 1 (got {count})")
    timeout = config.getoption("edgevit_timeout")
    if timeout is not None and timeout <= 0:
        raise pytest.UsageError(f"--edgevit-timeout must be a positive number of seconds (got {timeout})")
    serial_only = [o for o, v in (("--edgevit-flash", config.getoption("edgevit_flash")),
                                  ("--edgevit-baud", config.getoption("edgevit_baud"))) if v]
    if serial_only and choice.name != "serial":
        raise pytest.UsageError(f"{', '.join(serial_only)} only apply to --edgevit-runner serial:PORT")


def pytest_report_header(config) -> Optional[str]:
    """One header line naming the runner, when --edgevit-runner is given."""
    text = config.getoption("edgevit_runner")
    return f"edgevit: runner {text}" if text else None


def _serial_options(config) -> dict:
    options = {"flash": True} if config.getoption("edgevit_flash") else {}
    if config.getoption("edgevit_baud"):
        options["baud"] = config.getoption("edgevit_baud")
    return options


@pytest.fixture(scope="session")
def edgevit_runner(pytestconfig) -> RunnerChoice:
    """The runner chosen with --edgevit-runner (name None: each artifact's default runner)."""
    return parse_runner_choice(pytestconfig.getoption("edgevit_runner"))


@pytest.fixture(scope="session")
def edgevit_run(pytestconfig, edgevit_runner) -> Callable[..., EdgevitRun]:
    """edgevit_run(artifact_dir, count=None) -> EdgevitRun: run the artifact's bundled vectors on the
    chosen runner (count: --edgevit-count, else all bundled). Skips when the runner cannot run it
    here (another target's runner, a missing program)."""
    default_count = pytestconfig.getoption("edgevit_count")
    timeout = pytestconfig.getoption("edgevit_timeout")
    options = _serial_options(pytestconfig) if edgevit_runner.name == "serial" else {}

    def run(artifact_dir, count: Optional[int] = None) -> EdgevitRun:
        return run_artifact_checked(artifact_dir, edgevit_runner, count=count if count is not None else default_count,
                                    timeout=timeout, runner_options=options)

    return run


@pytest.fixture(scope="session")
def edgevit_artifact(pytestconfig, tmp_path_factory) -> Callable[..., Path]:
    """edgevit_artifact(model, profile, passes=None, **compile_options) -> Path: the artifact directory
    of checkpoint `model` compiled for `profile` (a shipped name or a YAML path) after `passes`,
    compiled once per session for the same arguments. compile_options go to edgevit compile
    (vectors, data, data_root, calib_size, schedule, ...); vectors defaults to --edgevit-count or 20."""
    cache: dict[Any, Path] = {}
    default_vectors = pytestconfig.getoption("edgevit_count") or DEFAULT_VECTORS

    def compile_once(model, profile, passes: Optional[str] = None, **options) -> Path:
        from edgevit.backend.compile import compile_artifact

        options.setdefault("vectors", default_vectors)
        key = (str(Path(model).resolve()), str(profile), passes, tuple(sorted((k, str(v)) for k, v in options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("edgevit-artifact") / "artifact"
            compile_artifact(model, profile, out, passes=passes, progress=False, **options)
            cache[key] = out
        return cache[key]

    return compile_once
