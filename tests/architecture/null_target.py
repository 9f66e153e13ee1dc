"""A test-only backend, "null", defined entirely outside edgevit/ (the proof of issue #13's contract).

Its build writes the Program as JSON plus its constants as .npy files; its one runner, "replay",
loads them back and runs the reference interpreter on the bundled inputs, printing the EV
protocol lines a device would print. Costs come from the shared memory planner: one "ram" pool
(arena + weights) against the cpu profile's RAM.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np

from edgevit.backend.costs import Costs, Pool
from edgevit.backend.errors import ArtifactError
from edgevit.backend.manifest import program_summary, reference_top1
from edgevit.backend.planner import plan_program
from edgevit.backend.runner import RunOutput, Runner
from edgevit.backend.target import Target
from edgevit.backend.vectors import npy_bytes, vector_npy_files
from edgevit.lower.program import Kernel, Program, TensorInfo

PROGRAM = "program.json"


class ReplayRunner(Runner):
    """Replays the artifact's Program in the reference interpreter (no device, no build)."""

    name = "replay"
    description = "the reference interpreter on this machine"

    def tools(self, profile) -> list:
        """Nothing to install."""
        return []

    def required_files(self) -> tuple[str, ...]:
        """The serialised Program and the bundled inputs."""
        return (PROGRAM, "vectors/inputs.npy")

    def execute(self, artifact, profile, count: int, timeout: float, stage) -> RunOutput:
        """EV lines of the reference outputs for the first `count` bundled inputs."""
        from edgevit.lower.reference import run_program

        t0 = time.perf_counter()
        stage("replaying the program")
        program = load_program(artifact.root)
        inputs = np.load(artifact.root / "vectors" / "inputs.npy")[:count]
        out = run_program(program, {program.inputs[0]: inputs})[program.outputs[0]]
        lines = [f"EV {i} 0 {row.tobytes().hex()}" for i, row in enumerate(out)] + [f"EV-END {count}"]
        return RunOutput("\n".join(lines) + "\n", "null replay", time.perf_counter() - t0)


class NullTarget(Target):
    """Writes the Program instead of code; runs it with the reference interpreter."""

    kind = "null"
    description = "test-only: the Program as JSON, replayed by the reference interpreter"
    default_runner = "replay"

    def supports(self, program, profile) -> list[str]:
        """Everything the reference interpreter runs, except programs with several inputs or outputs."""
        return [] if len(program.inputs) == len(program.outputs) == 1 else ["one input and one output only"]

    def check_options(self, options) -> None:
        """The null target takes no options beyond what compile always passes."""
        unknown = set(options) - {"passes", "pass_reports", "progress"}
        if unknown:
            super().check_options({k: options[k] for k in unknown})

    def estimate(self, program, profile) -> Costs:
        """RAM = the planned arena + the constants, against the profile's RAM."""
        plan = plan_program(program)
        weights = sum(int(v.nbytes) for v in program.consts.values())
        ram = Pool("ram", plan.arena_bytes + weights, int(profile.memory.ram_bytes),
                   f"arena {plan.arena_bytes:,} B + weights {weights:,} B")
        return Costs(pools=(ram,), macs=program.macs(), activation_bytes=plan.arena_bytes,
                     figures={"arena_bytes": plan.arena_bytes, "weight_bytes": weights}, plan=plan)

    def build(self, program, profile, costs, vectors, **options) -> dict[str, str | bytes]:
        """program.json, consts/<sha256>.npy, the vectors and a partial manifest."""
        files: dict[str, str | bytes] = {PROGRAM: program.to_json()}
        for name, info in program.to_dict()["consts"].items():
            files[f"consts/{info['sha256']}.npy"] = npy_bytes(program.consts[name])
        files.update(vector_npy_files(vectors))
        files["manifest.json"] = json.dumps({
            "profile": profile.model_dump(mode="json"), "program": program_summary(program),
            "passes": options.get("passes"), "memory": dict(costs.figures),
            "vectors": {"count": vectors.count, "source": vectors.source, "reference_top1": reference_top1(vectors)}})
        return files

    def runners(self) -> dict[str, type]:
        """replay only."""
        return {"replay": ReplayRunner}


def load_program(root: Path) -> Program:
    """The Program a null artifact carries (program.json + consts/*.npy)."""
    try:
        d = json.loads((root / PROGRAM).read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{root / PROGRAM}: cannot read ({e})") from None
    tensors = {n: TensorInfo(n, tuple(t["shape"]), t["dtype"], t.get("quant")) for n, t in d["tensors"].items()}
    consts = {n: np.load(io.BytesIO((root / "consts" / f"{c['sha256']}.npy").read_bytes()))
              for n, c in d["consts"].items()}
    kernels = [Kernel(k["op"], k["name"], k["inputs"], k["outputs"], k["consts"], k["attrs"]) for k in d["kernels"]]
    return Program(d["name"], d["inputs"], d["outputs"], tensors, consts, kernels, d["meta"])
