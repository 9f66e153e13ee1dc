"""manifest.json of an artifact: format "edgevit-artifact", version 1 (docs/mcu-backend.md).

Sections: `profile` (the full profile, re-validatable with `Profile.model_validate`), `spec`
(ViTSpec YAML), `passes`, `program` (name, fingerprint, lowering, macs, input/output name,
shape, dtype, quant), `memory` (= `MemoryPlan.memory_dict()`, the planner's figures) and
`budget` (the device's SRAM and flash), `kernels` (per Program kernel: op, macs, bytes,
arena offsets, C functions, step), `steps` (the driver's steps with their live bytes),
`vectors` (count, source, files) and `files` (sha256 of every other file of the artifact).
Nothing in it depends on the time, the machine or the output directory.
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


def step_rows(program, plan) -> list[dict[str, Any]]:
    """The manifest's `steps`: per plan step its kernels (names), chunking and live arena bytes."""
    rows = []
    for i, step in enumerate(plan.steps):
        live = plan.timeline[i] if i < len(plan.timeline) else None
        rows.append({"index": i, "kernels": [program.kernels[k].name for k in step.kernels],
                     "chunk_rows": step.chunk_rows, "rows": step.rows, "live_bytes": live})
    return rows


def build_manifest(*, program, profile, plan, kernels: list[dict], vectors, passes: str | None,
                   schedule: str, pass_reports: list[dict] | None = None, tools: dict[str, str] | None = None
                   ) -> dict[str, Any]:
    """Every section but `files` (added by `finish_manifest` once all other files exist)."""
    return {
        "format": FORMAT, "version": VERSION,
        "profile": profile.model_dump(mode="json"),
        "spec": program.meta.get("spec"),
        "passes": passes, "pass_reports": list(pass_reports or []),
        "schedule": schedule,
        "program": program_summary(program),
        "memory": plan.memory_dict(),
        "budget": {"sram_bytes": int(profile.memory.sram_bytes), "flash_bytes": int(profile.memory.flash_bytes)},
        "kernels": kernels,
        "steps": step_rows(program, plan),
        "vectors": {"count": vectors.count, "source": vectors.source, "inputs": "vectors/inputs.npy",
                    "expected": "vectors/expected.npy", "labels": "vectors/labels.npy",
                    "reference_top1": reference_top1(vectors)},
        "tools": dict(tools or {}),
    }


def reference_top1(vectors) -> float | None:
    """Top-1 of the reference outputs on the bundled vectors (None when labels are unknown)."""
    labels = vectors.labels
    if labels.size == 0 or (labels < 0).any() or vectors.expected.ndim != 2:
        return None
    return round(float((vectors.expected.argmax(axis=1) == labels).mean()), 6)


def finish_manifest(manifest: dict[str, Any], files: dict[str, str | bytes]) -> dict[str, Any]:
    """The manifest with `files` = sha256 of every file in `files` (manifest.json excluded)."""
    return {**manifest, "files": file_hashes({k: v for k, v in files.items() if k != "manifest.json"})}


def manifest_json(manifest: dict[str, Any]) -> str:
    """Deterministic JSON text (sorted keys, indent 1, trailing newline)."""
    return json.dumps(manifest, sort_keys=True, indent=1, allow_nan=False) + "\n"
