"""Crash-safe writes: every output edgevit writes appears whole or not at all, and a later run
removes what a killed one left behind.

    write_file_atomically(out / "front.json", text)                  # bytes, str or writer(path)
    write_dir_atomically(out, lambda d: write_files(d, files), force) # a whole directory
    make_dir(out)                                                     # mkdir -p, errors for people
    remove_stale(parent, name)                                        # called by both before writing
    check_writable(out, kind="dir")                                   # early check, before heavy work

A write goes to a temporary sibling of its target, named so that any later run recognises it:

    .<name>.edgevit-tmp-<pid>-<start>-<random>    (<start>: the writer's start time, from /proc)
    .<name>.edgevit-old-<pid>-<start>-<random>    (only where the exchange below is unavailable)

then moves into place with one rename. A file is renamed over its target (`os.replace`). A
directory that replaces an existing one (`force`) is swapped with it in one step (Linux
`renameat2(RENAME_EXCHANGE)`), so `out` is the old or the new directory at every instant; the old
one, now under the temporary name, is deleted. Where the exchange is unavailable, the old
directory is first renamed to the `-old-` name; a writer killed between the two renames leaves
no `out`, and the next `remove_stale` puts the old directory back.

`remove_stale(parent, name)` deletes the temporaries of `name` whose writer is dead (no such
process, a zombie, or its PID now belongs to a process started at another time), and only those:
a concurrent writer's temporaries stay. Errors of the file system (read-only place, a path below
a file, /sys) become one UserInputError naming the path (exit 2). Nothing here imports edgevit
beyond its errors, so every layer may use it. Limitation: liveness is judged in this machine's
PID namespace, so writers on other machines (or containers) sharing the directory cannot be told
apart from dead ones.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Union

from edgevit.errors import UserInputError

MARKER = "edgevit"
TMP, OLD = "tmp", "old"
Content = Union[bytes, str, Callable[[Path], object]]

_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}
_own_start: str | None = None


def temp_name(name: str, kind: str = TMP) -> str:
    """A fresh temporary name for `name` (a file or directory name) owned by this process:
    `.<name>.edgevit-<kind>-<pid>-<start>-<random>` (kind "tmp" or "old")."""
    return f".{name}.{MARKER}-{kind}-{os.getpid()}-{_this_start()}-{secrets.token_hex(4)}"


def _leftover_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}\.{MARKER}-(?P<kind>{TMP}|{OLD})-(?P<pid>\d+)-(?P<start>\d+)-[0-9a-f]+$")


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot ("0" when /proc cannot tell), None
    when there is no such process or it is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no such process, or /proc hides it (hidepid): ask the kernel
        return _kill_probe(pid)
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20:
        return "0"
    return None if fields[0] in ("Z", "X") else fields[19]


def _kill_probe(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # PermissionError: another user's live process
        return "0"
    return "0"


def _this_start() -> str:
    global _own_start
    if _own_start is None:
        _own_start = _process_start(os.getpid()) or "0"
    return _own_start


def writer_alive(pid: int, start: str) -> bool:
    """Whether the process that named a temporary with (`pid`, `start`) still runs: the PID exists,
    is not a zombie, and (when both are known) started at `start`, not a later process reusing it."""
    now = _process_start(pid)
    if now is None:
        return False
    return now == "0" or start == "0" or now == start


def remove_stale(parent: str | Path, name: str) -> list[Path]:
    """Delete the leftovers of dead writers of `parent`/`name` (temporaries named by `temp_name`);
    a dead writer's `-old-` directory is moved back to `name` when `name` is missing (a replace
    killed between its two renames). Live writers' temporaries are kept. Returns what was removed
    or restored."""
    parent = Path(parent)
    pattern = _leftover_pattern(name)
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return []
    handled = []
    for entry in entries:
        match = pattern.match(entry)
        if match is None or writer_alive(int(match["pid"]), match["start"]):
            continue
        path = parent / entry
        if match["kind"] == OLD and not os.path.lexists(parent / name):
            try:
                os.rename(path, parent / name)
                handled.append(path)
                continue
            except OSError:
                pass
        _remove(path)
        handled.append(path)
    return handled


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass


def write_error(path: Path, err: OSError) -> UserInputError:
    """The UserInputError for an OSError while writing `path`: the path, the reason, what to do."""
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        below = _file_ancestor(path)
        if below == path:
            return UserInputError(f"{path}: exists and is not a directory; remove it or choose another place")
        if below is not None:
            return UserInputError(f"{path}: cannot write there: {below} is a file, not a directory; "
                                  "choose a place below a directory")
    if err.errno == errno.EISDIR:
        return UserInputError(f"{path}: is a directory; give the path of a file to write")
    place = next((p for p in path.parents if os.path.isdir(p)), None)
    if err.errno == errno.ENOENT and place is not None:
        return UserInputError(f"{path}: cannot write there: no files can be created in {place} ({reason}); "
                              "choose a writable place")
    return UserInputError(f"{path}: cannot write there ({reason}); choose a writable place")


def _file_ancestor(path: Path) -> Path | None:
    for anc in [path, *path.parents]:
        try:
            if anc.exists() and not anc.is_dir():
                return anc
        except OSError:
            return None
    return None


def make_dir(path: str | Path) -> Path:
    """`mkdir -p path` for an output directory written file by file (a checkpoint, a search);
    UserInputError naming `path` when it cannot be made (below a file, read-only place, a file
    already there). Returns `path`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    return path


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None


def write_file_atomically(path: str | Path, content: Content) -> Path:
    """Write a file so that `path` is the old file or the new one, never a part: `content` (bytes,
    str as UTF-8, or writer(temp_path) that creates the file) goes to a temporary sibling, is
    flushed to disk and renamed over `path`. Dead writers' leftovers are removed first; on any
    failure the temporary is removed. UserInputError naming `path` for file-system errors
    (read-only place, a path below a file, `path` a directory). Returns `path`."""
    path = _named(path)
    _make_parent(path)
    if path.is_dir() and not path.is_symlink():
        raise UserInputError(f"{path}: is a directory; give the path of a file to write (or remove the directory)")
    remove_stale(path.parent, path.name)
    tmp = path.parent / temp_name(path.name)
    with _removed_on_failure(tmp, path):
        _reserve_file(tmp)
        if callable(content):
            content(tmp)
        else:
            tmp.write_bytes(content.encode("utf-8") if isinstance(content, str) else bytes(content))
        _fsync(tmp)
        os.replace(tmp, path)
    _fsync(path.parent)
    return path


def _named(path: str | Path) -> Path:
    """`path`, made absolute when it has no last name of its own ("." or ".."), so that its temporary
    sibling and the rename have one."""
    path = Path(path)
    return Path(os.path.abspath(path)) if path.name in ("", ".", "..") else path


@contextmanager
def _removed_on_failure(tmp: Path, target: Path) -> Iterator[None]:
    """Remove the temporary `tmp` if the block fails in any way; an OSError becomes `target`'s
    UserInputError (write_error), anything else (a writer's error, Ctrl-C) goes on unchanged."""
    try:
        yield
    except OSError as e:
        _remove(tmp)
        raise write_error(target, e) from None
    except BaseException:
        _remove(tmp)
        raise


def _reserve_file(tmp: Path) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    os.close(fd)


def write_dir_atomically(out: str | Path, writer: Callable[[Path], object], force: bool = False) -> Path:
    """Create directory `out` whole: writer(temp_dir) fills a fresh temporary sibling, which is
    flushed and renamed to `out`; with `force` an existing `out` is swapped for it in one step
    (never neither: see the module doc). Dead writers' leftovers are removed first; on failure the
    temporary is removed and `out` is untouched. UserInputError: `out` exists (without `force`)
    or is not a directory, or a file-system error (naming `out`). Returns `out`."""
    out = _named(out)
    _make_parent(out)
    remove_stale(out.parent, out.name)
    exists = os.path.lexists(out)
    if exists and not force:
        raise UserInputError(f"{out}: already exists; choose another place or pass --force to replace it")
    if exists and not out.is_dir():
        raise UserInputError(f"{out}: exists and is not a directory; remove it or choose another place")
    tmp = out.parent / temp_name(out.name)
    with _removed_on_failure(tmp, out):
        os.mkdir(tmp, 0o777)  # the umask applies, as for mkdir
        writer(tmp)
        _fsync_tree(tmp)
        _commit_dir(tmp, out, replace=exists)
    _fsync(out.parent)
    return out


def _commit_dir(tmp: Path, out: Path, replace: bool) -> None:
    if replace:
        done = _renameat2(tmp, out, _RENAME_EXCHANGE)
        if done:
            _remove(tmp)  # the old directory, now under the temporary name
            return
        if done is False:  # `out` vanished meanwhile: a plain rename puts the new one in place
            os.rename(tmp, out)
            return
        old = out.parent / temp_name(out.name, OLD)
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
        _remove(old)
        return
    done = _renameat2(tmp, out, _RENAME_NOREPLACE)
    if done is None:
        if os.path.lexists(out):
            raise UserInputError(f"{out}: appeared while it was being written; choose another place or pass --force")
        os.rename(tmp, out)
    elif done is False:
        raise UserInputError(f"{out}: appeared while it was being written; choose another place or pass --force")


def _renameat2(src: Path, dst: Path, flags: int) -> bool | None:
    """renameat2(src, dst, flags): True when done, False when `dst` exists (NOREPLACE) or is missing
    (EXCHANGE), None when this system or file system cannot do it (the caller falls back)."""
    func = getattr(_libc(), "renameat2", None)
    if func is None:
        return None
    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EEXIST, errno.ENOTEMPTY) and flags == _RENAME_NOREPLACE:
        return False
    if err == errno.ENOENT and flags == _RENAME_EXCHANGE and os.path.lexists(src):
        return False
    if err in _UNSUPPORTED:
        return None
    raise OSError(err, os.strerror(err), str(dst))


_LIBC: list = []


def _libc():
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def _fsync(path: Path) -> None:
    """Flush a file's (or directory's) data to disk; file systems that cannot are left alone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            _fsync(Path(dirpath) / name)
        _fsync(Path(dirpath))


def check_writable(out: str | Path, kind: str = "any", option: str = "--out") -> None:
    """UserInputError (naming `option` and `out`) unless `out` can be written, checked before any
    heavy work: `out` exists as the wrong kind ("file": a directory; "dir": not a directory), a
    path component is a file, or the nearest existing directory (and `out` itself, an existing
    directory) does not let a file be created there — read-only file systems, /sys and /proc
    included. Probes with a temporary file that is removed at once."""
    out = Path(out)
    label = f"{option} {out}" if option else str(out)
    try:
        is_dir, exists = out.is_dir(), os.path.lexists(out)
    except OSError as e:
        raise UserInputError(f"{label}: cannot look at it ({e.strerror}); choose a writable place") from None
    if exists and kind == "file" and is_dir:
        raise UserInputError(f"{label}: is a directory; give the path of a file to write (or remove the directory)")
    if exists and kind == "dir" and not is_dir:
        raise UserInputError(f"{label}: exists and is not a directory; remove it or choose another place")
    places = [out] if exists and is_dir else []
    anc = out.parent
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UserInputError(f"{label}: {anc} is a file, not a directory; choose a place below a directory")
    for place in [anc, *places]:
        probe = place / temp_name(out.name)
        try:
            _reserve_file(probe)
        except OSError as e:
            raise UserInputError(f"{label}: cannot create files in {place} ({e.strerror}); choose a writable "
                                 "place") from None
        _remove(probe)
