"""Crash safety of `edgevit compile`'s artifact write (backend/artifact_write.write_atomically): a
compile killed while writing leaves the previous artifact valid (or nothing), the next compile
removes the leftovers, and a valid artifact is what lands at OUT."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.artifact_write import seal, write_atomically
from edgevit.errors import UserInputError
from tests.atomic_helpers import (PAUSE, dead_pid, interrupt_before_rename, kill_at_pause, leftovers, plant_dead,
                                  plant_live)

TARGET = SimpleNamespace(kind="null", default_runner="replay", runners=lambda: {"replay": None})


def sealed(version: int) -> dict:
    """The files of a small artifact, version `version`, sealed as compile seals them."""
    files = {"manifest.json": '{"note": "v%d"}' % version, "src/model.c": "int v%d;" % version,
             "vectors/expected.npy": bytes(range(version + 8))}
    return seal(files, TARGET)


def _version(out: Path) -> str:
    art = load_artifact(out)  # valid, whatever happened before
    return art.manifest["note"]


KILLED_COMPILE = PAUSE + """
from edgevit.backend import artifact_write
from tests.backend.test_artifact_write_atomic import sealed

real = artifact_write.write_files
def write_then_pause(outdir, files):
    real(outdir, dict(list(sorted(files.items()))[:1]))  # the first file written, then killed
    pause()

artifact_write.write_files = write_then_pause
artifact_write.write_atomically(Path(OUT), sealed(2), force=True)
"""


def test_a_compile_killed_while_writing_leaves_the_previous_artifact_valid(tmp_path):
    out = tmp_path / "art"
    write_atomically(out, sealed(1), force=False)
    kill_at_pause(f"OUT = {str(out)!r}\n" + KILLED_COMPILE, tmp_path / "flag")
    assert _version(out) == "v1" and len(leftovers(tmp_path)) == 1
    write_atomically(out, sealed(3), force=True)
    assert _version(out) == "v3" and leftovers(tmp_path) == []


def test_a_first_compile_killed_leaves_no_artifact_and_the_next_one_needs_no_force(tmp_path):
    out = tmp_path / "art"
    kill_at_pause(f"OUT = {str(out)!r}\n" + KILLED_COMPILE, tmp_path / "flag")
    assert not out.exists() and len(leftovers(tmp_path)) == 1
    write_atomically(out, sealed(3), force=False)
    assert _version(out) == "v3" and leftovers(tmp_path) == []


def test_a_replace_killed_between_its_renames_gets_the_previous_artifact_back(tmp_path):
    out = tmp_path / "art"
    write_atomically(out, sealed(1), force=False)
    old = tmp_path / f".art.edgevit-old-{dead_pid()}-1-0bad0bad"  # where the fallback moves OUT aside
    out.rename(old)  # killed here: OUT moved aside, the new artifact not yet in place
    plant_dead(tmp_path, "art", directory=True)  # the new artifact's temporary
    with pytest.raises(UserInputError, match="already exists"):
        write_atomically(out, sealed(3), force=False)  # the previous artifact is back first
    assert _version(out) == "v1" and leftovers(tmp_path) == []
    write_atomically(out, sealed(3), force=True)
    assert _version(out) == "v3" and leftovers(tmp_path) == []


def test_an_interrupted_replace_keeps_the_previous_artifact_and_live_writers_temporaries(tmp_path, monkeypatch):
    out = tmp_path / "art"
    write_atomically(out, sealed(1), force=False)
    live = plant_live(tmp_path, "art", directory=True)
    interrupt_before_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(out, sealed(2), force=True)
    monkeypatch.undo()
    assert _version(out) == "v1" and leftovers(tmp_path) == [live.name]


def test_write_errors_are_user_errors_naming_out(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match=r"art: cannot write there: .*file is a file") as e:
        write_atomically(tmp_path / "file" / "art", sealed(1), force=False)
    assert e.value.exit_code == 2
    with pytest.raises(UserInputError, match="/sys/edgevit-art"):
        write_atomically(Path("/sys/edgevit-art"), sealed(1), force=False)
    assert json.loads(sealed(1)["manifest.json"])["digest"].startswith("sha256:")
