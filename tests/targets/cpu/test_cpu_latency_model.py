"""The CPU latency model: the shipped calibration loads, reproduces its recorded fit and is what the
docs state; CpuTarget.estimate reports latency for host / rpi4 / cortex-a76 (calibrated vs an
extrapolation), monotone in the work; features count chunked calls; the non-negative fit; NAS
applies --latency-ms for a cpu profile (fast, with fakes) and the real `edgevit search --profile
rpi4 --latency-ms` (slow); measuring one Program on this host (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgevit.backend.nnls import nnls
from edgevit.backend.planner import Step
from edgevit.errors import InfeasibleError
from edgevit.model.spec import ViTSpec
from edgevit.nas.estimate import Estimator
from edgevit.nas.search import SearchOptions, run_search
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu import latency
from edgevit.targets.cpu.calibration import calibrate
from edgevit.targets.cpu.target import CpuTarget
from tests.nas.test_search_cli import fake_factory, fake_trainer
from tests.nas.test_search_cli import fmnist_npz, tiny_space  # noqa: F401  (fixtures, shared with the NAS CLI tests)

ROOT = Path(__file__).resolve().parents[3]
PROFILES = ("host", "rpi4", "cortex-a76")
EXTRAPOLATED = ("rpi4", "cortex-a76")


def spec(embed_dim: int = 64, depth: int = 2, image_size: int = 28, heads: int = 2, merge_r: int = 0) -> ViTSpec:
    blocks = [{"heads": heads, "head_dim": 16, "mlp_hidden": 2 * embed_dim, **({"merge_r": merge_r} if merge_r else {})}
              for _ in range(depth)]
    return ViTSpec.from_dict({"name": f"s{embed_dim}x{depth}", "image_size": image_size, "in_channels": 1,
                              "patch_size": 4, "embed_dim": embed_dim, "pool": "cls", "num_classes": 10,
                              "blocks": blocks})


def int8_program(s: ViTSpec):
    from edgevit.lower.from_quantized import lower_int8
    from edgevit.nas.placeholder import placeholder_qmodel

    return lower_int8(placeholder_qmodel(s))


def float_program(s: ViTSpec):
    import torch

    from edgevit.lower import lower
    from edgevit.model.vit import VisionTransformer

    torch.manual_seed(0)
    return lower(VisionTransformer(s).eval())


@pytest.fixture(scope="module")
def record() -> dict:
    rec = latency.load_calibration()
    assert rec is not None, f"{latency.CALIBRATION_FILE} is missing: run python -m edgevit.targets.cpu.calibration.calibrate"
    return rec


# ---- the shipped calibration -----------------------------------------------------------------------
def test_calibration_loads_with_its_provenance(record) -> None:
    assert record["format"] == latency.FORMAT and record["version"] == latency.VERSION
    assert record["profile"] == "host" and record["features"] == list(latency.FEATURES)
    assert record["host"]["cpu"] and len(record["edgevit_commit"]) >= 40 and record["bench"]
    assert {"float32/1", "int8/1"} <= set(record["models"])
    for key, m in record["models"].items():
        assert set(m["coefficients"]) == set(latency.FEATURES)
        assert all(v >= 0 and math.isfinite(v) for v in m["coefficients"].values()), key
        assert any(m["coefficients"][f] > 0 for f in ("gemm_macs", "attn_macs")), key
        assert m["fit"]["count"] >= 8 and m["validation"]["count"] >= 3, key
    names = {s["name"] for s in record["samples"] if s["role"] == "validation"}
    assert {"fmnist-tiny", "fmnist-small"} <= names
    assert all(s["role"] == "train" for s in record["samples"] if s["name"].startswith("tokens-"))


def test_recorded_errors_are_reproduced_from_the_samples(record) -> None:
    """Each sample's prediction is the coefficients x its features; fit / held-out statistics are theirs."""
    for key, m in record["models"].items():
        mine = [s for s in record["samples"] if latency.model_key(s["dtype"], s["threads"]) == key]
        for s in mine:
            got = calibrate.predicted_ms(m["coefficients"], s["features"])
            assert got == pytest.approx(s["predicted_ms"], rel=1e-9)
            assert s["rel_error"] == pytest.approx(got / s["measured_ms"] - 1.0, rel=1e-9, abs=1e-12)
        for role, stats in (("train", m["fit"]), ("validation", m["validation"])):
            errs = [abs(s["rel_error"]) for s in mine if s["role"] == role]
            assert stats["count"] == len(errs)
            assert stats["mean_abs_rel_error"] == pytest.approx(np.mean(errs))
            assert stats["max_abs_rel_error"] == pytest.approx(max(errs))


def test_docs_state_the_recorded_error(record) -> None:
    """docs/cpu-backend.md's error table is the one calibrate.py writes from host.json (not typed by hand)."""
    text = (ROOT / "docs" / "cpu-backend.md").read_text()
    assert calibrate.docs_table(record) in text
    for m in record["models"].values():
        assert f"{100 * m['validation']['max_abs_rel_error']:.1f}%" in text


def test_docs_table_update_replaces_only_the_marked_block(record, tmp_path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(f"# T\n\nbefore\n{calibrate.MARK_START}\nold\n{calibrate.MARK_END}\nafter\n")
    assert calibrate.update_docs(record, doc)
    text = doc.read_text()
    assert text.startswith("# T\n\nbefore\n") and text.endswith("\nafter\n") and "old" not in text
    assert calibrate.docs_table(record) in text
    assert not calibrate.update_docs(record, tmp_path / "missing.md")


# ---- the estimate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_estimate_reports_latency_for_cpu_profiles(profile) -> None:
    costs = CpuTarget().estimate(int8_program(spec()), load_profile(profile))
    assert costs.latency_ms is not None and 0 < costs.latency_ms < 1e3
    basis, note = costs.figures["latency_basis"], costs.figures["latency_note"]
    if profile in EXTRAPOLATED:
        assert basis == latency.EXTRAPOLATED and "uncalibrated extrapolation" in note
    else:
        assert basis == latency.CALIBRATED and "held-out error" in note
    assert costs.pools[0].name == "ram"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("lower", [int8_program, float_program], ids=["int8", "float32"])
def test_estimate_grows_with_the_work(profile, lower) -> None:
    p = load_profile(profile)
    specs = [spec(32, 1), spec(64, 2), spec(96, 3), spec(128, 4), spec(128, 4, heads=4)]
    programs = [lower(s) for s in specs]
    macs = [prog.macs() for prog in programs]
    assert macs == sorted(macs) and len(set(macs)) == len(macs)
    ms = [CpuTarget().estimate(prog, p).latency_ms for prog in programs]
    assert all(b > a for a, b in zip(ms, ms[1:])), (profile, ms)


def test_extrapolation_follows_clock_and_simd() -> None:
    """rpi4 (1.5 GHz, NEON, no dot product) is slower than the host and than cortex-a76 (2.8 GHz,
    sdot), by at least its clock ratio; int8 gains more than float32 on the a76 (dot product)."""
    est = {(n, d): CpuTarget().estimate(lower(spec(96, 3)), load_profile(n)).latency_ms
           for n in PROFILES for d, lower in (("int8", int8_program), ("float32", float_program))}
    for d in ("int8", "float32"):
        assert est[("rpi4", d)] > est[("cortex-a76", d)] and est[("rpi4", d)] > est[("host", d)]
    assert est[("rpi4", "int8")] / est[("cortex-a76", "int8")] >= 2.8 / 1.5 - 1e-9
    assert est[("rpi4", "int8")] / est[("cortex-a76", "int8")] > est[("rpi4", "float32")] / est[("cortex-a76", "float32")]


def test_feature_scales_are_the_documented_ratios() -> None:
    host = latency.Machine("x86_64", 2.6e9, 16, True)
    pi = latency.machine_of(load_profile("rpi4"))
    assert (pi.clock_hz, pi.f32_lanes, pi.int8_dot, pi.int8_lanes) == (1.5e9, 4, False, 8)
    s = latency.feature_scales(host, pi, "int8")
    clock = 2.6 / 1.5
    assert s["calls"] == pytest.approx(clock) and s["elements"] == pytest.approx(clock * 4)
    assert s["gemm_macs"] == pytest.approx(clock * 64 / 8)
    assert latency.feature_scales(host, host, "float32") == dict.fromkeys(latency.FEATURES, 1.0)


def test_no_calibration_file_means_no_latency(tmp_path) -> None:
    got = latency.predict(int8_program(spec()), load_profile("rpi4"), path=tmp_path / "none.json")
    assert got.ms is None and "calibrate" in got.note


def test_features_count_chunked_calls() -> None:
    prog = int8_program(spec(64, 1))
    whole = latency.program_features(prog)
    assert whole["runs"] == 1 and whole["calls"] == sum(k.op != "reshape" for k in prog.kernels)
    assert whole["gemm_macs"] + whole["attn_macs"] == pytest.approx(prog.macs())
    ln = next(i for i, k in enumerate(prog.kernels) if k.op == "layernorm")
    rows = prog.tensors[prog.kernels[ln].inputs[0]].shape[0]
    steps = [Step((i,)) for i in range(len(prog.kernels)) if i != ln] + [Step((ln,), chunk_rows=16, rows=rows)]
    chunked = latency.program_features(prog, steps)
    assert chunked["calls"] == whole["calls"] + math.ceil(rows / 16) - 1
    assert chunked["elements"] == pytest.approx(whole["elements"])


def test_nnls_fit_recovers_non_negative_coefficients() -> None:
    rng = np.random.default_rng(0)
    truth = dict(zip(latency.FEATURES, [5e4, 300.0, 0.2, 0.5, 2.0, 8.0, 0.7, 0.0]))
    feats = [{f: float(rng.uniform(1, 10) * 10 ** (1 if f in ("runs", "calls") else 5)) for f in latency.FEATURES}
             for _ in range(40)]
    ns = [sum(truth[f] * x[f] for f in latency.FEATURES) for x in feats]
    got = calibrate.fit_coefficients(feats, ns)
    assert all(v >= 0 for v in got.values())
    for x, y in zip(feats, ns):
        assert sum(got[f] * x[f] for f in latency.FEATURES) == pytest.approx(y, rel=1e-6)
    x = nnls(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([2.0, -3.0]))
    assert x.tolist() == [2.0, 0.0]


# ---- NAS with a cpu profile --------------------------------------------------------------------------
def test_search_on_rpi4_applies_the_latency_bound(tmp_path, fmnist_npz, tiny_space) -> None:
    from edgevit.nas.space import SearchSpace

    space = SearchSpace.load(tiny_space, (1, 28, 28), 10)
    est = Estimator("rpi4")
    lats = sorted(est(space.sample(__import__("random").Random(i))).costs.latency_ms for i in range(24))
    bound = lats[len(lats) // 2]  # about half the space is too slow
    assert est(space.largest()).costs.latency_ms > bound
    out = tmp_path / "s"
    opts = SearchOptions(profile="rpi4", out=out, data=str(fmnist_npz), space=tiny_space, time_budget_s=5,
                         population=6, val_images=20, latency_ms=bound)
    summary = run_search(opts, trainer=fake_trainer, evaluator_factory=fake_factory([]))
    assert summary["best"]["latency_ms"] <= bound and summary["best"]["latency_basis"] == "extrapolated"
    cands = json.loads((out / "candidates.json").read_text())
    assert cands["budgets"]["latency_ms"] == bound
    feasible = [c for c in cands["candidates"] if c["feasible"]]
    assert feasible and all(c["costs"]["latency_ms"] <= bound for c in feasible)
    with pytest.raises(InfeasibleError, match="--latency-ms 1e-06 is below the fastest estimate"):
        run_search(SearchOptions(profile="rpi4", out=tmp_path / "o2", data=str(fmnist_npz), space=tiny_space,
                                 time_budget_s=5, latency_ms=1e-6))


@pytest.mark.slow
def test_edgevit_search_rpi4_latency_cli(tmp_path, fmnist_npz, tiny_space) -> None:
    from tests.nas.test_search_cli import run_cli

    out = tmp_path / "search"
    r = run_cli("--profile", "rpi4", "--data", fmnist_npz, "--space", tiny_space, "--time-budget", "40s",
                "--latency-ms", "0.5", "--out", out, "--population", "6", "--val-images", "100", "--workers", "1",
                "--json")
    assert r.returncode == 0, r.stderr
    best = json.loads(r.stdout)["best"]
    assert best["latency_ms"] <= 0.5 and best["fits"]
    front = json.loads((out / "front.json").read_text())
    assert front["budgets"]["latency_ms"] == 0.5 and front["profile"] == "rpi4"


@pytest.mark.slow
def test_measuring_one_program_on_this_host(tmp_path) -> None:
    """The calibration's measurement path: build the host artifact, time it, and compare with the model."""
    from edgevit.targets.cpu.calibration.measure import build_bench, time_bench

    prog = int8_program(spec(32, 1))
    bench = build_bench(prog, load_profile("host"), tmp_path / "a")
    ms = time_bench(bench, 1, rounds=1, seconds_per_round=0.1)
    assert 0 < ms < 50
    predicted = CpuTarget().estimate(prog, load_profile("host")).latency_ms
    assert predicted / ms < 10 and ms / predicted < 10  # the same order of magnitude on a busy machine
