"""NAS cost estimation: skeleton Programs plan exactly like real lowered ones; the Estimator is the
MCU target's estimate of them; caching; non-MCU profiles; throughput (printed, and a CPU-time floor).

(Named test_nas_estimate.py: tests/targets/test_estimate.py exists and test files need unique basenames.)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.errors import UserInputError
from edgevit.lower import lower_int8
from edgevit.model.counts import count_params
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from edgevit.nas.estimate import Estimator, SpecCosts, skeleton_program
from edgevit.passes.reparam import linear_inputs
from edgevit.profiles.profile import load_profile, profile_dir
from edgevit.targets.mcu.target import McuTarget
from tests.conftest import vit_specs
from tests.lower.int8_helpers import minmax_qmodel, randomise
from tests.model.merge_strategies import merged_vit_specs
from tests.backend.test_planner import make_program

ZOO = Path(__file__).resolve().parents[2] / "models"
FIGURES = ("arena_bytes", "lower_bound_bytes", "naive_bytes", "stack_bytes", "weight_bytes", "code_bytes",
           "flash_bytes", "macs")
PROFILE = load_profile("stm32f746-disco")


def real_program(spec: ViTSpec, seed: int, weight_bits: int = 8):
    """The int8 Program of a random-weight model of `spec` (min/max calibration, residual int8);
    weight_bits 4: every linear but the head at 4 bits (the quant pass's w=4)."""
    if weight_bits == 8:
        return make_program(spec, seed, "int8")
    model = randomise(build_model(spec, seed=seed), seed)
    bits = {name: 4 for name, _, _ in linear_inputs(model) if name != "head.weight"}
    x = np.random.default_rng(seed).standard_normal((8, spec.in_channels, spec.image_size, spec.image_size))
    return lower_int8(minmax_qmodel(model, x.astype(np.float32), weight_bits=bits))


def assert_same_structure(real, skel) -> None:
    """Same kernels (op, name, inputs, outputs, constant roles and names, attr keys, code-relevant
    attr values), tensors (names in order, shapes, dtypes) and constants (names, shapes, dtypes)."""
    assert [(k.op, k.name, k.inputs, k.outputs, k.consts) for k in real.kernels] == \
        [(k.op, k.name, k.inputs, k.outputs, k.consts) for k in skel.kernels]
    for a, b in zip(real.kernels, skel.kernels):
        assert set(a.attrs) == set(b.attrs), a.name
        for key in ("activation", "weight_bits", "mode", "heads", "head_dim", "patch", "r", "protect", "shape"):
            assert a.attrs.get(key) == b.attrs.get(key), (a.name, key)
    assert [(n, t.shape, t.dtype) for n, t in real.tensors.items()] == \
        [(n, t.shape, t.dtype) for n, t in skel.tensors.items()]
    assert [(n, c.shape, c.dtype) for n, c in real.consts.items()] == \
        [(n, c.shape, c.dtype) for n, c in skel.consts.items()]
    assert (real.inputs, real.outputs) == (skel.inputs, skel.outputs)


def assert_same_estimate(real, skel) -> None:
    """McuTarget estimates equal in every figure (and the plans' steps)."""
    a, b = McuTarget().estimate(real, PROFILE), McuTarget().estimate(skel, PROFILE)
    assert {f: getattr(a, f) for f in FIGURES} == {f: getattr(b, f) for f in FIGURES}
    assert a.plan.steps == b.plan.steps


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.one_of(vit_specs(), merged_vit_specs()), seed=st.integers(0, 2**16))
def test_skeleton_plans_like_the_real_program(spec, seed) -> None:
    skel = skeleton_program(spec)
    skel.validate()  # every op's inference accepts the placeholders and infers the declared tensors
    real = real_program(spec, seed)
    assert_same_structure(real, skel)
    assert_same_estimate(real, skel)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=merged_vit_specs(), seed=st.integers(0, 2**16))
def test_skeleton_with_4bit_weights(spec, seed) -> None:
    skel = skeleton_program(spec, weight_bits=4)
    skel.validate()
    real = real_program(spec, seed, weight_bits=4)
    assert_same_structure(real, skel)
    assert_same_estimate(real, skel)


def test_skeleton_rejects_other_weight_bits(tiny_spec) -> None:
    with pytest.raises(UserInputError, match="weight_bits"):
        skeleton_program(tiny_spec, weight_bits=6)


@pytest.fixture(scope="module")
def tiny_int8():
    """fmnist-tiny through the quant pass (as `edgevit compile --passes quant(w=8,a=8)` does; a small
    calibration set: the Program's structure does not depend on it)."""
    from edgevit.data import load_dataset
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.passes.quantize import quantize

    model = load_checkpoint(ZOO / "fmnist-tiny")
    qmodel, _ = quantize(model, load_dataset("fashion-mnist").train, calib=16, repq=0.0)
    return lower_int8(qmodel)


def test_estimator_equals_the_real_fmnist_tiny_estimate(tiny_int8) -> None:
    spec = ViTSpec.from_yaml((ZOO / "fmnist-tiny" / "spec.yaml").read_text())
    assert_same_structure(tiny_int8, skeleton_program(spec))
    real = McuTarget().estimate(tiny_int8, PROFILE)
    got = Estimator("stm32f746-disco")(spec)
    assert isinstance(got, SpecCosts)
    assert (got.arena_bytes, got.stack_bytes, got.flash_bytes, got.weight_bytes, got.code_bytes, got.macs) == \
        (real.arena_bytes, real.stack_bytes, real.flash_bytes, real.weight_bytes, real.code_bytes, real.macs)
    assert got.sram_bytes == real.sram_bytes == real.arena_bytes + real.stack_bytes
    assert (got.sram_budget, got.flash_budget, got.fits) == (real.sram_budget, real.flash_budget, real.fits)
    assert got.params == count_params(spec) and got.fits
    assert got.instructions is not None and got.instructions > got.macs / 4
    assert got.latency_ms == pytest.approx(got.instructions / PROFILE.clock_hz * 1e3)
    assert set(got.to_dict()) == {f.name for f in dataclasses.fields(SpecCosts)}


def test_estimator_caches_by_spec_ignoring_the_name(tiny_spec) -> None:
    est = Estimator(PROFILE)
    first = est(tiny_spec)
    assert est(tiny_spec) is first and len(est) == 1
    assert est(dataclasses.replace(tiny_spec, name="renamed")) is first and len(est) == 1
    wider = tiny_spec.with_blocks([dataclasses.replace(b, mlp_hidden=32) for b in tiny_spec.blocks])
    assert est(wider) is not first and len(est) == 2
    assert est(wider).weight_bytes > first.weight_bytes


def test_estimator_fits_against_the_profile_budgets() -> None:
    spec = ViTSpec.from_yaml((ZOO / "fmnist-small" / "spec.yaml").read_text())
    big = ViTSpec.uniform(depth=8, heads=8, head_dim=32, mlp_hidden=1024, image_size=28, in_channels=1,
                          patch_size=2, embed_dim=256, num_classes=10)
    nrf, stm = Estimator("nrf52840"), Estimator("stm32f746-disco")
    assert stm(spec).fits and stm(spec).sram_budget == 320 * 1024
    costs = nrf(big)
    assert not costs.fits and not (costs.fits_sram and costs.fits_flash)
    assert costs.sram_bytes > costs.sram_budget or costs.flash_bytes > costs.flash_budget
    assert Estimator("nrf52840", weight_bits=4)(spec).weight_bytes < nrf(spec).weight_bytes


@pytest.mark.parametrize("name", ["rpi4", "pynq-z2"])
def test_estimator_needs_an_mcu_profile(name) -> None:
    with pytest.raises(UserInputError, match="NAS cost estimation needs an MCU profile"):
        Estimator(name)


def test_estimator_uncalibrated_core_has_no_latency(tiny_spec, tmp_path) -> None:
    src = (profile_dir() / "stm32f746-disco.yaml").read_text()
    path = tmp_path / "m3.yaml"
    path.write_text(src.replace("name: stm32f746-disco", "name: m3").replace("cortex-m7", "cortex-m3")
                    .replace(", dsp, fpv5-sp-d16", "").replace(", -mfpu=fpv5-sp-d16, -mfloat-abi=hard", ""))
    got = Estimator(path)(tiny_spec)
    assert got.latency_ms is None and got.instructions is None and got.arena_bytes > 0


def distinct_small_specs(count: int) -> list[ViTSpec]:
    """`count` distinct specs around models/fmnist-small (per-block widths, merging)."""
    rng = np.random.default_rng(0)
    base = ViTSpec.from_yaml((ZOO / "fmnist-small" / "spec.yaml").read_text())
    out = []
    for _ in range(count):
        blocks = [dataclasses.replace(b, heads=int(rng.integers(1, 5)), mlp_hidden=int(rng.choice([192, 288, 384])),
                                      merge_r=int(rng.integers(0, 4))) for b in base.blocks]
        out.append(dataclasses.replace(base.with_blocks(blocks), embed_dim=int(rng.choice([64, 96]))))
    return out


def test_estimator_throughput() -> None:
    """Benchmark-style: prints specs/s (wall and CPU) for fmnist-small-like specs. The issue's target,
    >= 100 specs/s, holds on an idle machine (~4.5 ms per spec) but not reliably under a training
    job on 2 cores, so only a floor that catches gross regressions (10x slower) is asserted."""
    specs = distinct_small_specs(40)
    est = Estimator(PROFILE)
    est(specs[0])  # imports and the score LUT
    wall, cpu = time.perf_counter(), time.process_time()
    for s in specs[1:]:
        est.compute(s)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(specs) - 1
    print(f"\nEstimator: {n / wall:.0f} specs/s wall, {n / cpu:.0f} specs/s CPU (fmnist-small-like specs)")
    assert n / cpu >= 20
