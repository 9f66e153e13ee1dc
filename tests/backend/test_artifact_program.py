"""reference/program.json + reference/consts.npz (backend/artifact_program.py): written
deterministically, sealed by the manifest's digests, read back as the same Program; a missing,
modified or mismatched pair is an ArtifactError that says to recompile."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.artifact_program import CONSTS_NPZ, PROGRAM_JSON, load_program, npz_bytes, program_files
from edgevit.backend.artifact_write import seal, write_atomically
from edgevit.backend.errors import ArtifactError
from edgevit.backend.manifest import program_summary
from tests.lower.test_program import tiny_program

TARGET = SimpleNamespace(kind="null", default_runner="replay", runners=lambda: {"replay": None})


def write_artifact(out, program, extra: dict | None = None, summary=None):
    manifest = {"program": summary or program_summary(program), "profile": {"name": "host"}}
    files = {"manifest.json": json.dumps(manifest), "report.md": "r\n", **program_files(program), **(extra or {})}
    write_atomically(out, seal(files, TARGET), force=True)
    return out


def test_npz_is_deterministic_and_readable() -> None:
    arrays = {"b": np.arange(6, dtype=np.int8).reshape(2, 3), "a.weight": np.ones(4, np.float32)}
    data = npz_bytes(arrays)
    assert data == npz_bytes(dict(reversed(list(arrays.items()))))
    import io

    with np.load(io.BytesIO(data)) as npz:
        assert sorted(npz.files) == ["a.weight", "b"] and np.array_equal(npz["b"], arrays["b"])


def test_program_comes_back_from_the_artifact(tmp_path) -> None:
    program = tiny_program()
    art = load_artifact(write_artifact(tmp_path / "a", program))
    assert {PROGRAM_JSON, CONSTS_NPZ} <= set(art.files)  # covered by the manifest's digests
    loaded = load_program(art)
    assert loaded.fingerprint() == program.fingerprint() == art.manifest["program"]["fingerprint"]


def test_missing_or_mismatched_program_files_say_recompile(tmp_path) -> None:
    program = tiny_program()
    out = write_artifact(tmp_path / "a", program)
    art = load_artifact(out)
    bare = art.__class__(art.root, art.manifest, {k: v for k, v in art.files.items() if not k.startswith("reference/")})
    with pytest.raises(ArtifactError, match=r"lists no reference/program.json, reference/consts.npz.*recompile"):
        load_program(bare)
    other = write_artifact(tmp_path / "b", program, summary={**program_summary(program), "fingerprint": "0" * 64})
    with pytest.raises(ArtifactError, match="fingerprint .* but the manifest's program has 000000000000"):
        load_program(load_artifact(other))
    (out / CONSTS_NPZ).write_bytes(npz_bytes({n: v + 1 for n, v in program.consts.items()}))
    with pytest.raises(ArtifactError, match="sha256 differs.*reference/consts.npz"):
        load_artifact(out)
    with pytest.raises(ArtifactError, match="is not a valid Program.*'fc.bias' has other values"):
        load_program(load_artifact(out, verify=False))
