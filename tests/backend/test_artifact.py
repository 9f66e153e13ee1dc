"""Loading and verifying artifacts: hashes, missing files, format, profile, build-tree copies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.errors import ArtifactError
from edgevit.backend.manifest import with_digest
from edgevit.backend.run import run_artifact
from edgevit.backend.vectors import Vectors
from tests.backend.synth_artifact import IN_SIZE, write_manifest


def _manifest(root):
    return json.loads((root / "manifest.json").read_text())


def _reseal(root, manifest):
    """Write an edited manifest with a matching digest (as if compile had written it)."""
    (root / "manifest.json").write_text(json.dumps(with_digest(manifest)))


def test_loads_and_reads_vectors_and_profile(int8_artifact):
    art = load_artifact(int8_artifact)
    vec = art.load_vectors()
    assert isinstance(vec, Vectors) and vec.source == "synthetic"
    assert vec.count == 5 and vec.output_bytes == 4 and vec.expected.dtype == np.int8
    assert vec.inputs.shape == (5, IN_SIZE) and vec.labels.shape == (5,)
    assert art.profile().name == "stm32f746-disco" and art.profile().emulator.machine == "mps2-an500"
    assert art.macs_per_inference() == 24 * 4
    assert "src/model.c" in art.files and "manifest.json" not in art.files


def test_modified_file_is_named(int8_artifact):
    (int8_artifact / "src" / "model.c").write_text("/* tampered */\n")
    with pytest.raises(ArtifactError) as e:
        load_artifact(int8_artifact)
    assert "src/model.c" in str(e.value) and "sha256" in str(e.value) and e.value.exit_code == 2
    assert "kernels.c" not in str(e.value)


def test_missing_file_is_named(int8_artifact):
    (int8_artifact / "vectors" / "labels.npy").unlink()
    with pytest.raises(ArtifactError, match=r"missing: vectors/labels\.npy"):
        load_artifact(int8_artifact)


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m.update(format="something-else"), "not an edgevit artifact"),
    (lambda m: m.update(version=3), "version 3"),
    (lambda m: m.pop("files"), "no `files` section"),
    (lambda m: m["files"].update({"../etc/passwd": "00"}), "not a path inside the artifact"),
])
def test_bad_manifest(int8_artifact, edit, needle):
    m = _manifest(int8_artifact)
    edit(m)
    (int8_artifact / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=needle):
        load_artifact(int8_artifact)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="no such artifact directory"):
        load_artifact(tmp_path / "nope")
    with pytest.raises(ArtifactError, match="manifest.json: missing"):
        load_artifact(tmp_path)


def test_files_as_list_and_profile_by_name(int8_artifact):
    m = _manifest(int8_artifact)
    m["files"] = [{"path": p, "sha256": "sha256:" + h, "bytes": 1} for p, h in m["files"].items()]
    m["profile"] = {"name": "corstone-300"}
    _reseal(int8_artifact, m)
    art = load_artifact(int8_artifact)
    assert art.profile().emulator.machine == "mps3-an547" and len(art.files) > 10


def test_unknown_profile_name_is_an_artifact_error(int8_artifact):
    m = _manifest(int8_artifact)
    m["profile"] = {"name": "no-such-board"}
    _reseal(int8_artifact, m)
    with pytest.raises(ArtifactError, match="no-such-board"):
        load_artifact(int8_artifact).profile()


def test_expected_and_labels_must_agree(int8_artifact):
    np.save(int8_artifact / "vectors" / "labels.npy", np.zeros(3, np.int64))
    write_manifest(int8_artifact, {k: v for k, v in _manifest(int8_artifact).items() if k != "files"})
    with pytest.raises(ArtifactError, match="one label per vector"):
        load_artifact(int8_artifact).load_vectors()


def test_inputs_and_expected_must_agree(int8_artifact):
    np.save(int8_artifact / "vectors" / "inputs.npy", np.zeros((4, IN_SIZE), np.int8))
    write_manifest(int8_artifact, {k: v for k, v in _manifest(int8_artifact).items() if k != "files"})
    with pytest.raises(ArtifactError, match="vectors/inputs.npy has shape"):
        load_artifact(int8_artifact).load_vectors()


def test_manifest_without_target_section_must_be_recompiled(int8_artifact):
    write_manifest(int8_artifact, {k: v for k, v in _manifest(int8_artifact).items() if k not in ("files", "target")})
    with pytest.raises(ArtifactError, match=r"no `target` section.*recompile it with `edgevit compile`") as e:
        run_artifact(int8_artifact, "host", progress=False)
    assert e.value.exit_code == 2


def test_manifest_dtype_must_match_expected(int8_artifact):
    m = _manifest(int8_artifact)
    m["program"]["output"]["dtype"] = "float32"
    _reseal(int8_artifact, m)
    with pytest.raises(ArtifactError, match="output dtype is float32"):
        load_artifact(int8_artifact).load_vectors()


def test_copy_build_tree_copies_only_listed_files_of_the_given_dirs(int8_artifact, tmp_path):
    art = load_artifact(int8_artifact)
    (int8_artifact / "firmware" / "firmware.elf").write_bytes(b"stale")  # a user's own build after loading
    dest = art.copy_build_tree(tmp_path / "build", ("src", "firmware"))
    copied = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert copied == sorted(p for p in art.files if p.split("/")[0] in ("src", "firmware"))
    assert "firmware/firmware.elf" not in copied and "host/Makefile" not in copied
    assert "vectors/expected.npy" not in copied
    (int8_artifact / "src" / "kernels.c").write_text("changed after loading\n")
    with pytest.raises(ArtifactError, match="src/kernels.c"):
        art.copy_build_tree(tmp_path / "build2", ("src",))
