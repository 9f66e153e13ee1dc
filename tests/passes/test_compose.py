"""Passes compose: any order of tome / prune / lowrank (then quant) gives a model that matches its ViTSpec,
whose float Program matches torch and whose int8 Program validates, runs and is planned by the MCU backend."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.data import ArrayDataset
from edgevit.lower import lower, lower_float, lower_int8
from edgevit.lower.reference import predict, quantize_input, run_program
from edgevit.model.checkpoint import check_state_dict
from edgevit.model.counts import count_macs, count_params
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import VisionTransformer, build_model
from edgevit.passes.pipeline import run_pipeline
from edgevit.lower.qconfig import QuantizedViT
from tests.conftest import vit_specs
from edgevit.backend.planner import plan_program
from tests.lower.int8_helpers import minmax_qmodel, randomise
from tests.backend.test_planner import check_buffers

STEPS = {"tome": "tome(r=3)", "prune": "prune(heads=0.25,mlp=0.3,importance=magnitude)",
         "lowrank": "lowrank(ratio=0.5)"}


def dataset(spec: ViTSpec, n: int = 48, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    shape = (n, spec.in_channels, spec.image_size, spec.image_size)
    return ArrayDataset(rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, spec.num_classes, n),
                        classes=[str(c) for c in range(spec.num_classes)], name="synthetic")


def check_result(model: VisionTransformer, data: ArrayDataset):
    """Weights match the spec; analytic counts match; float Program == torch; int8 Program validates and runs.

    Returns the int8 Program."""
    check_state_dict(VisionTransformer(model.spec), model.state_dict(), "pass result")
    assert count_params(model.spec) == model.num_params()
    program = lower_float(model)
    assert program.macs() == count_macs(model.spec)
    x = model.preprocess.apply(data.images[:6])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = run_program(program, {"image": x})["logits"]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * max(float(np.abs(ref).max()), 1e-3))
    int8 = lower_int8(minmax_qmodel(model, model.preprocess.apply(data.images[:16])))
    int8.validate()
    assert run_program(int8, quantize_input(int8, x))["logits"].shape == (6, model.spec.num_classes)
    return int8


@pytest.fixture(scope="module")
def base():
    spec = ViTSpec.uniform(depth=3, heads=4, head_dim=4, mlp_hidden=24, image_size=8, in_channels=1, patch_size=2,
                           embed_dim=16, num_classes=3, name="c")
    return randomise(build_model(spec, seed=0), 0)


@pytest.mark.parametrize("order", list(itertools.permutations(STEPS)), ids="-".join)
def test_every_order_composes(base, order):
    data = dataset(base.spec)
    out, reports = run_pipeline(base, ",".join(STEPS[n] for n in order), data)
    assert [r.name for r in reports] == list(order)
    assert all(a.macs_after == b.macs_before for a, b in zip(reports, reports[1:]))
    assert reports[-1].macs_after == count_macs(out.spec) < count_macs(base.spec)
    assert any(b.merge_r for b in out.spec.blocks) and any(b.ranks for b in out.spec.blocks)
    assert sum(b.heads for b in out.spec.blocks) == 9
    check_result(out, data)


def test_tome_prune_lowrank_then_quant_gives_an_int8_program(base):
    data = dataset(base.spec, 96)
    out, reports = run_pipeline(base, "tome(r=3),prune(heads=0.25,mlp=0.3,calib=32),lowrank(ratio=0.5),"
                                      "quant(calib=32,repq=0)", data, eval_data=data)
    assert isinstance(out, QuantizedViT) and reports[-1].name == "quant"
    program = lower(out)
    assert program.meta["lowering"] == "int8" and any(k.op == "token_merge" for k in program.kernels)
    pred = predict(program, data.images).argmax(1)
    assert reports[-1].top1_after == pytest.approx(float((pred == data.labels).mean()), abs=1e-6)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=vit_specs().filter(lambda s: s.grid >= 2), seed=st.integers(0, 2**16),
       r=st.integers(0, 4), heads=st.sampled_from([0.0, 0.3, 0.6]), mlp=st.sampled_from([0.0, 0.5]),
       blocks=st.integers(0, 1), ratio=st.sampled_from([0.3, 0.7, 1.0]),
       importance=st.sampled_from(["magnitude", "activation", "taylor"]), data=st.data())
def test_random_specs_and_options_always_lower_and_plan(spec, seed, r, heads, mlp, blocks, ratio, importance, data):
    model = randomise(build_model(spec, seed=seed), seed)
    blocks = min(blocks, spec.depth - 1)
    steps = [f"tome(r={r})", f"prune(heads={heads},mlp={mlp},blocks={blocks},importance={importance},calib=16)",
             f"lowrank(ratio={ratio})"]
    order = data.draw(st.permutations(steps))
    out, _ = run_pipeline(model, ",".join(order), dataset(spec, 24, seed))
    int8 = check_result(out, dataset(spec, 24, seed))
    plan = plan_program(int8)  # ... and the MCU backend plans it: a valid arena, every tensor placed
    check_buffers(int8, plan)
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes


ZOO = Path(__file__).resolve().parents[2] / "models" / "fmnist-tiny"


@pytest.mark.slow
@pytest.mark.skipif(not (ZOO / "model.safetensors").exists(), reason="zoo model not trained")
def test_zoo_tome_prune_quant_int8_agrees_with_its_float_model():
    from edgevit.data import load_dataset
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.model.evaluate import predict as torch_predict

    model = load_checkpoint(ZOO)
    splits = load_dataset("fashion-mnist")
    test = splits.test.take(500)
    merged, _ = run_pipeline(model, "tome(r=4),prune(heads=0.25,importance=magnitude)", splits.train)
    qmodel, reports = run_pipeline(merged, "quant(calib=128)", splits.train)
    program = lower(qmodel)
    assert sum(k.op == "token_merge" for k in program.kernels) == 4
    pred = predict(program, test.images).argmax(1)
    assert (pred == torch_predict(merged, test)).mean() >= 0.95
