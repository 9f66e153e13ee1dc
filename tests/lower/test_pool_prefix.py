"""Lowering DeiT-distilled models: the pool op's "prefix" mode, the folded classifier, the float
Program against torch (1e-5), the int8 Program through the reference interpreter, and the NAS
placeholder's Program being the real one's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.lower import lower_float, lower_int8
from edgevit.lower.from_model import classifier, fold_distilled_head
from edgevit.lower.from_quantized import quantize_weight
from edgevit.lower.ops import get_op
from edgevit.lower.program import Kernel, ProgramError, TensorInfo
from edgevit.lower.reference import quantize_input, run_program
from edgevit.model.counts import count_macs
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from edgevit.nas.placeholder import placeholder_qmodel
from tests.conftest import vit_specs
from tests.lower.int8_helpers import minmax_qmodel, randomise
from tests.model.merge_strategies import merge_schedules

distilled_specs = vit_specs().filter(lambda s: s.distill_token)


def deit_spec(pool: str = "cls_dist", **kw) -> ViTSpec:
    return ViTSpec.uniform(depth=2, heads=2, head_dim=8, mlp_hidden=32, image_size=8, in_channels=3, patch_size=2,
                           embed_dim=16, num_classes=5, pool=pool, distill_token=True, **kw)


def images(spec: ViTSpec, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, spec.in_channels, spec.image_size,
                                                        spec.image_size)).astype(np.float32)


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# ---------------------------------------------------------------- the op

def pool_kernel(rows) -> Kernel:
    attrs = {"mode": "prefix"} if rows is None else {"mode": "prefix", "rows": rows}
    return Kernel("pool", "pool", ("x",), ("y",), attrs=attrs)


@pytest.mark.parametrize("dtype", ["float32", "int8", "int16"])
def test_prefix_pool_copies_the_first_rows_keeping_quantization(dtype) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 7, 5)) * 50).astype(dtype)
    quant = None if dtype == "float32" else {"scale": 0.25, "zero_point": -3}
    op, k = get_op("pool"), pool_kernel(2)
    (info,) = op.validate(k, [TensorInfo("x", (7, 5), dtype, quant)], {})
    assert (info.shape, info.dtype, info.quant) == ((2, 5), dtype, quant)
    (y,) = op.runner(dtype)(k, [x], {})
    np.testing.assert_array_equal(y, x[:, :2])
    assert y.dtype == x.dtype


@pytest.mark.parametrize("rows, message", [(None, r"attr 'rows' must be an integer >= 1 \(got None\)"),
                                           (0, r"attr 'rows' must be an integer >= 1 \(got 0\)"),
                                           (8, r"attr 'rows' = 8 exceeds the 7 rows of input 'x'")])
def test_prefix_pool_rejects_bad_rows(rows, message) -> None:
    with pytest.raises(ProgramError, match=r"kernel 'pool' \(pool\): " + message):
        get_op("pool").validate(pool_kernel(rows), [TensorInfo("x", (7, 5), "float32")], {})


def test_folded_head_is_the_average_of_the_two_heads() -> None:
    rng = np.random.default_rng(1)
    w1, w2 = rng.standard_normal((2, 5, 16)).astype(np.float32)
    b1, b2 = rng.standard_normal((2, 5)).astype(np.float32)
    w, b = fold_distilled_head(w1, b1, w2, b2)
    assert w.shape == (5, 32) and w.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(w[:, :16] * 2, w1)  # halving is exact
    np.testing.assert_array_equal(w[:, 16:] * 2, w2)
    assert b.tolist() == ((b1.astype(np.float64) + b2) / 2).astype(np.float32).tolist()
    n = rng.standard_normal((2, 16))
    np.testing.assert_allclose(w @ n.reshape(-1) + b, ((w1 @ n[0] + b1) + (w2 @ n[1] + b2)) / 2, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- float lowering

def test_float_program_structure() -> None:
    model = build_model(deit_spec(), seed=0)
    program = lower_float(model)
    kernels = {k.name: k for k in program.kernels}
    assert [k.name for k in program.kernels[:3]] == ["patch_embed", "dist_concat", "cls_concat"]
    assert program.tensors["tokens"].shape == (18, 16) and program.tensors["patches.dist"].shape == (17, 16)
    assert kernels["pool"].attrs == {"mode": "prefix", "rows": 2}
    assert program.tensors["pooled"].shape == program.tensors["normed"].shape == (2, 16)
    assert program.tensors["normed.flat"].shape == (1, 32)
    assert program.consts["head.weight"].shape == (5, 32) and program.consts["head.bias"].shape == (5,)
    assert "head_dist.weight" not in program.consts
    np.testing.assert_array_equal(program.consts["dist_token"], model.dist_token.detach().numpy().reshape(-1))
    assert program.macs() == count_macs(model.spec)
    cls_only = lower_float(build_model(deit_spec(pool="cls"), seed=0))
    assert {k.name: k for k in cls_only.kernels}["pool"].attrs == {"mode": "cls"}
    assert cls_only.consts["head.weight"].shape == (5, 16) and "normed.flat" not in cls_only.tensors


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=distilled_specs, seed=st.integers(0, 2**16), fuse=st.booleans(), data=st.data())
def test_float_program_matches_torch_within_1e5(spec, seed, fuse, data) -> None:
    if spec.grid >= 2 and data.draw(st.booleans(), label="merge"):
        spec = data.draw(merge_schedules(spec), label="merged spec")
    model = randomise(build_model(spec, seed=seed), seed)
    program = lower_float(model, fuse_gelu=fuse)
    assert program.macs() == count_macs(spec)
    x = images(spec, 5, seed)
    ref = torch_logits(model, x)
    got = run_program(program, {"image": x})["logits"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


# ---------------------------------------------------------------- int8 lowering

@pytest.mark.parametrize("pool", ["cls_dist", "cls"])
@pytest.mark.parametrize("residual", ["int8", "int16"])
def test_int8_program_tracks_the_float_model(pool, residual) -> None:
    spec = deit_spec(pool=pool)
    model = randomise(build_model(spec, seed=2), 2)
    x = images(spec, 200, 3)
    program = lower_int8(minmax_qmodel(model, x[:100], residual_dtype=residual))
    program.validate()
    tq = program.tensors
    assert tq["patches"].quant == tq["patches.dist"].quant == tq["tokens"].quant  # copies keep quantization
    assert tq["pooled"].quant == tq[[k for k in program.kernels if k.name == "pool"][0].inputs[0]].quant
    if pool == "cls_dist":
        assert tq["normed.flat"].quant == tq["normed"].quant and tq["normed.flat"].shape == (1, 32)
        assert program.consts["head.weight"].shape == (5, 32) and program.consts["head.weight"].dtype == np.int8
    out = run_program(program, quantize_input(program, x))["logits"]
    q = tq["logits"].quant
    got = (out.astype(np.float64) - q["zero_point"]) * q["scale"]
    ref = torch_logits(model, x)
    assert np.abs(got - ref).max() < 0.15 * (ref.max() - ref.min())
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.8


def test_int8_head_quantizes_the_folded_classifier_per_channel() -> None:
    model = randomise(build_model(deit_spec(), seed=4), 4)
    x = images(model.spec, 32, 5)
    program = lower_int8(minmax_qmodel(model, x))
    folded = classifier(model).weight
    wq, _ = quantize_weight(folded, 8)
    np.testing.assert_array_equal(program.consts["head.weight"], wq)
    assert np.abs(wq).max(axis=1).tolist() == [127] * 5  # every row uses its full range: per-channel scales


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=distilled_specs, seed=st.integers(0, 2**16), residual=st.sampled_from(["int8", "int16"]),
       data=st.data())
def test_random_distilled_int8_programs_run_consistently(spec, seed, residual, data) -> None:
    if spec.grid >= 2 and data.draw(st.booleans(), label="merge"):
        spec = data.draw(merge_schedules(spec), label="merged spec")
    model = randomise(build_model(spec, seed=seed), seed)
    x = images(spec, 24, seed)
    qmodel = minmax_qmodel(model, x[:16], residual_dtype=residual)
    program = lower_int8(qmodel)
    program.validate()
    xq = quantize_input(program, x)
    logits = run_program(program, xq)["logits"]
    assert logits.dtype == np.int8 and logits.shape == (24, spec.num_classes)
    np.testing.assert_array_equal(run_program(program, xq, batch_size=5)["logits"], logits)
    np.testing.assert_array_equal(run_program(lower_int8(qmodel, fuse_gelu=False), xq)["logits"], logits)


# ---------------------------------------------------------------- NAS placeholder

@pytest.mark.parametrize("pool", ["cls_dist", "cls"])
@pytest.mark.parametrize("weight_bits", [8, 4])
def test_placeholder_program_has_the_real_programs_structure(pool, weight_bits) -> None:
    from tests.nas.test_nas_estimate import assert_same_structure, real_program

    spec = deit_spec(pool=pool)
    real = real_program(spec, 6, weight_bits)
    assert_same_structure(real, lower_int8(placeholder_qmodel(spec, weight_bits)))


def test_nas_estimates_tell_a_distillation_token_apart() -> None:
    """The Estimator's cache key includes distill_token: pool "cls" with and without one differ."""
    from dataclasses import replace

    from edgevit.nas.estimate import Estimator

    est = Estimator("stm32f746-disco")
    with_token = deit_spec(pool="cls")
    without = est(replace(with_token, distill_token=False)).costs
    assert est(with_token).costs.macs > without.macs
    assert est(with_token).costs.activation_bytes >= without.activation_bytes
