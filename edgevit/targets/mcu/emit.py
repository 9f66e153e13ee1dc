"""Write an MCU artifact directory from a Program, a profile and its memory plan.

`emit_artifact(program, profile, plan, outdir, ...)` generates the kernels (TVM, one build),
the driver and weights (backend/cdriver.py, with driver.py's MCU parts), the test vectors (vectors.py), the firmware and host
projects (project.py), then manifest.json (manifest.py, with memory.py's figures), memory.png and
report.md (report.py), and writes them all into `outdir`. Every file is produced in memory first, so the manifest can
hash them and nothing depends on the output path or the time: same inputs, same bytes.
The caller (`edgevit.backend.compile`) makes the directory appear atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgevit.backend import cdriver
from edgevit.targets.mcu import driver
from edgevit.targets.mcu.memory import memory_figures
from edgevit.targets.mcu.project import project_files
from edgevit.targets.mcu.uart_project import uart_project_files
from edgevit.backend.vectors import Vectors, random_vectors
from edgevit.targets.mcu.vectors import vector_files

RANDOM_VECTORS = 8  # vectors of random images when the caller has no dataset


def source_files(program, plan, steps: list, definitions: dict[str, str]) -> dict[str, str]:
    """src/edgevit_model.h, model.c, weights.c and kernels.c for generated `steps`."""
    return {"src/edgevit_model.h": driver.model_h(program, plan),
            "src/model.c": cdriver.model_c(program, plan, steps, driver.KERNELS_INCLUDE),
            "src/weights.c": cdriver.weights_c(program),
            "src/kernels.c": driver.kernels_c(program, steps, definitions)}


def _tools() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("edgevit", "apache-tvm"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def artifact_files(program, profile, plan, *, vectors: Vectors | None = None, passes: str | None = None,
                   schedule: str = "fast", pass_reports: list[dict] | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, str | bytes]:
    """Every file of the artifact as {relative path: text or bytes}; manifest.json holds the MCU sections
    (`backend.artifact_write.seal` adds the target, its runners and the digests)."""
    from edgevit.backend.manifest import manifest_json
    from edgevit.targets.mcu.manifest import build_manifest
    from edgevit.targets.mcu.report import render_memory_png, render_report

    say = progress or (lambda msg: None)
    cdriver.io_infos(program)
    say("generating kernels")
    steps = driver.request_kernels(program, plan, schedule, tuple(profile.isa))
    say(f"lowering {len(cdriver.distinct_codes(steps))} kernel functions to C (TVM)")
    definitions = driver.lower_kernels(steps)
    say("writing sources")
    files: dict[str, str | bytes] = dict(source_files(program, plan, steps, definitions))
    if vectors is None:
        say("making test vectors")
        vectors = random_vectors(program, RANDOM_VECTORS)
    files.update(vector_files(vectors))
    memory = memory_figures(program, plan, profile)
    files.update(project_files(profile, memory["arena_bytes"], memory["stack_bytes"], vectors.count))
    files.update(uart_project_files(profile, memory["arena_bytes"], memory["stack_bytes"]))
    say("manifest and report")
    manifest = build_manifest(program=program, profile=profile, plan=plan, memory=memory,
                              kernels=cdriver.kernel_table(program, plan, steps), vectors=vectors, passes=passes,
                              schedule=schedule, pass_reports=pass_reports, tools=_tools())
    files["memory.png"] = render_memory_png(manifest, plan.naive_timeline)
    files["report.md"] = render_report(manifest)
    files["manifest.json"] = manifest_json(manifest)
    return files


def emit_artifact(program, profile, plan, outdir: Path, **options) -> dict:
    """Generate the artifact of `program` for `profile` with memory `plan` into `outdir` (created
    if missing; existing files are overwritten), sealed like `edgevit compile` seals it. Options:
    vectors (Vectors; default: random images), passes (pipeline text), schedule ("fast" |
    "reference"), pass_reports, progress(message). Returns the manifest (a dict)."""
    import json

    from edgevit.backend.artifact_write import seal, write_files
    from edgevit.targets.mcu.target import McuTarget

    files = seal(artifact_files(program, profile, plan, **options), McuTarget())
    Path(outdir).mkdir(parents=True, exist_ok=True)
    write_files(Path(outdir), files)
    return json.loads(files["manifest.json"])
