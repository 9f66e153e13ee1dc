"""Running external programs for the runners: tool lookup with install hints, `make`, and
processes with a time limit whose whole process group is killed on timeout.

Every failure becomes a user-facing error (edgevit/backend/errors.py) that names the command and
carries the tail of what it printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgevit.backend.errors import RunFailedError, RunTimeoutError, ToolchainError, output_tail

BUILD_TIMEOUT_S = 900.0
LINK_OVERFLOW = ("will not fit in region", "overflowed by")


@dataclass(frozen=True)
class Tool:
    """A program a runner needs: its name on PATH, what it is needed for and the Debian/Ubuntu
    package(s) that provide it (space-separated; empty: a package named like the binary)."""

    binary: str
    purpose: str
    packages: str = ""

    @property
    def apt(self) -> str:
        """The Debian/Ubuntu package(s) to install for it."""
        return self.packages or self.binary


@dataclass(frozen=True)
class ProcessOutput:
    """What a finished program printed, its exit status and how long it ran."""

    stdout: str
    stderr: str
    returncode: int
    elapsed_s: float


def require_tools(tools: list[Tool], runner: str, install_hint: str = "") -> dict[str, str]:
    """{binary: absolute path} for each tool; one ToolchainError naming every missing binary and
    the apt packages to install (followed by `install_hint` in parentheses, if given)."""
    found = {t.binary: shutil.which(t.binary) for t in tools}
    missing = [t for t in tools if not found[t.binary]]
    if missing:
        names = ", ".join(f"`{t.binary}` ({t.purpose})" for t in missing)
        packages = " ".join(dict.fromkeys(p for t in missing for p in t.apt.split()))
        raise ToolchainError(f"the {runner} runner needs {names}, not found on PATH; install with "
                             f"`sudo apt-get install {packages}`" + (f" ({install_hint})" if install_hint else ""))
    return {name: str(path) for name, path in found.items()}


def run_process(cmd: list[str], *, cwd: Path, timeout: float, what: str, env: dict | None = None,
                check: bool = True) -> ProcessOutput:
    """Run `cmd` in its own process group, capturing stdout/stderr (decoded leniently).

    `what` names the step in errors (e.g. "the host run"). On timeout the whole group is
    killed and RunTimeoutError carries the partial output; with check=True a non-zero exit is a
    RunFailedError with the tail of stderr and stdout."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        text = _decode(out) + _decode(err)
        raise RunTimeoutError(f"{what} did not finish within {timeout:.0f} s and was killed ({show_command(cmd)}); "
                              f"pass a larger --timeout if it is just slow. Last lines of its output:\n"
                              f"{output_tail(text)}") from None
    result = ProcessOutput(_decode(out), _decode(err), proc.returncode, time.monotonic() - start)
    if check and result.returncode != 0:
        raise RunFailedError(f"{what} failed: {show_command(cmd)} exited with {exit_status(result.returncode)}. "
                             f"Last lines of its output:\n{output_tail(result.stdout + result.stderr)}")
    return result


def run_make(directory: Path, variables: dict[str, str], *, what: str, timeout: float = BUILD_TIMEOUT_S,
             goals: tuple[str, ...] = ()) -> None:
    """`make -C directory [goals...] VAR=value ...`; a failure is a RunFailedError with the compiler's
    last lines (and a hint when the linker says the model does not fit the device's memory)."""
    cmd = ["make", "-C", str(directory), *goals] + [f"{k}={v}" for k, v in variables.items()]
    try:
        run_process(cmd, cwd=directory, timeout=timeout, what=what)
    except RunFailedError as e:
        if any(s in str(e) for s in LINK_OVERFLOW):
            raise RunFailedError(f"{e}\nThe linker script uses the device's memory sizes: the model does not fit "
                                 "the device; compress it (see `edgevit compile --passes`)") from None
        raise


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def show_command(cmd: list[str]) -> str:
    """A command line for messages (long ones shortened)."""
    return " ".join(cmd if len(cmd) < 12 else cmd[:12] + ["..."])


def exit_status(code: int) -> str:
    """"code 3" or "signal SIGSEGV" for a process's return code."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
