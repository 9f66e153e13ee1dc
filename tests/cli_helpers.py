"""Running the `edgevit` console entry point in-process from a test (so targets registered in the test
process are seen) and collecting what it printed."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from edgevit.cli import main


@dataclass
class CliResult:
    """Exit code and what the command printed on stdout / stderr."""

    code: int
    out: str
    err: str


def run_cli(monkeypatch, capsys, *args, flat_err: bool = False) -> CliResult:
    """Run `edgevit ARGS...` (arguments turned to str) through cli.main; the exit code is 0, the
    SystemExit code, or 1 for a non-integer exit message. flat_err: stderr with its whitespace runs
    (Rich's line wrapping) collapsed to single spaces."""
    monkeypatch.setattr(sys, "argv", ["edgevit", *map(str, args)])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return CliResult(code, out.out, " ".join(out.err.split()) if flat_err else out.err)
