"""Load and verify an artifact directory written by `edgevit compile` (docs/mcu-backend.md).

`load_artifact(dir)` reads `manifest.json`, checks its format ("edgevit-artifact", version 2;
older versions: "recompile") and then that the directory is exactly what compile wrote:
the manifest's `digest` matches its content (backend/manifest.py: it covers every value,
the `files` table included), every listed file is present with its sha256, and nothing else is
there (an extra source, a build output, an editor backup, a `__pycache__/`: the user's own files
belong in a copy). Every difference found is listed in one ArtifactError (exit 2) saying what to
do; the result is an `Artifact`. Runners never build inside the artifact: `copy_build_tree`
copies the listed files under the directories a runner builds from (its `build_dirs`, e.g.
src/ and firmware/) into a temporary build directory, re-checking each file's hash as it is copied,
so a valid artifact stays valid after `edgevit run`.

The manifest's `files` section may map path -> hex digest, path -> {"sha256": digest, ...},
or be a list of {"path": ..., "sha256": ...}; digests may carry a "sha256:" prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgevit.errors import ProfileError, UserInputError
from edgevit.backend.errors import ArtifactError
from edgevit.backend.manifest import DIGEST, FORMAT, VERSION, manifest_digest
from edgevit.backend.vectors import Vectors

MANIFEST = "manifest.json"
INPUTS = "vectors/inputs.npy"
EXPECTED = "vectors/expected.npy"
LABELS = "vectors/labels.npy"
RECOMPILE = "recompile it with `edgevit compile`"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A verified artifact: its directory, parsed manifest and listed files (posix path -> sha256)."""

    root: Path
    manifest: dict
    files: dict[str, str]

    def require(self, *paths: str, why: str) -> None:
        """ArtifactError unless every path is listed in the manifest (e.g. "firmware/Makefile")."""
        missing = [p for p in paths if p not in self.files]
        if missing:
            raise ArtifactError(f"{self.root}: the manifest lists no {', '.join(missing)}, which {why} needs; "
                                f"{RECOMPILE} (the emitter writes it)")

    def target_info(self) -> dict:
        """The manifest's `target` section: {kind, runners, default_runner} (ArtifactError if absent)."""
        info = self.manifest.get("target")
        if not (isinstance(info, dict) and isinstance(info.get("kind"), str)
                and isinstance(info.get("runners"), list)):
            raise ArtifactError(f"{self.root}/manifest.json: no `target` section saying which backend built it "
                                f"and which runners can run it (written by an older edgevit?); {RECOMPILE}")
        return info

    def load_vectors(self) -> Vectors:
        """The bundled test vectors (vectors/inputs.npy, expected.npy, labels.npy), checked to agree
        in count and with the manifest's output dtype (ArtifactError otherwise)."""
        self.require(INPUTS, EXPECTED, LABELS, why="checking the outputs")
        inputs, expected, labels = (_load_npy(self.root / p, p) for p in (INPUTS, EXPECTED, LABELS))
        if expected.ndim < 1 or labels.ndim != 1 or labels.shape[0] != expected.shape[0]:
            raise ArtifactError(f"{self.root}: {EXPECTED} has shape {expected.shape} but {LABELS} has shape "
                                f"{labels.shape}; they must hold one row / one label per vector; {RECOMPILE}")
        if inputs.ndim < 1 or inputs.shape[0] != expected.shape[0]:
            raise ArtifactError(f"{self.root}: {INPUTS} has shape {inputs.shape} but {EXPECTED} has shape "
                                f"{expected.shape}; they must hold one row per vector; {RECOMPILE}")
        declared = manifest_output_dtype(self.manifest)
        if declared is not None and np.dtype(declared) != expected.dtype:
            raise ArtifactError(f"{self.root}: the manifest's program output dtype is {declared} but {EXPECTED} "
                                f"holds {expected.dtype}; {RECOMPILE}")
        section = self.manifest.get("vectors")
        source = section.get("source") if isinstance(section, dict) else None
        return Vectors(inputs, expected, labels, source if isinstance(source, str) else str(self.root / "vectors"))

    def profile(self):
        """The device Profile the artifact was compiled for (embedded in the manifest, or by name)."""
        return manifest_profile(self.manifest, self.root / "manifest.json")

    def macs_per_inference(self) -> int | None:
        """Total MACs of one inference from the manifest (kernels table or program summary), if known."""
        kernels = self.manifest.get("kernels")
        if isinstance(kernels, list) and kernels and all(isinstance(k, dict) and "macs" in k for k in kernels):
            return int(sum(int(k["macs"]) for k in kernels))
        program = self.manifest.get("program")
        if isinstance(program, dict) and isinstance(program.get("macs"), int):
            return int(program["macs"])
        return None

    def refuse_inside(self, path: str | Path | None, option: str) -> None:
        """UserInputError when `path` (an output of a run: --results, keep_build) lies inside the
        artifact directory, where a file compile did not write would make the artifact invalid."""
        if path is None:
            return
        target, root = Path(path).resolve(), self.root.resolve()
        if target == root or root in target.parents:
            raise UserInputError(f"{option} {path}: inside the artifact {self.root}, whose files are sealed by "
                                 "their digests (an extra file there makes the next run refuse it); write it "
                                 "elsewhere")

    def copy_build_tree(self, dest: Path, dirs: tuple[str, ...]) -> Path:
        """Copy the listed files under the top-level directories `dirs` (e.g. ("src", "firmware"))
        into `dest` (same relative layout), checking each file's sha256 again as it is copied;
        returns `dest`."""
        for rel, digest in sorted(self.files.items()):
            if rel.split("/", 1)[0] not in dirs:
                continue
            data = _read_verified(self.root, rel, digest)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return dest


def load_artifact(path: str | Path, verify: bool = True) -> Artifact:
    """Read `path`/manifest.json, check its format and version and (verify=True) that the directory
    is what compile wrote: manifest digest, every listed file's sha256, no unlisted file.

    Raises ArtifactError naming the file for: no such directory, no or unreadable manifest,
    wrong format/version, a malformed `files` table; and one ArtifactError listing every
    difference (manifest edited or digest removed, missing, changed and extra files)."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"{root}: no such artifact directory (write one with `edgevit compile ... --out {root}`)")
    manifest = _read_manifest(root / MANIFEST)
    files = manifest_files(manifest, root / MANIFEST)
    if verify:
        verify_artifact(root, manifest, files)
    return Artifact(root, manifest, files)


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; this is not an artifact written by `edgevit compile`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: cannot read the manifest ({e}); {RECOMPILE}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArtifactError(f"{path}: format is {got!r}, expected {FORMAT!r}; not an edgevit artifact")
    version = manifest.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version < VERSION:
        raise ArtifactError(f"{path}: artifact format version {version}, written by an older edgevit whose manifest "
                            f"did not protect itself against edits; this edgevit reads version {VERSION}: "
                            f"{RECOMPILE} (same command, with --force to replace it)")
    if version != VERSION:
        raise ArtifactError(f"{path}: artifact format version {version!r}; this edgevit reads version {VERSION}; "
                            f"{RECOMPILE} with this version")
    return manifest


def manifest_files(manifest: dict, source: Path) -> dict[str, str]:
    """The manifest's `files` section as {posix relative path: lowercase hex sha256}."""
    raw = manifest.get("files")
    if isinstance(raw, list):
        try:
            raw = {item["path"]: item for item in raw}
        except (TypeError, KeyError):
            raw = None
    if not isinstance(raw, dict) or not raw:
        raise ArtifactError(f"{source}: no `files` section with the sha256 of every file; {RECOMPILE}")
    files = {}
    for rel, entry in raw.items():
        digest = entry.get("sha256") if isinstance(entry, dict) else entry
        if not isinstance(digest, str):
            raise ArtifactError(f"{source}: files[{rel!r}] has no sha256 digest")
        files[_safe_relpath(rel, source)] = digest.lower().removeprefix("sha256:")
    files.pop("manifest.json", None)
    return files


def _safe_relpath(rel: str, source: Path) -> str:
    p = PurePosixPath(str(rel))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ArtifactError(f"{source}: files lists {rel!r}, which is not a path inside the artifact")
    return p.as_posix()


def verify_files(root: Path, files: dict[str, str]) -> None:
    """ArtifactError listing every listed file that is missing or whose sha256 differs."""
    missing, changed = _file_differences(root, files)
    if missing or changed:
        raise ArtifactError(_differences_message(root, _problems(None, missing, changed, [])))


def verify_artifact(root: Path, manifest: dict, files: dict[str, str]) -> None:
    """ArtifactError listing every difference between `root` and what compile wrote: the manifest's
    `digest` missing or not matching its content, listed files missing or changed, entries that
    are not listed (with what they look like: a build output, an editor backup, a bytecode cache)."""
    digest = manifest.get(DIGEST)
    if not isinstance(digest, str):
        edited = (f"{MANIFEST}: has no `{DIGEST}` (removed, or the manifest was written by hand), so its "
                  "content cannot be checked")
    elif digest.lower() != _digest_or_none(manifest):
        edited = f"{MANIFEST}: edited after compile (the sha256 of its content differs from its `{DIGEST}`)"
    else:
        edited = None
    missing, changed = _file_differences(root, files)
    problems = _problems(edited, missing, changed, unlisted_entries(root, files))
    if problems:
        raise ArtifactError(_differences_message(root, problems))


def _digest_or_none(manifest: dict) -> str | None:
    try:
        return manifest_digest(manifest)
    except ValueError:  # NaN / Infinity, which compile never writes
        return None


def _file_differences(root: Path, files: dict[str, str]) -> tuple[list[str], list[str]]:
    missing, changed = [], []
    for rel, digest in sorted(files.items()):
        path = root / rel
        if not path.is_file():
            missing.append(rel)
        elif sha256_bytes(path.read_bytes()) != digest:
            changed.append(rel)
    return missing, changed


def _problems(edited: str | None, missing: list[str], changed: list[str], extra: list[str]) -> list[tuple[str, int]]:
    """(line, how many differences it lists) for the error message."""
    problems = [(edited, 1)] if edited else []
    if missing:
        problems.append((f"missing: {', '.join(missing)}", len(missing)))
    if changed:
        problems.append((f"sha256 differs from the manifest (modified after compile): {', '.join(changed)}",
                         len(changed)))
    if extra:
        problems.append((f"not written by compile: {'; '.join(extra)}", len(extra)))
    return problems


def _differences_message(root: Path, problems: list[tuple[str, int]]) -> str:
    total = sum(n for _line, n in problems)
    lines = "\n".join(f"  - {line}" for line, _n in problems)
    return (f"{root}: the artifact does not match what `edgevit compile` wrote "
            f"({total} difference{'s' if total != 1 else ''}):\n{lines}\n"
            f"Restore the original files and remove the others (build and experiment in a copy), or {RECOMPILE} "
            f"(with --force to replace {root})")


BUILD_OUTPUTS = (".o", ".obj", ".d", ".elf", ".bin", ".hex", ".map", ".a", ".so", ".out", ".lst")
EDITOR_BACKUPS = (".swp", ".swo", ".bak", ".orig", ".rej", ".tmp")


def describe_entry(rel: str, is_dir: bool, is_link: bool) -> str:
    """What an unlisted artifact entry probably is, for the error: "(a build output)", "(an editor
    backup)", "(a Python bytecode cache)", "(a symbolic link)" or ""."""
    name = rel.rstrip("/").rsplit("/", 1)[-1]
    if is_link:
        return " (a symbolic link; compile writes none)"
    if name == "__pycache__" or name.endswith((".pyc", ".pyo")):
        return " (a Python bytecode cache)"
    if name.endswith("~") or name.startswith(".#") or (name.startswith("#") and name.endswith("#")) \
            or name.endswith(EDITOR_BACKUPS):
        return " (an editor backup)"
    if name == ".DS_Store":
        return " (a Finder file)"
    if not is_dir and (name.endswith(BUILD_OUTPUTS) or name in ("model_host", "a.out")):
        return " (a build output: build in a copy of the artifact, as `edgevit run` does)"
    return ""


def unlisted_entries(root: Path, files: dict[str, str]) -> list[str]:
    """Every entry under `root` that compile did not write, as posix paths relative to `root`
    (directories with a trailing "/" and their file count, not descended), each with
    `describe_entry`'s hint: anything but manifest.json, the listed files and their directories."""
    expected_dirs = {str(PurePosixPath(rel).parent) for rel in files}
    expected_dirs = {p for d in expected_dirs for p in _with_parents(d)}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        for name in sorted(dirnames):
            rel, full = prefix + name, Path(dirpath) / name
            if rel in expected_dirs and not full.is_symlink():
                continue
            dirnames.remove(name)
            if full.is_symlink():
                found.append(f"{rel}/" + describe_entry(rel, True, True))
                continue
            count = sum(len(f) for _d, _s, f in os.walk(full))
            hint = describe_entry(rel, True, False).strip()[1:-1]
            what = f"{count} file{'s' if count != 1 else ''}" if count else "empty"
            found.append(f"{rel}/ ({what}{', ' + hint if hint else ''})")
        for name in sorted(filenames):
            rel = prefix + name
            if rel == MANIFEST or rel in files:
                continue
            found.append(rel + describe_entry(rel, False, (Path(dirpath) / name).is_symlink()))
    return sorted(found)


def _with_parents(rel: str) -> list[str]:
    parts = [] if rel in ("", ".") else rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _read_verified(root: Path, rel: str, digest: str) -> bytes:
    path = root / rel
    try:
        data = path.read_bytes()
    except OSError:
        raise ArtifactError(f"{root}: missing: {rel} (listed in manifest.json); {RECOMPILE}") from None
    if sha256_bytes(data) != digest:
        raise ArtifactError(f"{root}: {rel}: sha256 differs from the manifest (modified after compile); {RECOMPILE}")
    return data


def _load_npy(path: Path, rel: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: cannot read {rel} ({e}); {RECOMPILE}") from None


def manifest_output_dtype(manifest: dict) -> str | None:
    """The program output dtype the manifest declares (program.output.dtype or program.output_dtype), if any."""
    program = manifest.get("program")
    if not isinstance(program, dict):
        return None
    output = program.get("output")
    dtype = output.get("dtype") if isinstance(output, dict) else program.get("output_dtype")
    return dtype if isinstance(dtype, str) else None


def manifest_profile(manifest: dict, source: Path):
    """The Profile recorded in the manifest: the full profile dict under `profile` (or nested
    one level inside it) if it validates, else the shipped profile named by `profile.name`."""
    from edgevit.profiles.profile import Profile, load_profile

    raw = manifest.get("profile")
    name = raw if isinstance(raw, str) else raw.get("name") if isinstance(raw, dict) else None
    for candidate in _profile_candidates(raw):
        try:
            return Profile.model_validate(candidate)
        except Exception:  # noqa: BLE001 - not this shape; try the next candidate
            continue
    if not isinstance(name, str):
        raise ArtifactError(f"{source}: no `profile` (name or profile fields); {RECOMPILE}")
    try:
        return load_profile(name)
    except ProfileError as e:
        raise ArtifactError(f"{source}: the manifest embeds no valid profile and names {name!r}, which cannot be "
                            f"loaded ({e}); {RECOMPILE}") from None


def _profile_candidates(raw: Any) -> list[dict]:
    if not isinstance(raw, dict):
        return []
    nested = [v for v in raw.values() if isinstance(v, dict) and "kind" in v and "emulator" in v]
    return ([raw] if "emulator" in raw else []) + nested
