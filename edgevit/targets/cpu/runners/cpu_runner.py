"""What the runners of cpu artifacts share: the artifact files they build from, and building the
library and its check program with the artifact's Makefile."""

from __future__ import annotations

from pathlib import Path

from edgevit.backend.errors import RunFailedError
from edgevit.backend.process import run_make
from edgevit.backend.runner import Runner

EXECUTABLE = "check"


class CpuRunner(Runner):
    """A runner of cpu artifacts: copies include/, src/ and the Makefile; ticks are not timed."""

    build_dirs = ("include", "src", "Makefile")  # top-level entries: the Makefile is a file
    counts_instructions = False
    tick_name = "untimed tick"

    def required_files(self) -> tuple[str, ...]:
        """The artifact's Makefile and check program."""
        return ("Makefile", "src/check.c")

    def make_check(self, workdir: Path, variables: dict[str, str], what: str) -> Path:
        """`make -C workdir` with `variables` (`what` names the build in errors); the check program's path.
        RunFailedError when the Makefile produced no check program."""
        run_make(workdir, variables, what=what)
        exe = workdir / EXECUTABLE
        if not exe.is_file():
            raise RunFailedError(f"the Makefile finished without producing {EXECUTABLE}; the artifact is broken: "
                                 "recompile it with `edgevit compile`")
        return exe
