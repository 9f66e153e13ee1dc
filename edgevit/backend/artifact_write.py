"""Writing an artifact: seal the target's files with the shared manifest keys, then write atomically.

`seal(files, target)` completes `manifest.json`: the target's own sections (if its build
returned a partial manifest) plus `format`, `version`, `target` {kind, runners, default_runner}
and `files` (the sha256 of every other file). `write_atomically(out, files, force)` writes them
into a temporary directory beside OUT and renames it into place, so OUT is either the whole new
artifact or untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from edgevit.backend.manifest import FORMAT, VERSION, file_hashes, manifest_json
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
    return {**rest, MANIFEST: manifest_json(manifest)}


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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(out: Path, files: dict[str, str | bytes], force: bool) -> None:
    """Write `files` into a temp dir beside `out`, then rename it to `out` (replacing it if `force`).
    The temp dir is removed on any failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        write_files(tmp, files)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists() and force:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rename(out, old / "artifact")
        try:
            os.rename(tmp, out)
        except OSError as e:
            if old is not None:
                os.rename(old / "artifact", out)
            raise UserInputError(f"{out}: cannot create the artifact directory ({e.strerror}); "
                                 "does it exist now?") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
