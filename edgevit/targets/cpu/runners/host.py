"""The host runner of cpu artifacts: `make` with the profile's toolchain, `./check COUNT` natively,
then `./bench RUNS WARMUP [THREADS]` for the latency figures.

    make -C <tmp> [EXTRA_CFLAGS="-fsanitize=address,undefined ..."]
    <tmp>/check COUNT                 # prints the EV lines (ticks 0: check times nothing)
    <tmp>/bench RUNS 20 [THREADS]     # one EV-BENCH line (targets/cpu/bench.py)

Options: `bench_runs` (--bench-runs, default 200; 0 skips the bench) and `threads` (--threads,
default: the artifact's EDGEVIT_DEFAULT_THREADS). The result gains latency_ms_median,
latency_ms_p90, latency_ms_min, latency_ms_mean, threads, peak_rss_bytes, bench_runs and
bench_warmup (RunOutput.extra). With --sanitize the bench runs the sanitized build too, and its
note says the times are not representative. Profiles whose code this machine cannot run (another
architecture, a missing ISA extension: targets/cpu/isa.check_native) are refused before anything
is built.
"""

from __future__ import annotations

from pathlib import Path

from edgevit.backend.errors import RunFailedError
from edgevit.backend.process import Tool, run_process
from edgevit.backend.runner import PROFILE_STEPS_CFLAGS, SANITIZE_CFLAGS, Stage, failed_run
from edgevit.errors import UserInputError
from edgevit.targets.cpu import bench
from edgevit.targets.cpu.isa import check_native, missing_target_features
from edgevit.targets.cpu.runners.cpu_runner import EXECUTABLE, CpuRunner



class CpuHostRunner(CpuRunner):
    """Build the library and its check program with the profile's compiler and run it natively."""

    name = "host"
    description = ("this machine, natively (the profile's toolchain), with measured latency; --sanitize adds "
                   "ASan/UBSan")

    def __init__(self, *, bench_runs: int = bench.DEFAULT_RUNS, threads: int | None = None, **options) -> None:
        """bench_runs: timed runs of the bench program (0: none); threads: its thread count (None:
        the artifact's default); other options: Runner's (sanitize, keep_build)."""
        bench.check_bench_options(bench_runs, threads)
        super().__init__(**options)
        self.bench_runs = bench_runs
        self.threads = threads

    @classmethod
    def supports_sanitize(cls) -> bool:
        """The host runner can build with sanitizers."""
        return True

    @classmethod
    def supports_bench(cls) -> bool:
        """The host runner measures latency with the artifact's bench program."""
        return True

    def tools(self, profile) -> list[Tool]:
        """make and the profile's C compiler."""
        return [Tool("make", "to build the library", "make"),
                Tool(profile.toolchain.cc, "the profile's C compiler", "gcc")]

    def check(self, artifact, profile) -> None:
        """UserInputError when this host cannot run the profile's code (naming what it lacks and the
        qemu runner for emulated profiles), then the tools and files."""
        try:
            check_native(profile)
        except UserInputError as e:
            if profile.emulator.kind != "qemu-user":
                raise
            raise UserInputError(f"{e}: try `edgevit run DIR --runner qemu`") from None
        missing = missing_target_features(artifact.manifest.get("llvm_target") or {})
        if missing:
            raise UserInputError(f"{artifact.root} was compiled for a machine with {', '.join(missing)} (its manifest's "
                                 "llvm_target), which this host lacks; recompile it here with `edgevit compile`")
        super().check(artifact, profile)

    @classmethod
    def supports_step_profile(cls) -> bool:
        """The check program can time every plan step (CLOCK_MONOTONIC ns, EV-STEPS lines)."""
        return True

    def step_tick_seconds(self, profile) -> float | None:
        """EV-STEPS ticks are nanoseconds."""
        return 1e-9

    def step_note(self, profile) -> str:
        """Per-step wall time measured by the check program."""
        return ("wall time of each plan step measured on this machine (CLOCK_MONOTONIC around the step in the check "
                "program, one run per vector, first run cold)")

    def build(self, workdir: Path, profile, count: int) -> tuple[list[str], Path]:
        """`make -C workdir` (EXTRA_CFLAGS: sanitizers, the per-step profile); returns ([workdir/check, count], workdir)."""
        flags = [f for f, on in ((SANITIZE_CFLAGS, self.sanitize), (PROFILE_STEPS_CFLAGS, self.profile_steps)) if on]
        variables = {"EXTRA_CFLAGS": " ".join(flags)} if flags else {}
        exe = self.make_check(workdir, variables, "library build (Makefile)")
        return [str(exe), str(count)], workdir

    def measure(self, workdir: Path, profile, timeout: float, stage: Stage) -> dict:
        """`./bench RUNS WARMUP [THREADS]` in the build directory, parsed (bench.parse_bench) into the
        result's latency keys; only {bench_runs: 0, latency_note} with bench_runs 0."""
        if self.bench_runs == 0:
            return {"bench_runs": 0, "latency_note": "not measured: --bench-runs 0 skipped the bench program"}
        exe = workdir / bench.EXECUTABLE
        if not exe.is_file():
            raise RunFailedError(f"the Makefile finished without producing {bench.EXECUTABLE}; the artifact is broken "
                                 "or older than the bench program: recompile it with `edgevit compile`")
        stage(f"timing {self.bench_runs} runs on {self.name}")
        cmd = [str(exe), *bench.bench_command(self.bench_runs, bench.DEFAULT_WARMUP, self.threads)]
        out = run_process(cmd, cwd=workdir, timeout=timeout, what=f"the {self.name} bench", env=self.run_env(),
                          check=False)
        source = f"host {bench.EXECUTABLE}" + (" (ASan/UBSan)" if self.sanitize else "")
        if out.returncode != 0:
            raise failed_run(source, out)
        figures = bench.parse_bench(out.stdout, source=f"{source} output")
        where = "this machine" + (" in an ASan/UBSan build (times not representative)" if self.sanitize else "")
        return bench.bench_result(figures, where)

    def source(self, profile) -> str:
        """e.g. "host check (ASan/UBSan)"."""
        return f"host {EXECUTABLE}" + (" (ASan/UBSan)" if self.sanitize else "")
