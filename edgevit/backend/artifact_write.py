"""Writing an artifact: seal the target's files with the shared manifest keys, then write atomically.

`seal(files, target)` completes `manifest.json`: the target's own sections (if its build
returned a partial manifest) plus `format`, `version`, `target` {kind, runners, default_runner},
`files` (the sha256 of every other file) and last the manifest's own `digest` (backend/manifest.py),
so that `load_artifact` can refuse any change. `write_atomically(out, files, force)` writes them
into a temporary directory beside OUT and renames it into place (edgevit/atomic_write.py: OUT is
the whole old or the whole new artifact at every instant; a killed compile's temporary is removed
by the next one).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgevit.atomic_write import write_dir_atomically
from edgevit.backend.manifest import FORMAT, VERSION, file_hashes, manifest_json, with_digest
from edgevit.errors import UserInputError

MANIFEST = "manifest.json"


def seal(files: dict[str, str | bytes], target, profile=None) -> dict[str, str | bytes]:
    """`files` with manifest.json completed for `target` (a backend.target.Target); with `profile` the
    default runner is the target's choice for that profile (`Target.default_runner_for`)."""
    raw = files.get(MANIFEST)
    manifest = json.loads(raw) if raw else {}
    manifest.update(format=FORMAT, version=VERSION,
                    target={"kind": target.kind, "runners": sorted(target.runners()),
                            "default_runner": target.default_runner if profile is None
                            else target.default_runner_for(profile)})
    rest = {k: v for k, v in files.items() if k != MANIFEST}
    manifest["files"] = file_hashes(rest)
    return {**rest, MANIFEST: manifest_json(with_digest(manifest))}


def check_out_dir(out: Path, force: bool) -> None:
    """UserInputError if OUT exists (and not `force`) or is not a directory."""
    if out.exists() or out.is_symlink():
        if not force:
            raise UserInputError(f"{out}: already exists; choose another --out or pass --force to replace it")
        if not out.is_dir():
            raise UserInputError(f"{out}: exists and is not a directory; remove it or choose another --out")


def write_files(outdir: Path, files: dict[str, str | bytes]) -> None:
    """Write {relative path: text or bytes} under `outdir` (text as UTF-8 with "\\n" line ends)."""
    for rel in sorted(files):
        path = Path(outdir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        content = files[rel]
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def write_atomically(out: Path, files: dict[str, str | bytes], force: bool) -> None:
    """Write `files` into a temporary directory beside `out`, then rename it to `out` (with `force`,
    swapped with the existing `out` in one step). Leftovers of killed compiles are removed first;
    the temporary is removed on any failure; file-system errors are one UserInputError naming `out`."""
    write_dir_atomically(Path(out), lambda tmp: write_files(tmp, files), force)
