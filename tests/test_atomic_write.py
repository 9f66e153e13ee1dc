"""edgevit/atomic_write.py: whole-or-nothing files and directories, recognisable temporaries,
cleanup of dead writers' leftovers (and only theirs), errors naming the path, check_writable."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from edgevit import atomic_write
from edgevit.atomic_write import (check_writable, make_dir, remove_stale, temp_name, write_dir_atomically,
                                  write_file_atomically, writer_alive)
from edgevit.errors import UserInputError
from tests.atomic_helpers import (PAUSE, dead_pid, kill_at_pause, leftovers, plant_dead, plant_live, start_paused,
                                  stop)


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _fill(files: dict[str, str]):
    def writer(d: Path) -> None:
        for rel, text in files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
    return writer


OLD = {"manifest.json": "old", "src/model.c": "old model"}
NEW = {"manifest.json": "new", "src/model.c": "new model", "src/extra.c": "new file"}


# --- names and liveness ---------------------------------------------------------------------------

def test_temporary_names_carry_the_marker_the_pid_and_the_start_time():
    name = temp_name("art")
    assert name.startswith(".art.edgevit-tmp-") and f"-{os.getpid()}-" in name
    assert temp_name("art") != name
    assert temp_name("art", "old").startswith(".art.edgevit-old-")


def test_writer_alive_knows_dead_reused_and_live_pids():
    pid, start = os.getpid(), atomic_write._this_start()
    assert writer_alive(pid, start)
    assert not writer_alive(dead_pid(), "1")
    if start != "0":  # /proc tells start times: a PID reused by a later process is not the writer
        assert not writer_alive(pid, str(int(start) + 1))


def test_a_zombie_writer_counts_as_dead(tmp_path):
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc: zombies cannot be told apart")
    proc = subprocess.Popen(["true"])
    try:
        stat = Path(f"/proc/{proc.pid}/stat")
        for _ in range(1000):  # exited but not reaped: a zombie
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.01)
        assert not writer_alive(proc.pid, "0")
    finally:
        proc.wait()


# --- remove_stale ---------------------------------------------------------------------------------

def test_remove_stale_deletes_dead_writers_leftovers_only(tmp_path):
    dead_file, dead_dir = plant_dead(tmp_path, "out"), plant_dead(tmp_path, "out", directory=True)
    live = plant_live(tmp_path, "out", directory=True)
    other = plant_dead(tmp_path, "other")  # another target's leftover: not ours to judge now
    (tmp_path / ".out.tmp").write_text("not an edgevit temporary")
    removed = remove_stale(tmp_path, "out")
    assert sorted(removed) == sorted([dead_file, dead_dir])
    assert live.is_dir() and other.exists() and (tmp_path / ".out.tmp").exists()


def test_remove_stale_restores_a_dead_replaces_old_directory_when_out_is_missing(tmp_path):
    old = plant_dead(tmp_path, "out", kind="old", directory=True)
    remove_stale(tmp_path, "out")
    assert (tmp_path / "out" / "partial.bin").read_bytes() == b"half" and not old.exists()
    old = plant_dead(tmp_path, "out", kind="old", directory=True)  # out exists now: the old copy is debris
    remove_stale(tmp_path, "out")
    assert not old.exists() and (tmp_path / "out").is_dir()


def test_remove_stale_of_a_missing_parent_is_a_no_op(tmp_path):
    assert remove_stale(tmp_path / "nope", "out") == []


# --- write_file_atomically ------------------------------------------------------------------------

def test_file_from_bytes_text_or_writer_with_the_umask_mode(tmp_path):
    write_file_atomically(tmp_path / "a.bin", b"\x00\x01")
    write_file_atomically(tmp_path / "deep" / "b.txt", "h\u00e9")
    write_file_atomically(tmp_path / "c.txt", lambda p: p.write_text("by writer"))
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01" and (tmp_path / "deep" / "b.txt").read_text() == "h\u00e9"
    assert (tmp_path / "c.txt").read_text() == "by writer"
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~mask
    assert leftovers(tmp_path) == []


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")

    def half(p: Path) -> None:
        p.write_text("ne")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_file_atomically(target, half)
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_a_file_write_removes_dead_leftovers_and_keeps_live_ones(tmp_path):
    dead, live = plant_dead(tmp_path, "f.json"), plant_live(tmp_path, "f.json")
    write_file_atomically(tmp_path / "f.json", "{}")
    assert not dead.exists() and live.exists() and (tmp_path / "f.json").read_text() == "{}"


@pytest.mark.parametrize("where, needle", [
    ("{tmp}/d", "is a directory"),
    ("{tmp}/f/below", "f is a file, not a directory"),
    ("/sys/edgevit-test.json", "cannot write there"),
    ("/proc/edgevit-test.json", "no files can be created in /proc"),
])
def test_file_write_errors_name_the_path(tmp_path, where, needle):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("a file")
    path = Path(where.format(tmp=tmp_path))
    with pytest.raises(UserInputError) as e:
        write_file_atomically(path, "x")
    assert str(path) in str(e.value) and needle in str(e.value) and e.value.exit_code == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_a_user_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UserInputError, match="Permission denied"):
            write_file_atomically(ro / "x.json", "{}")
        with pytest.raises(UserInputError, match="cannot create files in"):
            check_writable(ro / "x.json")
    finally:
        ro.chmod(0o755)


# --- write_dir_atomically -------------------------------------------------------------------------

def test_directory_is_created_whole_and_replaced_only_with_force(tmp_path):
    out = tmp_path / "art"
    write_dir_atomically(out, _fill(OLD))
    assert _tree(out) == OLD
    with pytest.raises(UserInputError, match="already exists.*--force"):
        write_dir_atomically(out, _fill(NEW))
    write_dir_atomically(out, _fill(NEW), force=True)
    assert _tree(out) == NEW and leftovers(tmp_path) == []


def test_a_failing_directory_writer_leaves_the_old_directory(tmp_path):
    out = tmp_path / "art"
    write_dir_atomically(out, _fill(OLD))

    def half(d: Path) -> None:
        (d / "manifest.json").write_text("new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dir_atomically(out, half, force=True)
    assert _tree(out) == OLD and leftovers(tmp_path) == []


def test_replacing_without_renameat2_uses_the_old_name_and_cleans_it(tmp_path, monkeypatch):
    out = tmp_path / "art"
    write_dir_atomically(out, _fill(OLD))
    monkeypatch.setattr(atomic_write, "_renameat2", lambda src, dst, flags: None)
    write_dir_atomically(out, _fill(NEW), force=True)
    assert _tree(out) == NEW and leftovers(tmp_path) == []
    with pytest.raises(UserInputError, match="already exists"):
        write_dir_atomically(out, _fill(NEW))


def test_directory_errors_name_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="exists and is not a directory"):
        write_dir_atomically(tmp_path / "file", _fill(NEW), force=True)
    with pytest.raises(UserInputError, match=r"file is a file, not a directory"):
        write_dir_atomically(tmp_path / "file" / "art", _fill(NEW))
    with pytest.raises(UserInputError, match="/sys/edgevit-art"):
        write_dir_atomically(Path("/sys/edgevit-art"), _fill(NEW))
    with pytest.raises(UserInputError, match="exists and is not a directory"):
        make_dir(tmp_path / "file")


# --- killed writers (SIGKILL) ---------------------------------------------------------------------

WRITE_DIR = PAUSE + """
from edgevit.atomic_write import write_dir_atomically

def writer(d):
    (d / "manifest.json").write_text("new")
    pause()

write_dir_atomically(Path(OUT), writer, force=True)
"""


def test_a_killed_directory_writer_leaves_the_old_one_and_the_next_write_cleans_up(tmp_path):
    out = tmp_path / "art"
    write_dir_atomically(out, _fill(OLD))
    kill_at_pause(f"OUT = {str(out)!r}\n" + WRITE_DIR, tmp_path / "flag")
    assert _tree(out) == OLD and len(leftovers(tmp_path)) == 1  # the dead writer's partial directory
    write_dir_atomically(out, _fill(NEW), force=True)
    assert _tree(out) == NEW and leftovers(tmp_path) == []


def test_a_killed_first_write_leaves_no_out_and_the_next_write_succeeds(tmp_path):
    out = tmp_path / "art"
    kill_at_pause(f"OUT = {str(out)!r}\n" + WRITE_DIR, tmp_path / "flag")
    assert not out.exists() and len(leftovers(tmp_path)) == 1
    write_dir_atomically(out, _fill(NEW))  # no --force needed: nothing was ever at `out`
    assert _tree(out) == NEW and leftovers(tmp_path) == []


KILL_AFTER_EXCHANGE = PAUSE + """
from edgevit import atomic_write

real_remove = atomic_write._remove
def remove(path):
    if "edgevit-tmp" in str(path):  # the swapped-out old directory, about to be deleted
        pause()
    real_remove(path)

atomic_write._remove = remove
atomic_write.write_dir_atomically(Path(OUT), lambda d: (d / "manifest.json").write_text("new"), force=True)
"""

KILL_BETWEEN_RENAMES = PAUSE + """
from edgevit import atomic_write

atomic_write._renameat2 = lambda src, dst, flags: None  # a file system without RENAME_EXCHANGE
real_rename = os.rename
def rename(src, dst):
    real_rename(src, dst)
    if "edgevit-old" in str(dst):  # the old directory moved aside, the new one not yet in place
        pause()

atomic_write.os.rename = rename
atomic_write.write_dir_atomically(Path(OUT), lambda d: (d / "manifest.json").write_text("new"), force=True)
"""


@pytest.mark.parametrize("code, expect_now", [(KILL_AFTER_EXCHANGE, "new"), (KILL_BETWEEN_RENAMES, None)])
def test_a_replace_killed_at_the_commit_leaves_the_old_or_the_new_never_neither(tmp_path, code, expect_now):
    out = tmp_path / "art"
    write_dir_atomically(out, _fill({"manifest.json": "old"}))
    kill_at_pause(f"OUT = {str(out)!r}\n" + code, tmp_path / "flag")
    if expect_now:
        assert (out / "manifest.json").read_text() == expect_now
    else:  # killed between the fallback's two renames: the next writer puts the old one back first
        remove_stale(tmp_path, "art")
        assert (out / "manifest.json").read_text() == "old"
    write_dir_atomically(out, _fill({"manifest.json": "newer"}), force=True)
    assert (out / "manifest.json").read_text() == "newer" and leftovers(tmp_path) == []


WRITE_FILE = PAUSE + """
from edgevit.atomic_write import write_file_atomically

def writer(p):
    p.write_bytes(b"partial")
    pause()

write_file_atomically(Path(OUT), writer)
"""


def test_a_killed_file_writer_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path):
    out = tmp_path / "front.json"
    out.write_text("old")
    kill_at_pause(f"OUT = {str(out)!r}\n" + WRITE_FILE, tmp_path / "flag")
    assert out.read_text() == "old" and len(leftovers(tmp_path)) == 1
    write_file_atomically(out, "new")
    assert out.read_text() == "new" and leftovers(tmp_path) == []


def test_a_live_concurrent_writers_temporary_is_not_removed(tmp_path):
    out = tmp_path / "art"
    proc = start_paused(f"OUT = {str(out)!r}\n" + WRITE_DIR, tmp_path / "flag")
    try:
        theirs = leftovers(tmp_path)
        assert len(theirs) == 1
        write_dir_atomically(out, _fill(NEW), force=True)  # our write runs while theirs is in progress
        assert leftovers(tmp_path) == theirs and _tree(out) == NEW
    finally:
        stop(proc)
    write_dir_atomically(out, _fill(OLD), force=True)  # now that writer is dead, its temporary goes
    assert leftovers(tmp_path) == [] and _tree(out) == OLD


# --- check_writable -------------------------------------------------------------------------------

def test_check_writable_accepts_writable_places_and_leaves_nothing(tmp_path):
    (tmp_path / "existing").mkdir()
    check_writable(tmp_path / "new" / "deeper" / "art", kind="dir")
    check_writable(tmp_path / "existing", kind="dir")
    check_writable(tmp_path / "model.onnx", kind="file")
    assert sorted(os.listdir(tmp_path)) == ["existing"] and os.listdir(tmp_path / "existing") == []


@pytest.mark.parametrize("where, kind, needle", [
    ("{tmp}/dir", "file", "is a directory"),
    ("{tmp}/file", "dir", "exists and is not a directory"),
    ("{tmp}/file/below/out", "any", "file is a file, not a directory"),
    ("/sys/edgevit-out", "dir", "cannot create files in /sys"),
    ("/proc/edgevit-out/x", "any", "cannot create files in /proc"),
])
def test_check_writable_refuses_with_the_option_and_the_path(tmp_path, where, kind, needle):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    path = Path(where.format(tmp=tmp_path))
    with pytest.raises(UserInputError) as e:
        check_writable(path, kind=kind, option="--out")
    assert f"--out {path}" in str(e.value) and needle in str(e.value) and e.value.exit_code == 2
