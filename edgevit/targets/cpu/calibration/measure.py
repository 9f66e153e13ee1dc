"""Measure the latency of a Program compiled as a cpu library on this machine (for calibrate.py).

`build_bench(program, profile, directory)` builds the library artifact exactly as `edgevit compile`
does (`CpuTarget.build` on the Program, test vectors from random images), makes it with the
artifact's Makefile (the profile's compiler and flags) and a bench program timing `edgevit_run`:

- with the library's own bench program when the artifact has one (`src/bench.c` and a `bench`
  Makefile target: `./bench RUNS WARMUP THREADS` prints `EV-BENCH ... median_ms=...`);
- otherwise with FALLBACK_BENCH_C below, linked against libedgevit_model.a, which prints the same line
  (single-threaded: the library runs its parallel loops on the calling thread).

`time_bench(bench, threads)` runs it: `rounds` rounds of enough runs to fill ~`seconds_per_round`;
the result is the smallest round median (the machine is shared: slower rounds are others' load).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgevit.errors import UserInputError

BENCH_LINE = re.compile(r"EV-BENCH\b.*?\bmedian_ms=([0-9.eE+-]+)")
RUN_TIMEOUT_S = 300

FALLBACK_BENCH_C = r"""/* calibration bench (edgevit/targets/cpu/calibration/measure.py): ./calib_bench RUNS WARMUP
 * times RUNS calls of edgevit_run on the bundled vectors after WARMUP untimed ones and prints
 * "EV-BENCH runs=<n> median_ms=<m> p90_ms=<p>". */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "edgevit_model.h"
#include "vectors.h"

static edgevit_out_t output[EDGEVIT_OUTPUT_SIZE];

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  long runs = argc > 1 ? strtol(argv[1], NULL, 10) : 100, warmup = argc > 2 ? strtol(argv[2], NULL, 10) : 10;
  if (runs < 1 || warmup < 0) return 2;
  double *times = malloc((size_t)runs * sizeof *times);
  if (!times) return 2;
  for (long i = 0; i < warmup; i++)
    if (edgevit_run(edgevit_vector_inputs, output) != 0) return 1;
  for (long i = 0; i < runs; i++) {
    const edgevit_in_t *in = edgevit_vector_inputs + (size_t)(i % EDGEVIT_VECTOR_COUNT) * EDGEVIT_INPUT_SIZE;
    double t0 = now_ms();
    if (edgevit_run(in, output) != 0) return 1;
    times[i] = now_ms() - t0;
  }
  qsort(times, (size_t)runs, sizeof *times, by_value);
  printf("EV-BENCH runs=%ld median_ms=%.6f p90_ms=%.6f\n", runs, times[runs / 2], times[(runs * 9) / 10]);
  free(times);
  return 0;
}
"""


def write_artifact(program, profile, directory: Path, vectors: int = 2) -> dict[str, str | bytes]:
    """Build the cpu library artifact of `program` on `profile` (random-image vectors) into
    `directory` (replaced); returns its files."""
    from edgevit.backend.target import get_target
    from edgevit.backend.vectors import random_vectors

    target = get_target(profile)
    costs = target.estimate(program, profile)
    files = target.build(program, profile, costs, random_vectors(program, vectors))
    shutil.rmtree(directory, ignore_errors=True)
    for rel, content in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return files


def has_library_bench(directory: Path) -> bool:
    """True when the artifact in `directory` ships the library's bench program."""
    makefile = directory / "Makefile"
    return (directory / "src" / "bench.c").is_file() and makefile.is_file() and \
        re.search(r"^bench\s*:", makefile.read_text(), re.MULTILINE) is not None


def _make(directory: Path, *args: str) -> str:
    """`make -s -C directory ARGS`; its stdout. RuntimeError with make's last output lines on failure."""
    r = subprocess.run(["make", "-s", "-C", str(directory), *args], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT_S)
    if r.returncode != 0:
        raise RuntimeError(f"make {' '.join(args)} in {directory} failed: {(r.stdout + r.stderr)[-1500:]}")
    return r.stdout


def make_bench(directory: Path) -> tuple[list[str], str]:
    """Make the library and a bench program in `directory`; (command, which bench)."""
    if has_library_bench(directory):
        _make(directory, "bench")
        return [str(directory / "bench")], "library bench (src/bench.c)"
    _make(directory, "libedgevit_model.a")
    (directory / "src" / "calib_bench.c").write_text(FALLBACK_BENCH_C)
    cc = _make(directory, "--eval=print-cc: ; @echo $(CC) $(TARGET_FLAGS)", "print-cc").split()
    r = subprocess.run([*cc, "-O2", "-std=c11", "-Iinclude", "-Isrc", "-o", "calib_bench", "src/calib_bench.c",
                        "src/vectors.c", "libedgevit_model.a", "-lm"], cwd=directory, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"compiling the calibration bench failed: {r.stderr[-1500:]}")
    return [str(directory / "calib_bench")], "calibration bench (calibration/measure.py)"


@dataclass(frozen=True)
class Bench:
    """A made bench program: its path, whether it is the library's (takes THREADS) and which one."""

    path: str
    library: bool

    @property
    def which(self) -> str:
        """For the calibration record."""
        return "library bench (src/bench.c)" if self.library else "calibration bench (calibration/measure.py)"


def build_bench(program, profile, directory: Path) -> Bench:
    """Write `program`'s cpu library artifact into `directory` and make its bench program."""
    write_artifact(program, profile, Path(directory))
    command, which = make_bench(Path(directory))
    return Bench(command[0], which.startswith("library"))


def run_bench(bench: Bench, runs: int, warmup: int, threads: int) -> float:
    """Median ms of one bench invocation (`threads` only reaches the library bench)."""
    args = [bench.path, str(runs), str(warmup)] + ([str(threads)] if bench.library else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    m = BENCH_LINE.search(r.stdout)
    if r.returncode != 0 or m is None:
        raise RuntimeError(f"{' '.join(args)} failed (exit {r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")
    return float(m.group(1))


def time_bench(bench: Bench, threads: int = 1, rounds: int = 3, seconds_per_round: float = 0.4) -> float:
    """The smallest of `rounds` median latencies (ms), each round sized to ~`seconds_per_round`;
    UserInputError for threads > 1 without the library bench (the fallback runs one thread)."""
    if threads != 1 and not bench.library:
        raise UserInputError(f"threads {threads}: the artifact has no library bench program (src/bench.c), "
                             "so only 1 thread can be measured")
    pilot = run_bench(bench, 3, 1, threads)
    runs = int(min(400, max(15, seconds_per_round * 1e3 / max(pilot, 1e-3))))
    return min(run_bench(bench, runs, max(2, runs // 10), threads) for _ in range(rounds))
