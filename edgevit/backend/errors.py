"""Errors of the runners (all user-facing; see edgevit/errors.py).

- ToolchainError (exit 2): a program the runner needs (a compiler, make, an emulator) is
  missing; the message names the binary and the apt package that provides it.
- ArtifactError (exit 2): the artifact directory is incomplete, modified after `edgevit compile`
  (an edited manifest, a changed file, a file compile did not write: backend/artifact.py lists
  every difference), of an older format, or not an edgevit artifact.
- RunFailedError (exit 1): the build failed, the program crashed, exited non-zero, printed
  output that does not follow the `EV` protocol, or timed out; the message carries the tail
  of what it printed.
"""

from __future__ import annotations

from edgevit.errors import EdgevitError, UserInputError

TAIL_LINES = 20


class ToolchainError(UserInputError):
    """A required build tool or emulator is not installed. Exit code 2."""


class ArtifactError(UserInputError):
    """An artifact that is missing files, was modified (manifest, files, extra files), is of an older
    format, or is not an edgevit artifact. Exit code 2."""


class RunFailedError(EdgevitError):
    """Building or running the artifact failed (crash, non-zero exit, garbage output). Exit code 1."""

    exit_code = 1


class RunTimeoutError(RunFailedError):
    """The build or the run did not finish within its time limit. Exit code 1."""


def output_tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of `text` (indented, for an error message), or "(no output)"."""
    kept = [ln for ln in (text or "").rstrip().splitlines()][-lines:]
    if not kept:
        return "    (no output)"
    return "\n".join("    " + ln[:300] for ln in kept)
