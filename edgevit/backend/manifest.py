"""manifest.json of an artifact, the pieces every target shares: format "edgevit-artifact",
version 2, the `program` section (name, fingerprint, lowering, macs, input/output name, shape,
dtype, quant), the reference top-1 of the bundled vectors, the `files` section (sha256 of every
other file), the manifest's own `digest` and the deterministic JSON text. A target assembles its
own sections (the MCU's: targets/mcu/manifest.py); backend/artifact_write.py seals it with the
shared keys. Nothing in a manifest depends on the time, the machine or the output directory.

The `digest` ("sha256:<hex>") is the sha256 of the manifest's canonical JSON without the `digest`
key (sorted keys, no spaces, ASCII: `canonical_json`). It covers every value of the manifest,
the `files` table included, so it covers every file too; `backend/artifact.py` recomputes it.
Version 2 added it: a version-1 manifest protects only the files it lists, so version-1
artifacts are refused with "recompile".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FORMAT = "edgevit-artifact"
VERSION = 2  # 2: the manifest's own `digest` (version 1 had only the files' sha256)
DIGEST = "digest"


def sha256_of(content: str | bytes) -> str:
    """Hex sha256 of a file's content (text is encoded as UTF-8, as it is written)."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    return hashlib.sha256(data).hexdigest()


def file_hashes(files: dict[str, str | bytes]) -> dict[str, str]:
    """{relative posix path: sha256} of every file, sorted by path."""
    return {rel: sha256_of(files[rel]) for rel in sorted(files)}


def tensor_summary(info) -> dict[str, Any]:
    """{name, shape, dtype, quant} of a TensorInfo."""
    return {"name": info.name, "shape": list(info.shape), "dtype": info.dtype,
            "quant": dict(info.quant) if info.quant else None}


def program_summary(program) -> dict[str, Any]:
    """The manifest's `program` section."""
    inp, out = program.tensors[program.inputs[0]], program.tensors[program.outputs[0]]
    return {"name": program.name, "fingerprint": program.fingerprint(),
            "lowering": program.meta.get("lowering", "float"), "kernels": len(program.kernels),
            "constants": len(program.consts), "macs": program.macs(), "input": tensor_summary(inp),
            "output": tensor_summary(out), "preprocess": program.meta.get("preprocess")}


def reference_top1(vectors) -> float | None:
    """Top-1 of the reference outputs on the bundled vectors (None when labels are unknown)."""
    labels = vectors.labels
    if labels.size == 0 or (labels < 0).any() or vectors.expected.ndim != 2:
        return None
    return round(float((vectors.expected.argmax(axis=1) == labels).mean()), 6)


def manifest_json(manifest: dict[str, Any]) -> str:
    """Deterministic JSON text (sorted keys, indent 1, trailing newline)."""
    return json.dumps(manifest, sort_keys=True, indent=1, allow_nan=False) + "\n"


def canonical_json(manifest: dict[str, Any]) -> bytes:
    """The bytes the manifest `digest` is taken over: the manifest without `digest`, as JSON with
    sorted keys, no whitespace and ASCII escapes (the same for the manifest in memory and as read
    back from manifest.json)."""
    content = {k: v for k, v in manifest.items() if k != DIGEST}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def manifest_digest(manifest: dict[str, Any]) -> str:
    """"sha256:<hex>" of `canonical_json(manifest)`; computed on the manifest as JSON reads it back
    (tuples as lists, keys as strings), so a reader of manifest.json gets the same value."""
    return "sha256:" + sha256_of(canonical_json(json.loads(json.dumps(manifest, allow_nan=False))))


def with_digest(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` with its `digest` set (any old one replaced)."""
    return {**{k: v for k, v in manifest.items() if k != DIGEST}, DIGEST: manifest_digest(manifest)}
