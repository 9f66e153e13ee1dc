"""Artifact integrity: the manifest's own digest and the exact file set. Every tampering is refused
(ArtifactError, exit 2) in one message listing every difference; a run leaves the artifact valid;
artifacts of the old format ask to be recompiled."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.artifact_write import seal, write_atomically
from edgevit.backend.errors import ArtifactError
from edgevit.backend.manifest import VERSION, canonical_json, manifest_digest
from edgevit.backend.run import run_artifact
from edgevit.errors import UserInputError
from tests.backend.synth_artifact import write_manifest
from tests.cli_helpers import run_cli


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _write_raw(root: Path, manifest: dict) -> None:
    """Write the manifest as an editor would: no re-sealing."""
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _refusal(root: Path) -> str:
    with pytest.raises(ArtifactError) as e:
        load_artifact(root)
    assert e.value.exit_code == 2
    message = str(e.value)
    assert "Restore the original files" in message and "recompile it with `edgevit compile`" in message
    return message


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_seal_writes_a_digest_the_reader_accepts(tmp_path):
    target = SimpleNamespace(kind="null", default_runner="replay", runners=lambda: {"replay": None})
    files = {"manifest.json": json.dumps({"memory": {"arena_bytes": 4096}, "ratio": 0.1 + 0.2}), "a.txt": "x",
             "src/b.c": b"\x00int b;"}
    write_atomically(tmp_path / "art", seal(files, target), force=False)
    m = _manifest(tmp_path / "art")
    assert m["version"] == VERSION == 2 and m["digest"] == manifest_digest(m)
    assert m["digest"] == "sha256:" + hashlib.sha256(canonical_json(m)).hexdigest()
    assert b'"digest"' not in canonical_json(m) and b'"files"' in canonical_json(m)
    art = load_artifact(tmp_path / "art")
    assert sorted(art.files) == ["a.txt", "src/b.c"]


def test_reformatting_the_manifest_without_changing_a_value_is_not_a_difference(int8_artifact):
    m = _manifest(int8_artifact)
    (int8_artifact / "manifest.json").write_text(json.dumps(m, indent=4))  # other whitespace, same content
    load_artifact(int8_artifact)


def _edit_manifest(root):
    m = _manifest(root)
    m["kernels"][0]["macs"] = 1
    _write_raw(root, m)


def _add_manifest_key(root):
    _write_raw(root, {**_manifest(root), "note": "looks harmless"})


def _unlist_a_file(root):
    m = _manifest(root)
    del m["files"]["src/kernels.c"]
    _write_raw(root, m)


def _remove_digest(root):
    m = _manifest(root)
    del m["digest"]
    _write_raw(root, m)


def _forge_digest(root):
    _write_raw(root, {**_manifest(root), "digest": "sha256:" + "0" * 64})


def _extra_file(root):
    (root / "src" / "evil.c").write_text("int evil(void) { return 1; }\n")


def _extra_dir(root):
    (root / "build").mkdir()
    (root / "build" / "model.o").write_bytes(b"\x7fELF")
    (root / "build" / "sub").mkdir()
    (root / "build" / "sub" / "x.d").write_text("deps")


def _empty_dir(root):
    (root / "scratch").mkdir()


def _bytecode_cache(root):
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00")


def _editor_backups(root):
    (root / "src" / "model.c~").write_text("backup")
    (root / "src" / ".model.c.swp").write_bytes(b"swap")


def _build_output(root):
    (root / "firmware" / "firmware.elf").write_bytes(b"\x7fELF")


def _symlink(root):
    (root / "src" / "link.c").symlink_to(root / "src" / "model.c")


def _missing_file(root):
    (root / "vectors" / "labels.npy").unlink()


def _changed_file(root):
    with open(root / "src" / "weights.c", "a") as f:
        f.write("/* one more line */\n")


@pytest.mark.parametrize("tamper, needles", [
    (_edit_manifest, ["manifest.json: edited after compile", "(1 difference)"]),
    (_add_manifest_key, ["manifest.json: edited after compile"]),
    (_unlist_a_file, ["manifest.json: edited after compile", "not written by compile: src/kernels.c",
                      "(2 differences)"]),
    (_remove_digest, ["manifest.json: has no `digest`"]),
    (_forge_digest, ["manifest.json: edited after compile"]),
    (_extra_file, ["not written by compile: src/evil.c", "(1 difference)"]),
    (_extra_dir, ["not written by compile: build/ (2 files)"]),
    (_empty_dir, ["not written by compile: scratch/ (empty)"]),
    (_bytecode_cache, ["__pycache__/ (1 file, a Python bytecode cache)"]),
    (_editor_backups, ["src/.model.c.swp (an editor backup)", "src/model.c~ (an editor backup)", "(2 differences)"]),
    (_build_output, ["firmware/firmware.elf (a build output"]),
    (_symlink, ["src/link.c (a symbolic link"]),
    (_missing_file, ["missing: vectors/labels.npy"]),
    (_changed_file, ["sha256 differs from the manifest (modified after compile): src/weights.c"]),
])
def test_each_tampering_is_refused_with_its_message(int8_artifact, tamper, needles):
    load_artifact(int8_artifact)  # valid before
    tamper(int8_artifact)
    message = _refusal(int8_artifact)
    for needle in needles:
        assert needle in message, message


def test_the_issues_manifest_edit_of_arena_bytes_is_refused(int8_artifact):
    m = _manifest(int8_artifact)
    write_manifest(int8_artifact, {**{k: v for k, v in m.items() if k not in ("files", "digest")},
                                   "memory": {"arena_bytes": 64200, "flash_bytes": 90000}})
    load_artifact(int8_artifact)  # sealed with its memory section: valid
    m = _manifest(int8_artifact)
    m["memory"]["arena_bytes"] = 1000
    _write_raw(int8_artifact, m)
    assert "manifest.json: edited after compile" in _refusal(int8_artifact)


def test_one_error_lists_every_difference(int8_artifact):
    for tamper in (_edit_manifest, _extra_file, _extra_dir, _missing_file, _changed_file, _editor_backups):
        tamper(int8_artifact)
    message = _refusal(int8_artifact)
    assert "(7 differences)" in message
    for needle in ("manifest.json: edited", "missing: vectors/labels.npy", "src/weights.c", "src/evil.c",
                   "build/ (2 files)", "src/model.c~"):
        assert needle in message


def test_run_refuses_a_tampered_artifact_with_exit_2(int8_artifact, monkeypatch, capsys):
    _edit_manifest(int8_artifact)
    _extra_file(int8_artifact)
    r = run_cli(monkeypatch, capsys, "run", int8_artifact, "--runner", "host", flat_err=True)
    assert r.code == 2 and "manifest.json: edited after compile" in r.err and "src/evil.c" in r.err
    assert "Traceback" not in r.err


def test_an_old_format_artifact_asks_to_be_recompiled(int8_artifact):
    m = {k: v for k, v in _manifest(int8_artifact).items() if k != "digest"}
    _write_raw(int8_artifact, {**m, "version": 1})
    with pytest.raises(ArtifactError, match=r"format version 1, written by an older edgevit.*reads version 2: "
                                            r"recompile it with `edgevit compile`") as e:
        load_artifact(int8_artifact)
    assert e.value.exit_code == 2


def test_a_run_leaves_the_artifact_valid_and_unchanged(int8_artifact):
    before = _files(int8_artifact)
    result = run_artifact(int8_artifact, "host", progress=False)
    assert result["matches"] == result["count"] == 5
    load_artifact(int8_artifact)
    assert _files(int8_artifact) == before and not (int8_artifact / "host" / "model_host").exists()


def test_outputs_of_a_run_inside_the_artifact_are_refused(int8_artifact, tmp_path):
    art = load_artifact(int8_artifact)
    for inside in (int8_artifact, int8_artifact / "results.jsonl", int8_artifact / "src" / "keep"):
        with pytest.raises(UserInputError, match="inside the artifact"):
            art.refuse_inside(inside, "--results")
    art.refuse_inside(tmp_path / "elsewhere.jsonl", "--results")
    art.refuse_inside(None, "--results")
    with pytest.raises(UserInputError, match="keep_build .*inside the artifact"):
        run_artifact(int8_artifact, "host", progress=False, keep_build=int8_artifact / "build")
    assert not (int8_artifact / "build").exists()


def test_a_copy_of_an_artifact_is_valid_where_it_lands(int8_artifact, tmp_path):
    copy = shutil.copytree(int8_artifact, tmp_path / "copied")
    load_artifact(copy)
