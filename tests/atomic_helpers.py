"""Helpers for the crash-safety tests of edgevit/atomic_write.py and of every writer that uses it:
temporaries of a dead and of a live writer planted beside a target, listing leftovers, and a
writer subprocess killed with SIGKILL at a chosen moment.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from edgevit.atomic_write import MARKER, temp_name

ROOT = Path(__file__).resolve().parents[1]
LEFTOVER = re.compile(rf"\.{MARKER}-(tmp|old)-\d+-\d+-[0-9a-f]+$")


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def plant_dead(parent: Path, name: str, kind: str = "tmp", directory: bool = False) -> Path:
    """A temporary of `name` as a writer killed mid-write leaves it (its PID no longer runs)."""
    path = Path(parent) / f".{name}.{MARKER}-{kind}-{dead_pid()}-1-deadbeef"
    _fill(path, directory)
    return path


def plant_live(parent: Path, name: str, directory: bool = False) -> Path:
    """A temporary of `name` owned by this (live) test process, as a concurrent writer's."""
    path = Path(parent) / temp_name(name)
    _fill(path, directory)
    return path


def _fill(path: Path, directory: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        path.mkdir()
        (path / "partial.bin").write_bytes(b"half")
    else:
        path.write_bytes(b"half")


def leftovers(parent: Path) -> list[str]:
    """Names in `parent` that are edgevit temporaries."""
    return sorted(n for n in os.listdir(parent) if LEFTOVER.search(n)) if Path(parent).is_dir() else []


def start_paused(code: str, flag: Path, timeout: float = 120.0) -> subprocess.Popen:
    """Run `code` (Python, with `FLAG` bound to str(flag)) in a subprocess and return it once it has
    created `flag` (the moment chosen by the code, e.g. in the middle of a write: see PAUSE)."""
    program = f"FLAG = {str(flag)!r}\n" + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", program], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if proc.poll() is not None:
            err = proc.stderr.read()
            proc.stderr.close()
            raise AssertionError(f"the writer exited ({proc.returncode}) before its pause:\n{err}")
        if time.monotonic() > deadline:
            stop(proc)
            raise AssertionError(f"the writer did not reach its pause within {timeout} s")
        time.sleep(0.02)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL `proc` (if it still runs) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def kill_at_pause(code: str, flag: Path, timeout: float = 120.0) -> None:
    """Run `code` in a subprocess (see start_paused) and kill it with SIGKILL at its pause."""
    stop(start_paused(code, flag, timeout))


PAUSE = """
import os, time
from pathlib import Path

def pause():
    Path(FLAG).write_text("paused")
    time.sleep(600)
"""


def interrupt_before_rename(monkeypatch) -> None:
    """Make the next atomic write stop (KeyboardInterrupt, as Ctrl-C) once its temporary is written
    and before it is renamed into place: the target must stay as it was, with no temporary left."""
    from edgevit import atomic_write

    def interrupted(path):
        if LEFTOVER.search(Path(path).name):
            raise KeyboardInterrupt
    monkeypatch.setattr(atomic_write, "_fsync", interrupted)
    monkeypatch.setattr(atomic_write, "_fsync_tree", interrupted)


def check_atomic_writer(parent: Path, name: str, write, read, monkeypatch) -> None:
    """The properties every writer of parent/name has: write(i) writes version i, read() tells which
    version is there. Dead writers' leftovers go and live ones stay; an interrupted write keeps the
    previous version and leaves no temporary; the next write succeeds."""
    dead, live = plant_dead(parent, name), plant_live(parent, name)
    write(1)
    assert not dead.exists() and live.exists() and read() == 1
    live.unlink()
    interrupt_before_rename(monkeypatch)
    try:
        write(2)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError(f"writing {name} did not go through edgevit.atomic_write")
    monkeypatch.undo()
    assert read() == 1 and leftovers(parent) == []
    write(3)
    assert read() == 3 and leftovers(parent) == []
