"""The MCU latency model: checked-in calibrations load and reproduce their recorded validation;
McuTarget.estimate reports it; work features count chunked calls; the non-negative fit; predictions
grow with the work; QEMU re-measure (slow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgevit.errors import UserInputError
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.targets.mcu import latency
from edgevit.backend.nnls import nnls
from edgevit.backend.planner import step_calls
from edgevit.targets.mcu.latency import LatencyModel, fit_coefficients, program_work
from edgevit.profiles.profile import load_profile, profile_dir
from edgevit.targets.mcu.target import McuTarget
from edgevit.backend.planner import Step
from edgevit.targets.mcu.memory import plan_memory

ZOO = Path(__file__).resolve().parents[3] / "models"  # tests/targets/mcu/ -> the repository's models/
CALIBRATED = ("stm32f746-disco", "nrf52840", "corstone-300")
AIM = 0.10  # whole-model relative error the calibrations aim at


def spec_of(name: str) -> ViTSpec:
    return ViTSpec.from_yaml((ZOO / name / "spec.yaml").read_text())


def int8_program(spec: ViTSpec):
    """The int8 Program of `spec` with placeholder weights (the kernels and plan of the real one)."""
    from edgevit.lower import lower_int8
    from edgevit.nas.placeholder import placeholder_qmodel

    return lower_int8(placeholder_qmodel(spec))


def test_zoo_is_the_repositorys_models_directory() -> None:
    assert (ZOO / "fmnist-tiny" / "spec.yaml").is_file() and (ZOO.parent / "edgevit").is_dir()


@pytest.mark.parametrize("profile", CALIBRATED)
def test_calibration_loads_and_records_its_validation(profile) -> None:
    model = LatencyModel.load(profile)
    p = load_profile(profile)
    assert model.available and model.core == p.core and model.clock_hz == p.clock_hz
    record = json.loads(latency.calibration_path(p.core).read_text())
    assert record["format"] == latency.FORMAT and record["core"] == p.core
    assert all(v >= 0 for fs in record["coefficients"].values() for v in fs.values())
    names = [v["name"] for v in record["validation"]]
    assert "fmnist-tiny" in names and len(names) >= 4
    assert all(abs(v["rel_error"]) <= AIM for v in record["validation"]), record["validation"]
    assert len(record["samples"]) >= 40


@pytest.mark.parametrize("profile", CALIBRATED)
def test_fmnist_tiny_prediction_is_the_recorded_one(profile) -> None:
    """fmnist-tiny with placeholder weights (same kernels and plan as its real int8 Program) predicts
    exactly what the calibration recorded for the real Program, hence within the recorded error of
    the QEMU measurement; McuTarget.estimate reports that prediction as latency_ms."""
    model = LatencyModel.load(profile)
    program = int8_program(spec_of("fmnist-tiny"))
    got = model.predict(program, plan_memory(program).steps)
    rec = next(v for v in model.record["validation"] if v["name"] == "fmnist-tiny")
    assert got == pytest.approx(rec["predicted"], rel=1e-9)
    assert abs(got / rec["measured"] - 1.0) <= abs(rec["rel_error"]) + 1e-9
    assert model.latency_ms(got) == pytest.approx(got / load_profile(profile).clock_hz * 1e3)
    assert McuTarget().estimate(program, profile).latency_ms == model.latency_ms(got)


def test_float_programs_and_uncalibrated_cores_have_no_estimated_latency(tmp_path) -> None:
    from tests.backend.test_planner import make_program

    program = make_program(spec_of("fmnist-tiny").with_blocks(spec_of("fmnist-tiny").blocks[:1]), 0, "float32")
    assert LatencyModel.load("stm32f746-disco").predict(program) is None
    assert McuTarget().estimate(program, "stm32f746-disco").latency_ms is None
    src = (profile_dir() / "stm32f746-disco.yaml").read_text()
    path = tmp_path / "m3.yaml"
    path.write_text(src.replace("name: stm32f746-disco", "name: m3").replace("cortex-m7", "cortex-m3")
                    .replace(", dsp, fpv5-sp-d16", "").replace(", -mfpu=fpv5-sp-d16, -mfloat-abi=hard", "")
                    .replace("armv7e-m", "armv7-m"))  # a Cortex-M3 is ARMv7-M (profiles/cores.py)
    costs = McuTarget().estimate(int8_program(spec_of("fmnist-tiny")), path)
    assert costs.latency_ms is None and costs.memory.used > 0


def test_other_cortex_m7_boards_share_the_core_calibration() -> None:
    m7, h7 = LatencyModel.load("stm32f746-disco"), LatencyModel.load("stm32h743")
    program = int8_program(spec_of("fmnist-tiny"))
    assert h7.predict(program) == pytest.approx(m7.predict(program))
    assert h7.latency_ms(1e6) < m7.latency_ms(1e6)  # 400 MHz vs 216 MHz


def test_uncalibrated_and_non_mcu_profiles_predict_none(tmp_path) -> None:
    program = int8_program(spec_of("fmnist-tiny"))
    cpu = LatencyModel.load("rpi4")
    assert not cpu.available and cpu.predict(program) is None and "cpu" in cpu.why
    missing = LatencyModel.load("stm32f746-disco", path=tmp_path / "none.json")
    assert not missing.available and missing.predict(program) is None and missing.latency_ms(None) is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UserInputError, match="latency calibration"):
        LatencyModel.load("stm32f746-disco", path=bad)


def test_unknown_op_predicts_none() -> None:
    model = LatencyModel.load("stm32f746-disco")
    program = int8_program(spec_of("fmnist-tiny"))
    partial = dataclasses.replace(model, coefficients={k: v for k, v in model.coefficients.items() if k != "attention"})
    assert partial.predict(program) is None


def scaled(spec: ViTSpec, **block) -> ViTSpec:
    return spec.with_blocks([dataclasses.replace(b, **block) for b in spec.blocks])


@pytest.mark.parametrize("profile", CALIBRATED)
def test_more_work_predicts_more_instructions(profile) -> None:
    model = LatencyModel.load(profile)
    base = spec_of("fmnist-tiny")
    ladders = [
        [scaled(base, mlp_hidden=h) for h in (32, 64, 128, 256, 384)],
        [scaled(base, heads=h) for h in (1, 2, 3, 4, 6)],
        [base.with_blocks(base.blocks[:d]) for d in (1, 2, 3, 4)],
        [dataclasses.replace(base, embed_dim=d) for d in (16, 32, 48, 64, 96)],
        [dataclasses.replace(base, patch_size=p) for p in (14, 7, 4, 2)],
        [scaled(base, merge_r=r) for r in (8, 4, 2)],  # (r = 0 has no merging work: not comparable)
    ]
    for ladder in ladders:
        programs = [int8_program(s) for s in ladder]
        got = [model.predict(p) for p in programs]
        macs = [p.macs() for p in programs]
        assert macs == sorted(macs) and all(g > 0 for g in got)
        assert got == sorted(got), (ladder[0], got)


def test_chunked_steps_count_each_chunk_as_a_call() -> None:
    assert step_calls(Step((0,))) == [None]
    assert step_calls(Step((0, 1), chunk_rows=4, rows=10)) == [4, 4, 2]
    assert step_calls(Step((0, 1), chunk_rows=5, rows=10)) == [5, 5]
    program = int8_program(spec_of("fmnist-tiny"))
    i = next(i for i, k in enumerate(program.kernels) if k.name == "blocks.0.mlp.fc1")
    whole = [Step((k,)) for k in range(len(program.kernels))]
    chunked = whole[:i] + [Step((i, i + 1, i + 2), chunk_rows=8, rows=50)] + whole[i + 3:]
    a, b = program_work(program, whole), program_work(program, chunked)
    assert b["linear"]["calls"] == a["linear"]["calls"] + 2 * (7 - 1) and b["add"]["calls"] == a["add"]["calls"] + 6
    assert b["linear"]["outputs"] == a["linear"]["outputs"] and b["add"]["elements"] == a["add"]["elements"]
    assert b["linear"]["columns"] > a["linear"]["columns"]  # per-column values are per call


def test_nnls_matches_the_kkt_conditions() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.0, 1.0, (40, 6))
    x_true = np.array([3.0, 0.0, 1.5, 0.0, 2.0, 0.5])
    assert np.allclose(nnls(a, a @ x_true), x_true, atol=1e-8)
    b = a @ np.array([1.0, -2.0, 0.5, 1.0, -1.0, 0.3]) + rng.normal(0, 0.01, 40)
    x = nnls(a, b)
    grad = a.T @ (a @ x - b)
    assert (x >= 0).all() and (x == 0).any()
    assert np.allclose(grad[x > 0], 0.0, atol=1e-8) and (grad[x == 0] >= -1e-8).all()


def test_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(1)
    truth = {"linear": {"calls": 300.0, "dsp_main": 1.5, "outputs": 7.0}, "add": {"calls": 200.0, "elements": 24.0}}
    works, net = [], []
    for _ in range(30):
        w = {"linear": {"calls": 1.0, "dsp_main": float(rng.integers(1e3, 1e6)),
                        "outputs": float(rng.integers(10, 1e4))}}
        if rng.random() < 0.5:
            w["add"] = {"calls": 1.0, "elements": float(rng.integers(10, 1e4))}
        works.append(w)
        net.append(latency.apply_coefficients(truth, w))
    works.append({"add": {"calls": 1.0, "elements": 100.0}})
    net.append(latency.apply_coefficients(truth, works[-1]))
    got = fit_coefficients(works, net)
    for key, feats in truth.items():
        for f, v in feats.items():
            assert got[key][f] == pytest.approx(v, rel=1e-6)


@pytest.mark.slow
def test_prediction_matches_a_qemu_measurement(tmp_path) -> None:
    """One small random-weight int8 model (token merging, a low-rank MLP, an MLP chain) measured on
    the stm32f746-disco QEMU board vs the Cortex-M7 model: within 15 %."""
    from tests.backend.test_planner import make_program

    blocks = (BlockSpec(2, 16, 96, merge_r=6), BlockSpec(3, 16, 128, ranks={"fc1": 12}))
    spec = ViTSpec(image_size=24, in_channels=1, patch_size=4, embed_dim=48, num_classes=10, blocks=blocks,
                   name="latency-check")
    program = make_program(spec, 5, "int8")
    profile = load_profile("stm32f746-disco")
    measured = latency.measure_instructions(program, profile, tmp_path, count=2)
    predicted = LatencyModel.load(profile).predict(program, plan_memory(program).steps)
    print(f"\nmeasured {measured:,.0f}, predicted {predicted:,.0f} ({predicted / measured - 1:+.1%})")
    assert abs(predicted / measured - 1.0) <= 0.15
