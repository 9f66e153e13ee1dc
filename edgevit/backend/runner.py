"""The Runner interface and the registry of runners by name (`edgevit run --runner NAME`).

A runner turns a verified Artifact into the device's raw output text (the `EV` protocol lines,
edgevit/backend/protocol.py); edgevit/backend/run.py parses and checks that text. Runners that build
from the artifact's sources follow one template (`Runner.execute`): copy the artifact directories
the runner builds from (`build_dirs`) into a fresh temporary directory (the artifact is never
written to), `build` there, then run the command `build` returned under a time limit. A runner
for real boards overrides `execute` to flash and read a UART instead, and returns the same RunOutput.

What the EV ticks mean is the runner's business too: whether they count executed instructions
(`counts_instructions`, `instructions_per_tick`), what one tick is called (`tick_name`), what the
latency estimate derived from them is (`latency_note`) or why there is none (`uncounted_reason`).

Runners that also time the model (`supports_bench()`: a bench program on real hardware) take the
options `bench_runs` and `threads` and add their figures to the result through `RunOutput.extra`
(MEASURED_KEYS: measured latency, threads, peak RSS); `get_runner` refuses those options for the
others, with the runner's `no_bench_reason`.

Runners that can time every plan step (`supports_step_profile()`: they build with
PROFILE_STEPS_CFLAGS, see backend/cdriver.py, and their program prints EV-STEPS lines) take the
option `profile_steps=True` (`edgevit bench` asks for it) and say what a step tick is worth
(`step_tick_seconds`, `step_note`); `get_runner` refuses that option for the others.

A target lists its runner classes (`Target.runners()`); `get_runner(name, target)` picks one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

from edgevit.errors import UserInputError
from edgevit.backend.artifact import Artifact
from edgevit.backend.errors import RunFailedError, output_tail
from edgevit.backend.process import ProcessOutput, Tool, exit_status, require_tools, run_process
from edgevit.backend.protocol import describe_ev_error

Stage = Callable[[str], None]
SANITIZE_CFLAGS = "-fsanitize=address,undefined -fno-sanitize-recover=all -g"  # runners that build with sanitize
PROFILE_STEPS_CFLAGS = "-DEDGEVIT_PROFILE_STEPS"  # runners that build with profile_steps (EV-STEPS lines)
BENCH_OPTIONS = {"bench_runs": "--bench-runs", "threads": "--threads"}  # runner options of runners that bench
MEASURED_KEYS = ("latency_ms_median", "latency_ms_p90", "latency_ms_min", "latency_ms_mean", "threads",
                 "peak_rss_bytes", "bench_runs", "bench_warmup")  # what a benching runner's extra holds


@dataclass(frozen=True)
class RunOutput:
    """The raw result of a run: the text carrying the EV lines, where it came from, wall time."""

    text: str
    source: str  # the runner's `source(profile)`, e.g. "host model_host"
    elapsed_s: float
    build_dir: Path | None = None  # kept build directory, if the runner was asked to keep it
    extra: dict = field(default_factory=dict)  # measured figures merged into the run's result (MEASURED_KEYS, latency_note)


class Runner(ABC):
    """Builds and runs an artifact's test vectors somewhere; subclasses set `name`/`description`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    build_dirs: ClassVar[tuple[str, ...]] = ()  # top-level artifact directories copied into the build dir
    counts_instructions: ClassVar[bool] = False  # True when EV ticks measure executed work
    tick_name: ClassVar[str] = "tick"  # what one EV tick is, for people (e.g. "SysTick tick")
    latency_note: ClassVar[str] = ("estimate: instructions counted by the runner at the profile's clock, "
                                   "assuming 1 instruction per cycle")
    install_hint: ClassVar[str] = ""  # added to the install command when a tool is missing
    no_bench_reason: ClassVar[str] = "it does not measure latency"  # why --bench-runs / --threads are refused
    ticks_are_cycles: bool = False  # True when EV ticks are core cycles at the clock the firmware runs at: latency is measured

    def __init__(self, *, sanitize: bool = False, keep_build: Path | None = None, profile_steps: bool = False) -> None:
        """sanitize: build with ASan/UBSan (runners whose supports_sanitize() is True; get_runner
        refuses the others); keep_build: copy the build dir there after the run; profile_steps: build
        with PROFILE_STEPS_CFLAGS (runners whose supports_step_profile() is True)."""
        self.sanitize = sanitize
        self.keep_build = keep_build
        self.profile_steps = profile_steps

    @classmethod
    def supports_step_profile(cls) -> bool:
        """Whether this runner can build with PROFILE_STEPS_CFLAGS and report EV-STEPS lines."""
        return False

    def step_tick_seconds(self, profile) -> float | None:
        """Seconds per EV-STEPS tick on `profile` (None: the ticks cannot be converted)."""
        return None

    def step_note(self, profile) -> str:
        """What the per-step times of a profile_steps run are, for people (measured or estimated, how)."""
        return ""

    def cycle_clock_hz(self, profile) -> float:
        """The clock (Hz) at which EV ticks count core cycles when `ticks_are_cycles`: the profile's
        clock unless the runner knows the firmware runs the core at another one."""
        return float(profile.clock_hz)

    @classmethod
    def supports_sanitize(cls) -> bool:
        """Whether this runner can build with sanitizers."""
        return False

    @classmethod
    def supports_bench(cls) -> bool:
        """Whether this runner measures latency (takes the BENCH_OPTIONS and fills RunOutput.extra)."""
        return False

    @classmethod
    def supports_stream(cls) -> bool:
        """Whether this runner streams inputs to a board over frames (`edgevit run --data`, backend/stream_run.py)."""
        return False

    def open_frames(self, artifact: Artifact, profile, stage: Stage):
        """A context manager yielding a frame client (backend/hil/link.FrameClient) talking to a board
        that runs `artifact` (runners whose supports_stream() is True)."""
        raise NotImplementedError(f"the {self.name} runner does not stream inputs")

    def board_reported(self, info, profile) -> None:
        """Take note of a board's HELLO reply (backend/hil/frames.BoardInfo), e.g. whether its ticks are
        cycles (`ticks_are_cycles`); streaming runners call it before the first inference."""

    @abstractmethod
    def tools(self, profile) -> list[Tool]:
        """The programs this runner needs for `profile` (checked before anything is built)."""

    def required_files(self) -> tuple[str, ...]:
        """Artifact files (manifest paths) this runner builds from, e.g. ("host/Makefile",)."""
        return ()

    def check(self, artifact: Artifact, profile) -> None:
        """ToolchainError / ArtifactError when a tool or a needed artifact file is missing."""
        require_tools(self.tools(profile), self.name, self.install_hint)
        if self.required_files():
            artifact.require(*self.required_files(), why=f"the {self.name} runner")

    def default_timeout(self, artifact: Artifact, profile, count: int) -> float:
        """Seconds allowed for running `count` vectors when the user gives no --timeout."""
        return 120.0 + 2.0 * count

    def instructions_per_tick(self, profile) -> float | None:
        """Executed instructions per EV tick on this runner/profile, or None when ticks mean nothing."""
        return None

    def uncounted_reason(self, profile, ticks: list[int]) -> str | None:
        """Why the EV ticks of a run (one per vector) give no instruction count, None when they do."""
        if not self.counts_instructions:
            return f"the {self.name} runner does not count instructions"
        if self.instructions_per_tick(profile) is None:
            return f"the {self.name} runner has no instructions-per-tick figure for profile {profile.name!r}"
        if not any(ticks):
            return f"the program reported 0 {self.tick_name}s"
        return None

    def machine(self, profile) -> str | None:
        """The (emulated) machine the program runs on, for the result's `machine` (None: not known)."""
        return None

    def build(self, workdir: Path, profile, count: int) -> tuple[list[str], Path]:
        """Build the copied sources in `workdir` for `count` vectors; return (command, cwd) to run."""
        raise NotImplementedError

    def measure(self, workdir: Path, profile, timeout: float, stage: Stage) -> dict:
        """Figures measured after a successful run in the same build directory (RunOutput.extra);
        {} unless the runner benches."""
        return {}

    def execute(self, artifact: Artifact, profile, count: int, timeout: float, stage: Stage) -> RunOutput:
        """Copy, build and run the artifact's first `count` vectors, then `measure`; return the
        program's stdout and the measured figures. Raises RunFailedError (build failure, crash,
        non-zero exit) or RunTimeoutError."""
        with build_directory(self.keep_build) as workdir:
            artifact.copy_build_tree(workdir, self.build_dirs)
            stage(f"building for {self.name}")
            cmd, cwd = self.build(workdir, profile, count)
            stage(f"running {count} vector{'s' if count != 1 else ''} on {self.name}")
            out = run_process(cmd, cwd=cwd, timeout=timeout, what=f"the {self.name} run", env=self.run_env(),
                              check=False)
            if out.returncode != 0:
                raise failed_run(self.source(profile), out)
            extra = self.measure(workdir, profile, timeout, stage)
            return RunOutput(out.stdout, self.source(profile), out.elapsed_s, self.keep_build, extra)

    def run_env(self) -> dict | None:
        """Environment for the run: inherited, plus (with sanitize) ASan/UBSan reporting to stderr and
        stopping at the first error, leaks included."""
        if not self.sanitize:
            return None
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    def source(self, profile) -> str:
        """Short label of where the output came from, for messages."""
        return self.name


def failed_run(source: str, out: ProcessOutput) -> RunFailedError:
    """The error for a run that exited non-zero: its status, edgevit_run's error code if it printed
    EV-ERROR, and the tail of stdout + stderr (sanitizer reports land there)."""
    detail = describe_ev_error(out.stdout)
    report = sanitizer_report(out.stderr)
    if report:
        shown = f"\nSanitizer report:\n{report}\nLast lines of its output:\n{output_tail(out.stdout, 5)}"
    else:
        shown = f"\nLast lines of its output:\n{output_tail(out.stdout + out.stderr)}"
    return RunFailedError(f"{source} exited with {exit_status(out.returncode)}{': ' + detail if detail else ''}"
                          + shown)


def sanitizer_report(stderr: str, lines: int = 14) -> str | None:
    """The start of an ASan/UBSan report in `stderr` (error line and stack) plus its SUMMARY line."""
    text = stderr.splitlines()
    starts = [i for i, ln in enumerate(text) if "ERROR: AddressSanitizer" in ln or "ERROR: LeakSanitizer" in ln
              or "runtime error:" in ln]
    if not starts:
        return None
    rest = text[starts[0]:]
    summary = next((i for i, ln in enumerate(rest) if "SUMMARY:" in ln), None)
    kept = rest[:lines] if summary is None or summary < lines else rest[:lines - 1] + [rest[summary]]
    if summary is not None and summary < lines:
        kept = rest[:summary + 1]
    return "\n".join("    " + ln[:300] for ln in kept)


@contextmanager
def build_directory(keep: Path | None = None) -> Iterator[Path]:
    """A fresh temporary build directory, removed afterwards (copied to `keep` first if given)."""
    workdir = Path(tempfile.mkdtemp(prefix="edgevit-run-"))
    try:
        yield workdir
    finally:
        if keep is not None:
            shutil.copytree(workdir, keep, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def runners_of(target) -> dict[str, type[Runner]]:
    """{name: Runner class} of a Target (backend/target.py)."""
    return dict(target.runners())


def get_runner(name: str, target, **options) -> Runner:
    """An instance of `target`'s runner called `name` (options: sanitize, keep_build, runner-specific
    ones; BENCH_OPTIONS given as None are dropped); UserInputError listing the target's runners
    when it has no such runner, the ones that can sanitize when sanitize=True asks a runner that
    cannot, and the ones that bench when a bench option asks a runner that does not."""
    runners = runners_of(target)
    if name not in runners:
        choices = ", ".join(f"{n} ({runners[n].description})" for n in sorted(runners)) or "none"
        raise UserInputError(f"--runner {name!r} cannot run a {target.kind} artifact; runners that can: {choices}")
    if options.get("sanitize") and not runners[name].supports_sanitize():
        able = sorted(n for n, cls in runners.items() if cls.supports_sanitize())
        if not able:
            raise UserInputError(f"--sanitize: no runner of a {target.kind} artifact builds with sanitizers")
        raise UserInputError(f"--sanitize only applies to the {' / '.join(able)} runner (got --runner {name}); "
                             f"run `edgevit run DIR --runner {able[0]} --sanitize`")
    if options.get("profile_steps") and not runners[name].supports_step_profile():
        able = sorted(n for n, cls in runners.items() if cls.supports_step_profile())
        raise UserInputError(f"the {name} runner cannot time plan steps; runners of a {target.kind} artifact that "
                             f"can: {', '.join(able) or 'none'}")
    options = {k: v for k, v in options.items() if not (k in BENCH_OPTIONS and v is None)}
    given = [BENCH_OPTIONS[k] for k in BENCH_OPTIONS if k in options]
    if given and not runners[name].supports_bench():
        able = sorted(n for n, cls in runners.items() if cls.supports_bench())
        raise UserInputError(f"{' / '.join(given)}: the {name} runner does not bench ({runners[name].no_bench_reason}); "
                             + (f"runners that can: {', '.join(able)}" if able else
                                f"no runner of a {target.kind} artifact measures latency"))
    return runners[name](**options)
