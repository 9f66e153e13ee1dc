"""manifest.json of an artifact, the pieces every target shares: format "edgevit-artifact",
version 1, the `program` section (name, fingerprint, lowering, macs, input/output name, shape,
dtype, quant), the reference top-1 of the bundled vectors, the `files` section (sha256 of every
other file) and the deterministic JSON text. A target assembles its own sections (the MCU's:
targets/mcu/manifest.py); backend/artifact_write.py seals it with the shared keys. Nothing in a
manifest depends on the time, the machine or the output directory.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FORMAT = "edgevit-artifact"
VERSION = 1


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
