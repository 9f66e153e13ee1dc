"""Whole ViT Programs (int8 and float, random weights) through the planner, the kernels and the
emitter, built with host gcc -Werror and run: outputs equal the reference interpreter's
(bit-exact int8, 1e-4 float). Skips while an op has no registered kernel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.lower import lower_float, lower_int8
from edgevit.model.vit import build_model
from edgevit.targets.mcu.emit import emit_artifact
from edgevit.backend.vectors import random_vectors
from tests.conftest import vit_specs
from tests.lower.int8_helpers import minmax_qmodel, randomise
from tests.targets.mcu.helpers import SANITIZE, WERROR, assert_outputs_match, build_firmware, needs_arm, run_host


def programs_for(spec, seed: int = 0):
    """(float Program, int8 Program) of a randomly weighted model of `spec` (min/max calibration)."""
    model = randomise(build_model(spec, seed=seed), seed)
    x = np.random.default_rng(seed).standard_normal((16, spec.in_channels, spec.image_size, spec.image_size))
    return lower_float(model), lower_int8(minmax_qmodel(model, x.astype(np.float32)))


def emit_and_run(program, profile, out, count: int = 3, schedule: str = "fast"):
    from edgevit.targets.mcu.memory import plan_memory

    plan = plan_memory(program)
    vectors = random_vectors(program, count)
    emit_artifact(program, profile, plan, out, vectors=vectors, schedule=schedule)
    got, _ = run_host(out)
    assert_outputs_match(got, vectors.expected)
    return plan


@pytest.fixture(scope="module")
def tiny_programs():
    from edgevit.model.spec import ViTSpec

    spec = ViTSpec.uniform(depth=2, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1, patch_size=2,
                           embed_dim=8, num_classes=3, name="t")
    return programs_for(spec)


@pytest.mark.parametrize("which", ["int8", "float32"])
def test_tiny_vit_runs_like_the_reference_on_the_host(tiny_programs, profile, tmp_path, which) -> None:
    program = tiny_programs[0] if which == "float32" else tiny_programs[1]
    emit_and_run(program, profile, tmp_path)
    model_c = (tmp_path / "src" / "model.c").read_text()
    for k in program.kernels:
        assert f"/* {k.name}: {k.op} " in model_c


def test_reference_schedule_gives_the_same_outputs(tiny_programs, profile, tmp_path) -> None:
    emit_and_run(tiny_programs[1], profile, tmp_path, schedule="reference")


@needs_arm
def test_tiny_vit_firmware_builds_with_werror(tiny_programs, profile, tmp_path) -> None:
    emit_and_run(tiny_programs[1], profile, tmp_path, count=1)
    assert build_firmware(tmp_path).is_file()


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(spec=vit_specs(), seed=st.integers(0, 1000), which=st.sampled_from(["int8", "float32"]))
def test_random_vits_run_like_the_reference(profile, tmp_path_factory, spec, seed, which) -> None:
    fp, q = programs_for(spec, seed)
    emit_and_run(fp if which == "float32" else q, profile, tmp_path_factory.mktemp("vit"))


def program_slice(program, first: str, last: str):
    """The kernels from `first` to `last` (names) of a one-chain Program as a Program of their own:
    input = `first`'s first input, output = `last`'s output, the constants they use."""
    from edgevit.lower.program import Program

    names = [k.name for k in program.kernels]
    kernels = program.kernels[names.index(first):names.index(last) + 1]
    inp, out = kernels[0].inputs[0], kernels[-1].outputs[0]
    used = {t for k in kernels for t in (*k.inputs, *k.outputs)}
    consts = {c: program.consts[c] for k in kernels for c in k.consts.values()}
    sliced = Program(f"{program.name}[{first}..{last}]", [inp], [out], {t: program.tensors[t] for t in used},
                     consts, list(kernels), dict(program.meta))
    sliced.validate()
    return sliced


def slice_vectors(program, count: int = 3, seed: int = 0):
    from edgevit.backend.vectors import Vectors

    from tests.targets.mcu.helpers import vectors_for

    v = vectors_for(program, count, seed)
    return Vectors(v.inputs, v.expected, v.labels, v.source)


@pytest.mark.parametrize("which", ["int8", "float32"])
@pytest.mark.parametrize("first, last", [("cls_concat", "blocks.0.norm1"), ("blocks.0.attn.core", "blocks.0.attn.core"),
                                         ("pool", "norm")])
def test_program_slices_run_like_the_reference(tiny_programs, profile, tmp_path, which, first, last) -> None:
    """Parts of a ViT whose kernels exist (no linear / patch_embed needed): cls token, positions,
    LayerNorm, attention with its scratch, pooling."""
    from edgevit.targets.mcu.memory import plan_memory

    program = program_slice(tiny_programs[0] if which == "float32" else tiny_programs[1], first, last)
    plan = plan_memory(program)
    vectors = slice_vectors(program)
    emit_artifact(program, profile, plan, tmp_path, vectors=vectors)
    got, _ = run_host(tmp_path, cflags=f"{WERROR} {SANITIZE}")
    assert_outputs_match(got, vectors.expected)
