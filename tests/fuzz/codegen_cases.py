"""What the generated-code fuzzer (test_codegen_fuzz.py) draws and how it checks one program.

One case = a random small ViTSpec (tests/conftest.vit_specs) with random weights, a random pass
pipeline (tome / prune / lowrank in any valid order, optionally quant last, with random options;
always quant for backends that run integer Programs only, `Backend.int8_only`),
random inputs (uniform, constant black / white, saturating stripes), and a backend: a target, one of
its profiles and a runner. `check_case` goes the way `edgevit compile` + `edgevit run` go, through
the library calls behind them (no budget check: the fuzzer is after wrong code, not big models):

    randomise(build_model(spec)) -> run_pipeline -> lower -> Target.supports / estimate / build
    -> seal + program_files -> write_atomically -> run_artifact(runner, sanitize) -> every output
    equal to the reference interpreter's (int8: bit-exact; float32: backend/run.py's 1e-4 rule, or,
    for a vector the model itself makes ill-conditioned, float_conditioning.py's rule against float64)

Nothing is cached between cases: every case builds its own model, Program, artifact and binary.
Every case can be written as one JSON line (`CaseLog`), so a long run leaves a record of what it
tried (spec, pipeline, backend, seconds, outcome).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from edgevit.errors import UserInputError
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import missing_on_host

MCU_PROFILES = ("stm32f746-disco", "stm32h743", "nrf52840", "corstone-300")
ARM_CPU_PROFILES = ("cortex-a76", "rpi4")
FPGA_PROFILES = ("pynq-z2", "zcu104")
VECTORS = 3
INPUT_STYLES = ("uniform", "black", "white", "stripes")


@dataclass(frozen=True)
class Backend:
    """A way generated code runs: the target kind, the profiles drawn for it, the runner, sanitizers,
    the programs it needs on PATH, and whether only the slow run uses it."""

    name: str
    target: str
    profiles: tuple[str, ...]
    runner: str
    sanitize: bool
    tools: tuple[str, ...]
    slow_only: bool = False
    int8_only: bool = False  # the target runs integer Programs only: every pipeline ends with quant

    def missing(self) -> list[str]:
        """Programs (or host CPU features) this backend lacks on this machine; [] when it can run."""
        gone = [t for t in self.tools if shutil.which(t) is None]
        if self.target == "cpu" and self.runner == "host":
            gone += [f"host CPU feature {f}" for f in missing_on_host(load_profile(self.profiles[0]))]
        return gone


BACKENDS = (
    Backend("mcu-host-asan", "mcu", MCU_PROFILES, "host", True, ("gcc", "make")),
    Backend("cpu-host-asan", "cpu", ("host",), "host", True, ("gcc", "make")),
    Backend("fpga-fsim", "fpga", FPGA_PROFILES, "fsim", False, (), int8_only=True),
    Backend("mcu-qemu", "mcu", MCU_PROFILES, "qemu", False, ("arm-none-eabi-gcc", "qemu-system-arm", "make"),
            slow_only=True),
    Backend("cpu-qemu-aarch64", "cpu", ARM_CPU_PROFILES, "qemu", False,
            ("aarch64-linux-gnu-gcc", "qemu-aarch64", "make"), slow_only=True),
)


def available_backends(slow: bool) -> list[Backend]:
    """The backends this run uses (the slow run adds the emulators) that can run on this machine."""
    return [b for b in BACKENDS if (slow or not b.slow_only) and not b.missing()]


@st.composite
def pipelines(draw, spec, quant: bool = False) -> str:
    """A random valid pipeline for `spec`: a subset of tome / prune / lowrank with random options in a
    random order, then (or not; always with `quant`) quant with random weight bits, observer, residual
    dtype, repq, bias correction and GPTQ. tome only when the spec has at least two patches to merge;
    whole-block pruning only when a block is left."""
    steps = []
    often = st.sampled_from([True, True, False])  # most programs get passes, most of them quant (bit-exact int8)
    if spec.grid * spec.grid >= 2 and draw(often):
        steps.append(f"tome(r={draw(st.integers(1, 3))},schedule={draw(st.sampled_from(['constant', 'decreasing']))})")
    if draw(often):
        blocks = draw(st.integers(0, 1)) if spec.depth > 1 else 0
        steps.append(f"prune(heads={draw(st.sampled_from([0.0, 0.25, 0.5]))},mlp={draw(st.sampled_from([0.0, 0.3, 0.5]))},"
                     f"blocks={blocks},importance={draw(st.sampled_from(['magnitude', 'activation', 'taylor']))},"
                     f"scope={draw(st.sampled_from(['global', 'block']))},calib=8)")
    if draw(often):
        size = (f"ratio={draw(st.sampled_from([0.3, 0.5, 0.7]))}" if draw(st.booleans())
                else f"energy={draw(st.sampled_from([0.8, 0.95]))}")
        steps.append(f"lowrank({size},layers={draw(st.sampled_from(['all', 'attn', 'mlp', '[qkv,fc2]']))})")
    steps = list(draw(st.permutations(steps)))
    if quant or draw(often):
        steps.append(f"quant(w={draw(st.sampled_from([8, 4]))},a=8,"
                     f"observer={draw(st.sampled_from(['minmax', 'percentile', 'mse']))},"
                     f"residual={draw(st.sampled_from(['int8', 'int16']))},calib={draw(st.integers(4, 16))},"
                     f"repq={draw(st.sampled_from(['0', 'auto']))},bias_corr={draw(st.integers(0, 1))},"
                     f"gptq={draw(st.integers(0, 1))})")
    return ",".join(steps)


@dataclass
class Case:
    """One fuzz case: what was drawn (all JSON-able)."""

    spec: object
    seed: int
    pipeline: str
    inputs: str
    backend: Backend
    profile: str
    schedule: str | None

    def describe(self) -> dict:
        """The case as a dict for logs and failure messages."""
        return {"spec": self.spec.to_dict() if hasattr(self.spec, "to_dict") else repr(self.spec),
                "seed": self.seed, "pipeline": self.pipeline, "inputs": self.inputs,
                "backend": self.backend.name, "profile": self.profile, "schedule": self.schedule}


def draw_case(data, spec, backends: list[Backend]) -> Case:
    """Draw the rest of a case for `spec` from hypothesis `data` (st.data())."""
    backend = data.draw(st.sampled_from(backends), label="backend")
    return Case(spec=spec, seed=data.draw(st.integers(0, 2**16), label="seed"),
                pipeline=data.draw(pipelines(spec, quant=backend.int8_only), label="pipeline"),
                inputs=data.draw(st.sampled_from(INPUT_STYLES), label="inputs"), backend=backend,
                profile=data.draw(st.sampled_from(backend.profiles), label="profile"),
                schedule=data.draw(st.sampled_from(["fast", "reference"]), label="schedule")
                if backend.target == "mcu" else None)


def calibration_data(spec, seed: int, n: int = 16):
    """n random uint8 images shaped for `spec` with random labels (an ArrayDataset, the passes' calib)."""
    from edgevit.data import ArrayDataset

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, spec.in_channels, spec.image_size, spec.image_size), dtype=np.uint8)
    return ArrayDataset(images, rng.integers(0, spec.num_classes, n), classes=[str(c) for c in range(spec.num_classes)],
                        name="fuzz-calib")


def input_images(spec, style: str, seed: int, n: int = VECTORS) -> np.ndarray:
    """n uint8 images [n, C, H, W] of a style: uniform noise, all 0, all 255, or 0/255 stripes (the
    extremes every quantizer clamps)."""
    shape = (n, spec.in_channels, spec.image_size, spec.image_size)
    if style == "black":
        return np.zeros(shape, np.uint8)
    if style == "white":
        return np.full(shape, 255, np.uint8)
    if style == "stripes":
        rows = (np.arange(spec.image_size) + seed) % 2 * 255
        return np.broadcast_to(rows[None, None, :, None], shape).astype(np.uint8)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def build_program(case: Case):
    """(model after the pipeline, its lowered Program) for the case's randomly weighted model."""
    from edgevit.lower import lower
    from edgevit.model.vit import build_model
    from edgevit.passes.pipeline import run_pipeline
    from tests.lower.int8_helpers import randomise

    model = randomise(build_model(case.spec, seed=case.seed), case.seed)
    if case.pipeline:
        model, _ = run_pipeline(model, case.pipeline, calibration_data(case.spec, case.seed))
    return model, lower(model)


def write_case_artifact(case: Case, program, out: Path) -> None:
    """Build the artifact of `program` for the case's profile as `edgevit compile` does (supports,
    estimate, build with the vectors, the Program's files, seal, atomic write), without the budget
    check. AssertionError when the target refuses a Program the fuzzer considers valid."""
    from edgevit.backend.artifact_program import program_files
    from edgevit.backend.artifact_write import seal, write_atomically
    from edgevit.backend.target import get_target
    from edgevit.backend.vectors import make_vectors

    prof = load_profile(case.profile)
    target = get_target(prof)
    assert target.kind == case.backend.target
    reasons = target.supports(program, prof)
    assert not reasons, f"{case.profile} refuses a valid Program: {reasons}"
    costs = target.estimate(program, prof)
    images = input_images(case.spec, case.inputs, case.seed)
    vectors = make_vectors(program, images, np.full(len(images), -1), f"fuzz {case.inputs} (seed {case.seed})")
    options = {"schedule": case.schedule} if case.schedule else {}
    files = target.build(program, prof, costs, vectors, **options)
    write_atomically(out, seal({**files, **program_files(program)}, target, prof), False)


class Rejected(Exception):
    """The pipeline refused the drawn model with a UserInputError (counted, not a failure)."""


def check_case(case: Case, workdir: Path) -> dict:
    """Run one case end to end and assert every output matches the reference; returns its record
    (the case, the Program's kernel count and dtype, seconds). Raises Rejected when a pass refuses
    the model with a message for people (e.g. nothing left to prune)."""
    from edgevit.backend.run import run_artifact

    t0 = time.perf_counter()
    try:
        model, program = build_program(case)
    except UserInputError as e:
        raise Rejected(str(e)) from e
    out = workdir / "artifact"
    write_case_artifact(case, program, out)
    result = run_artifact(out, case.backend.runner, sanitize=case.backend.sanitize, progress=False)
    record = {**case.describe(), "kernels": len(program.kernels), "dtype": result["dtype"]}
    problem = (f"{case.describe()}: mismatches at {result['mismatches']}, max |error| {result['max_abs_error']}, "
               f"rule {result['match_rule']}")
    assert result["count"] == VECTORS, problem
    if result["matches"] != VECTORS:
        assert result["dtype"] == "float32", problem  # integer outputs: bit-exact, no excuse
        record["ill_conditioned"] = ill_conditioned_vectors(model, out, case, problem)
    shutil.rmtree(out)
    return {**record, "seconds": round(time.perf_counter() - t0, 2)}


def ill_conditioned_vectors(model, artifact: Path, case: Case, problem: str) -> list[dict]:
    """A float32 artifact failed the fixed rule: its vectors judged against float64 (float_conditioning.py);
    AssertionError unless every one passes, else the numbers of those that passed as ill-conditioned."""
    from tests.fuzz.float_conditioning import device_outputs_of, judge, model_outputs

    outputs, vectors = device_outputs_of(artifact, case.backend.runner, case.backend.sanitize)
    truth, torch32 = model_outputs(model, vectors.inputs)
    rows = judge(outputs, vectors.expected, truth, torch32)
    assert all(r["passes"] for r in rows), f"{problem}; against float64: {rows}"
    return [r for r in rows if not r["fixed_rule"]]


@dataclass
class CaseLog:
    """Counts of a fuzz run per backend and outcome; with `path`, one JSON line per case appended."""

    path: Path | None = None
    checked: dict[str, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    ill_conditioned: int = 0

    def add(self, record: dict) -> None:
        """Count one checked program (and log it)."""
        self.checked[record["backend"]] = self.checked.get(record["backend"], 0) + 1
        self.ill_conditioned += bool(record.get("ill_conditioned"))
        self._write({"outcome": "checked", **record})

    def reject(self, case: Case, reason: str) -> None:
        """Count one case a pass refused (and log it)."""
        self.rejected.append(reason)
        self._write({"outcome": "rejected", "reason": reason, **case.describe()})

    def fail(self, case: Case, error: BaseException) -> None:
        """Count and log a failing case (without collecting, hypothesis then shrinks it)."""
        message = f"{type(error).__name__}: {error}"[:2000]
        self.failed.append(message[:300])
        self._write({"outcome": "failed", "error": message, **case.describe()})

    @property
    def programs(self) -> int:
        """Programs compiled, run and checked."""
        return sum(self.checked.values())

    def _write(self, row: dict) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(row, default=str) + "\n")
