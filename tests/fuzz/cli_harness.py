"""Running one fuzzed command line in-process and judging it (the CLI fuzzer's property).

`run_invocation` runs `edgevit ARGV` through `tests.cli_helpers.run_cli` (the console entry point,
in this process) with the example's own cwd and temporary directory, under an address-space limit
for commands that may try to allocate without bound (so a missing size guard is a MemoryError the
fuzzer reports, not a machine-wide OOM), and restores the global state a command may change (torch
threads, environment variables, the Typer app's registered sub-commands).

`problems(outcome)` is the property; any item is a finding:
- the exit code is 0, 2 (bad input) or 3 (over budget) -- `run` may also exit 1 with one `error:`
  line, its documented code for a program that failed or timed out on the device;
- no Python traceback, neither raised out of the entry point nor printed;
- not 0 when the command line carries a value that must be refused (`Invocation.must_fail`);
- when the exit code is not 0: nothing new or changed in the output place (OUT and its siblings:
  no partial artifact, no `.tmp` / `.old` leftovers);
- always: nothing left in the command's cwd and temporary directory.
"""

from __future__ import annotations

import hashlib
import os
import resource
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from tests.cli_helpers import run_cli
from tests.fuzz.cli_strategies import Invocation, World

ALLOWED = {0, 2, 3}
# what third-party libraries keep in TMPDIR on purpose, once per user: torch's compile cache and
# onnxruntime's `.ses` (a timestamp and a session UUID)
THIRD_PARTY_CACHES = ("torchinductor_", ".ses")
MEMORY_HEADROOM = 6 * 2**30  # address space a command may add to what the test process already maps


@dataclass
class Outcome:
    """What one command line did."""

    invocation: Invocation
    code: int | None
    out: str
    err: str
    crash: str | None  # the traceback of an exception that escaped the entry point
    before: dict
    after: dict
    cwd_left: list[str]
    tmp_left: list[str]


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (files), "dir" or "link -> target" for everything under `root`."""
    out = {}
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = f"link -> {os.readlink(p)}"
            elif p.is_dir():
                out[rel] = "dir"
            else:
                try:
                    out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
                except OSError as e:
                    out[rel] = f"unreadable ({e.strerror})"
    return out


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


class _Limits:
    """Address-space limit + saved global state around one command."""

    def __init__(self, limit_memory: bool) -> None:
        self.limit_memory = limit_memory

    def __enter__(self) -> "_Limits":
        import torch

        from edgevit.cli import app

        self.threads = torch.get_num_threads()
        self.environ = dict(os.environ)
        self.app = (list(app.registered_commands), list(app.registered_groups))
        self.rlimit = resource.getrlimit(resource.RLIMIT_AS)
        if self.limit_memory:
            resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + MEMORY_HEADROOM, self.rlimit[1]))
        return self

    def __exit__(self, *exc) -> None:
        import torch

        from edgevit.cli import app

        resource.setrlimit(resource.RLIMIT_AS, self.rlimit)
        torch.set_num_threads(self.threads)
        os.environ.clear()
        os.environ.update(self.environ)
        app.registered_commands[:], app.registered_groups[:] = self.app


def run_invocation(inv: Invocation, world: World, monkeypatch, capsys) -> Outcome:
    """Run one command line in-process (cwd and TMPDIR: the example's own) and record what it did."""
    before = snapshot(world.outplace)
    code, out, err, crash = None, "", "", None
    with monkeypatch.context() as m:
        m.chdir(world.cwd)
        m.setenv("TMPDIR", str(world.tmp))
        m.setattr(tempfile, "tempdir", str(world.tmp))
        with _Limits(inv.limit_memory):
            try:
                r = run_cli(m, capsys, *inv.argv)
                code, out, err = r.code, r.out, r.err
            except BaseException as e:  # noqa: BLE001 - anything escaping main() is a finding
                if isinstance(e, KeyboardInterrupt):
                    raise
                captured = capsys.readouterr()
                out, err = captured.out, captured.err
                crash = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return Outcome(inv, code, out, err, crash, before, snapshot(world.outplace),
                   sorted(os.listdir(world.cwd)),
                   sorted(n for n in os.listdir(world.tmp) if not n.startswith(THIRD_PARTY_CACHES)))


def problems(o: Outcome) -> list[str]:
    """Every way the outcome breaks the fuzzer's property (empty: it holds)."""
    found = []
    if o.crash is not None:
        found.append(f"exception escaped the CLI:\n{o.crash[-3000:]}")
    else:
        allowed = ALLOWED | ({1} if o.invocation.command == "run" and "error:" in o.err else set())
        if o.code not in allowed:
            found.append(f"exit code {o.code}")
    if o.code == 0 and o.invocation.must_fail:
        found.append(f"exit 0 although the command line carries a bad value: {', '.join(o.invocation.must_fail)}")
    for stream, text in (("stderr", o.err), ("stdout", o.out)):
        if "Traceback (most recent call last)" in text:
            found.append(f"a traceback on {stream}:\n{text[-3000:]}")
    if o.code != 0 and o.after != o.before:
        new = sorted(set(o.after) - set(o.before))
        changed = sorted(k for k in set(o.after) & set(o.before) if o.after[k] != o.before[k])
        gone = sorted(set(o.before) - set(o.after))
        found.append(f"exit {o.code} but the output place changed: new {new[:10]}, changed {changed[:10]}, "
                     f"removed {gone[:10]}")
    if o.cwd_left:
        found.append(f"left in the working directory: {o.cwd_left[:10]}")
    if o.tmp_left:
        found.append(f"left in TMPDIR: {o.tmp_left[:10]}")
    return found


def describe(o: Outcome) -> str:
    """The command line and what it printed, for a failure message or a findings file."""
    err = o.err.strip().splitlines()
    return (f"edgevit {' '.join(_quote(a) for a in o.invocation.argv)}\n"
            f"exit {o.code}; stderr: {' | '.join(err[-6:])[:1500]}")


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
