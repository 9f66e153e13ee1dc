"""The Program inside every artifact: `reference/program.json` + `reference/consts.npz`.

`edgevit compile` adds both files to every artifact, whatever the target, so the reference
outputs of *any* input can be computed later from the artifact alone (streamed test sets,
`edgevit run --data`, backend/stream_run.py) with exactly the Program the target compiled:

    reference/program.json   Program.to_json(): tensors, kernels, meta, constants by SHA-256
    reference/consts.npz     the constant values, one .npy member per constant name

Both are listed in the manifest's `files`, so `load_artifact` verifies them like every other
file. The .npz is written deterministically (stored members in name order, fixed timestamps),
so compiling the same model twice still gives byte-identical artifacts.

    files.update(program_files(program))        # at compile, before `seal`
    program = load_program(load_artifact(dir))  # later; program.fingerprint() == manifest's
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from edgevit.backend.artifact import RECOMPILE, Artifact
from edgevit.backend.errors import ArtifactError
from edgevit.backend.vectors import npy_bytes

PROGRAM_JSON = "reference/program.json"
CONSTS_NPZ = "reference/consts.npz"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry: no build time in the bytes


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed .npz (readable by np.load) of name -> array, byte-identical for equal inputs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, npy_bytes(arrays[name]))
    return buf.getvalue()


def program_files(program) -> dict[str, str | bytes]:
    """{PROGRAM_JSON: the Program's JSON text, CONSTS_NPZ: its constants} for an artifact."""
    return {PROGRAM_JSON: program.to_json() + "\n", CONSTS_NPZ: npz_bytes(program.consts)}


def load_program(artifact: Artifact):
    """The Program the artifact was compiled from (edgevit.lower.program.Program), read from its
    verified reference/ files; ArtifactError naming the file when they are missing (an artifact
    from before they existed), unreadable or disagree with each other or with the manifest's
    program fingerprint."""
    from edgevit.lower.program import Program, ProgramError

    artifact.require(PROGRAM_JSON, CONSTS_NPZ, why="computing reference outputs for new inputs")
    root = artifact.root
    try:
        data = json.loads((root / PROGRAM_JSON).read_text(encoding="utf-8"))
        with np.load(root / CONSTS_NPZ, allow_pickle=False) as npz:
            consts = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise ArtifactError(f"{root}: cannot read {PROGRAM_JSON} / {CONSTS_NPZ} ({e}); {RECOMPILE}") from None
    try:
        program = Program.from_dict(data, consts)
    except ProgramError as e:
        raise ArtifactError(f"{root}: {PROGRAM_JSON} with {CONSTS_NPZ} is not a valid Program ({e}); "
                            f"{RECOMPILE}") from None
    recorded = (artifact.manifest.get("program") or {}).get("fingerprint")
    if isinstance(recorded, str) and recorded != program.fingerprint():
        raise ArtifactError(f"{root}: {PROGRAM_JSON} has fingerprint {program.fingerprint()[:12]} but the manifest's "
                            f"program has {recorded[:12]}; the files do not belong together; {RECOMPILE}")
    return program
