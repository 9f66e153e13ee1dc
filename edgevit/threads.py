"""Thread policy: how many threads torch and NumPy's BLAS use, and which results may not depend on it.

Two thread pools live in an edgevit process: torch's intra-op pool (OpenMP, MKL) and the OpenBLAS
pool under NumPy. Both busy-wait between calls, so on a machine whose cores are all taken by one of
them the other one's threads compete for the same cores: calibrating a DeiT-Tiny-shaped model took
233 s with both pools at 2 threads on 2 cores and 26 s with OpenBLAS at one thread (issue #18).
Hence the policy the heavy library entry points (compile, eval, train, search, NAS workers) and so
the CLI commands on them apply with `apply_thread_policy`:

- torch intra-op threads = the cores this process may run on (`os.sched_getaffinity`, so a
  `taskset` or a container CPU set is honoured, capped by a cgroup CPU quota such as docker's
  `--cpus`), overridden by an option (`--threads`) or the environment variable EDGEVIT_THREADS;
- BLAS (every BLAS library threadpoolctl finds, i.e. NumPy's OpenBLAS) at one thread for the whole
  process: the cores belong to torch, and NumPy's heavy work here (calibration, the reference
  interpreter) runs as fast or faster on one BLAS thread when torch's pool is alive.

Determinism is a separate matter, handled where the results are made rather than by this policy
(library callers that never apply it get the same bytes): a float BLAS product depends on the
BLAS thread count (OpenBLAS splits the K loop of a GEMM differently with 2 threads than with 1
for some K, e.g. K = 500 on an AVX-512 machine, and splits long dot products / GEMV reductions
across threads), and torch's reductions and backward passes depend on its intra-op thread count
(the gradients of a small ViT differ in 40% of their elements between 1 and 2 threads). So:

- `single_thread_blas()`: the float work whose results reach an artifact (the float reference
  interpreter, which makes float test vectors, and calibration's `run_tapped`) runs with one BLAS
  thread: the same reduction order on every machine whatever its core count. Integer programs
  need nothing: their matmuls are exact integers in floats;
- `deterministic_section()`: the pass pipeline (calibration, re-parameterisation, pruning
  importance and fine-tuning) additionally runs torch with one intra-op thread.

Both are re-entrant and restore the previous counts on exit. With the same inputs, NumPy / torch
builds and CPU instruction set, artifacts are byte-identical for any number of cores.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgevit.errors import UserInputError

ENV_VAR = "EDGEVIT_THREADS"
CGROUP_FILES = (("/sys/fs/cgroup/cpu.max",),  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
                ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"))  # v1

_lock = threading.RLock()
_blas_depth = 0  # nesting depth of single_thread_blas()
_blas_restore = None  # the threadpoolctl limiter of the outermost single_thread_blas(), if it changed anything
_controller = None  # threadpoolctl.ThreadpoolController, built once (it scans the loaded libraries)


def available_cores() -> int:
    """Cores this process may use, >= 1: its CPU affinity set (os.cpu_count() where that is unknown),
    capped by a cgroup CPU quota rounded up (a container started with --cpus=2 on a 64-core host)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def cgroup_cpu_quota() -> int | None:
    """CPUs the cgroup CPU quota allows (quota / period, rounded up), None when there is no quota."""
    for files in CGROUP_FILES:
        try:
            fields = " ".join(Path(f).read_text() for f in files).split()
        except OSError:
            continue
        try:
            quota, period = int(fields[0]), int(fields[1])
        except (ValueError, IndexError):  # "max": no quota
            return None
        return -(-quota // period) if quota > 0 and period > 0 else None
    return None


def parse_threads(value, source: str) -> int:
    """A thread count given by the user (`source` names the option or variable) -> int >= 1.

    UserInputError naming `source` for anything else (0, negative, not an integer)."""
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1 or str(value).strip().lstrip("+") != str(n):
        raise UserInputError(f"{source} must be a whole number of threads >= 1 (got {value!r}); "
                             f"leave it unset to use the {available_cores()} core(s) available to this process")
    return n


def torch_threads(threads: int | None = None) -> int:
    """The torch intra-op thread count the policy asks for: `threads` if given (an option), else
    EDGEVIT_THREADS if set, else `available_cores()`. UserInputError for a bad value."""
    if threads is not None:
        return parse_threads(threads, "--threads")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return parse_threads(env, ENV_VAR)
    return available_cores()


def apply_thread_policy(threads: int | None = None) -> int:
    """Apply the policy (module doc) to this process: torch intra-op threads = `torch_threads(threads)`,
    every BLAS pool at one thread. Returns the torch thread count. Safe to call again (a later call
    with another count wins)."""
    import torch

    n = torch_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    with _lock:
        _blas_controller().limit(limits=1, user_api="blas")
    return n


def blas_threads() -> int | None:
    """The largest thread count of the BLAS pools threadpoolctl sees now (None: no BLAS found)."""
    counts = [lib.num_threads for lib in _blas_controller().select(user_api="blas").lib_controllers]
    return max(counts) if counts else None


@contextmanager
def single_thread_blas() -> Iterator[None]:
    """Within: every BLAS pool runs one thread (float BLAS results independent of the core count).

    Re-entrant; the outermost exit restores the previous counts (nothing to do, and no cost beyond a
    check, when the policy has already set BLAS to one thread)."""
    global _blas_depth, _blas_restore
    with _lock:
        _blas_depth += 1
        if _blas_depth == 1:
            _blas_restore = None
            blas = _blas_controller().select(user_api="blas")
            if any(lib.num_threads != 1 for lib in blas.lib_controllers):
                _blas_restore = blas.limit(limits=1)
    try:
        yield
    finally:
        with _lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_restore is not None:
                _blas_restore.restore_original_limits()
                _blas_restore = None


@contextmanager
def deterministic_section() -> Iterator[None]:
    """Within: torch on one intra-op thread and BLAS on one thread, for work whose results reach an
    artifact (the pass pipeline); the previous torch thread count is restored on exit."""
    import torch

    with single_thread_blas():
        before = torch.get_num_threads()
        if before != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if before != 1:
                torch.set_num_threads(before)


def _blas_controller():
    """The process's threadpoolctl controller (built on first use; it lists the loaded libraries).

    UserInputError if threadpoolctl (a dependency) is missing: without it the BLAS thread count
    cannot be fixed, and artifacts would depend on the machine."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            raise UserInputError("threadpoolctl is not installed (edgevit needs it to fix the BLAS thread "
                                 "count): pip install threadpoolctl, or reinstall edgevit") from None
        __import__("numpy")  # loads the BLAS the controller must see

        with _lock:
            if _controller is None:
                _controller = ThreadpoolController()
    return _controller
