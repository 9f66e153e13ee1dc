"""manifest.json of an MCU artifact (docs/mcu-backend.md): the shared pieces (backend/manifest.py)
and the firmware's sections.

Sections: `format`, `version`, `profile` (the full profile, re-validatable with
`Profile.model_validate`), `spec` (ViTSpec YAML), `passes`, `pass_reports`, `schedule`, `program`,
`memory` (memory.memory_figures: arena, lower bound, naive plan, stack, weights, code, flash) and
`budget` (the device's SRAM and flash), `kernels` (per Program kernel: op, macs, bytes, arena
offsets, C functions, step), `steps` (the driver's steps with their live bytes), `vectors` (count,
source, files, reference top-1), `tools`; `files` is added once every other file exists.
"""

from __future__ import annotations

from typing import Any

from edgevit.backend.manifest import FORMAT, VERSION, program_summary, reference_top1


def step_rows(program, plan) -> list[dict[str, Any]]:
    """The manifest's `steps`: per plan step its kernels (names), chunking and live arena bytes."""
    rows = []
    for i, step in enumerate(plan.steps):
        live = plan.timeline[i] if i < len(plan.timeline) else None
        rows.append({"index": i, "kernels": [program.kernels[k].name for k in step.kernels],
                     "chunk_rows": step.chunk_rows, "rows": step.rows, "live_bytes": live})
    return rows


def build_manifest(*, program, profile, plan, memory: dict[str, int], kernels: list[dict], vectors,
                   passes: str | None, schedule: str, pass_reports: list[dict] | None = None,
                   tools: dict[str, str] | None = None) -> dict[str, Any]:
    """Every section but `target` and `files` (added by `backend.artifact_write.seal` once all other files
    exist); `memory` is memory.memory_figures of `plan`, `kernels` driver.kernel_table's rows."""
    return {
        "format": FORMAT, "version": VERSION,
        "profile": profile.model_dump(mode="json"),
        "spec": program.meta.get("spec"),
        "passes": passes, "pass_reports": list(pass_reports or []),
        "schedule": schedule,
        "program": program_summary(program),
        "memory": dict(memory),
        "budget": {"sram_bytes": int(profile.memory.sram_bytes), "flash_bytes": int(profile.memory.flash_bytes)},
        "kernels": kernels,
        "steps": step_rows(program, plan),
        "vectors": {"count": vectors.count, "source": vectors.source, "inputs": "vectors/inputs.npy",
                    "expected": "vectors/expected.npy", "labels": "vectors/labels.npy",
                    "reference_top1": reference_top1(vectors)},
        "tools": dict(tools or {}),
    }
