"""Whole models through the FPGA compiler and the functional simulator, bit-exact with the reference
interpreter: the zoo models (int8 via the quant pass) and random ViTs through random pass pipelines
(tome / prune / lowrank, then quant with 8- or 4-bit weights and an int8 or int16 residual)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import cheap_pipelines, vit_specs
from tests.targets.fpga.comp_helpers import (assert_bit_exact, model_program, overlay, random_inputs,
                                             zoo_program)


def test_fmnist_tiny_is_bit_exact_in_all_three_orders() -> None:
    program = zoo_program("fmnist-tiny")
    assert_bit_exact(program, overlay("pynq-z2"), random_inputs(program, 2), orders=True)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fmnist-tiny", "fmnist-small"])
@pytest.mark.parametrize("cfg_name", ["pynq-z2", "zcu104"])
def test_zoo_models_20_vectors(model, cfg_name) -> None:
    program = zoo_program(model)
    assert_bit_exact(program, overlay(cfg_name), random_inputs(program, 20, seed=1), orders=False)


@pytest.mark.slow
def test_fmnist_small_compiles_in_seconds() -> None:
    from edgevit.targets.fpga.compiler import compile_program

    program, cfg = zoo_program("fmnist-small"), overlay("pynq-z2")
    compile_program(program, cfg)  # imports TVM and schedules every GEMM shape once (cached)
    t0 = time.process_time()  # CPU time: the machine is shared, wall time is not the compiler's
    compiled = compile_program(program, cfg)
    assert time.process_time() - t0 < 5.0
    assert compiled.stats["instructions"] == len(compiled.insns) == len(compiled.stream) // 32


def check_random(spec, seed: int, pipeline: str, cfg_name: str) -> None:
    from edgevit.model.vit import build_model
    from tests.lower.int8_helpers import randomise

    program = model_program(randomise(build_model(spec, seed=seed), seed), pipeline, seed)
    assert_bit_exact(program, overlay(cfg_name), random_inputs(program, 2, seed), orders=True)


SPEC_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=3, **SPEC_SETTINGS)
@given(spec=vit_specs(), seed=st.integers(0, 2**16), cfg_name=st.sampled_from(["pynq-z2", "zcu104", "tiny"]),
       data=st.data())
def test_random_vits_through_random_pipelines(spec, seed, cfg_name, data) -> None:
    check_random(spec, seed, data.draw(cheap_pipelines(spec, always_quant=True), label="pipeline"), cfg_name)


@pytest.mark.slow
@settings(max_examples=200, **SPEC_SETTINGS)
@given(spec=vit_specs(), seed=st.integers(0, 2**16), cfg_name=st.sampled_from(["pynq-z2", "zcu104", "tiny"]),
       data=st.data())
def test_many_random_vits_through_random_pipelines(spec, seed, cfg_name, data) -> None:
    check_random(spec, seed, data.draw(cheap_pipelines(spec, always_quant=True), label="pipeline"), cfg_name)


def test_token_merging_low_rank_int4_int16_residual_distilled() -> None:
    """One fixed model that uses every op family: MERGE, SOFTMAX with token sizes, 4-bit weights, low-rank
    linears, int16 residual adds, the distillation token (pool prefix)."""
    from edgevit.model.spec import ViTSpec

    spec = ViTSpec.uniform(depth=2, heads=2, head_dim=8, mlp_hidden=24, image_size=16, in_channels=3, patch_size=4,
                           embed_dim=16, num_classes=5, pool="cls_dist", distill_token=True, name="m")
    from edgevit.model.vit import build_model
    from tests.lower.int8_helpers import randomise

    program = model_program(randomise(build_model(spec, seed=3), 3),
                            "tome(r=2),lowrank(ratio=0.5),quant(w=4,residual=int16,calib=16,repq=0)")
    ops = {k.op for k in program.kernels}
    assert {"token_merge", "attention", "pool"} <= ops
    assert any(k.op == "attention" and len(k.inputs) == 2 for k in program.kernels)
    assert any(info.dtype == "int16" for info in program.tensors.values())
    assert any(k.attrs.get("weight_bits") == 4 for k in program.kernels)
    for cfg_name in ("pynq-z2", "tiny"):
        assert_bit_exact(program, overlay(cfg_name), random_inputs(program, 2, seed=3), orders=True)
