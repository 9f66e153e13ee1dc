"""The FPGA target on a tiny int8 ViT: supports, estimate (pools), the artifact's files and digests, the
fsim runner bit-exact against the reference, and a determinism check (same Program, same bytes)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.backend.artifact import Artifact, load_artifact
from edgevit.backend.errors import ArtifactError
from edgevit.backend.run import run_artifact
from edgevit.backend.target import get_target
from edgevit.backend.vectors import random_vectors
from edgevit.profiles.profile import load_profile
from edgevit.targets.fpga import target as fpga_target
from edgevit.targets.fpga.artifact import DRIVER_FILES, INSTRUCTIONS, MEMORY_MAP, OVERLAY, PROGRAM_FILES, WEIGHTS
from edgevit.targets.fpga.config import overlay_config
from edgevit.targets.fpga.runners.fsim import load_compiled
from edgevit.targets.fpga.target import BRAM18_SHAPES, FLOAT_REASON, memory_blocks, scratchpad_blocks
from tests.targets.fpga.tgt_helpers import tiny_programs, write_artifact


@pytest.fixture(scope="module")
def programs():
    """(float, int8) Programs of the tiny spec."""
    return tiny_programs()


@pytest.fixture(scope="module")
def artifact(programs, tmp_path_factory):
    """The tiny int8 Program's artifact for pynq-z2 (3 random vectors)."""
    return write_artifact(programs[1], "pynq-z2", tmp_path_factory.mktemp("tgt") / "art")


def test_float_programs_are_refused_and_int8_ones_accepted(programs):
    target, prof = get_target("fpga"), load_profile("pynq-z2")
    reasons = target.supports(programs[0], prof)
    assert len(reasons) == 1 and FLOAT_REASON in reasons[0] and "quant(w=8,a=8)" in reasons[0]
    assert target.supports(programs[1], prof) == []
    assert target.default_runner_for(prof) == "fsim" and "fsim" in target.runners()


@pytest.mark.parametrize("profile", ["pynq-z2", "zcu104"])
def test_estimate_gives_act_dsp_and_bram_pools(programs, profile):
    from edgevit.targets.fpga.compiler.compile import compile_program

    prof = load_profile(profile)
    cfg = overlay_config(prof)
    costs = get_target("fpga").estimate(programs[1], prof)
    uram = prof.memory.uram > 0
    assert [p.name for p in costs.pools] == ["act", "dsp", "bram"] + ["uram"] * uram and costs.memory.name == "act"
    act, dsp, bram = costs.pools[:3]
    assert act.used == compile_program(programs[1], cfg).stats["act_peak_bytes"] == costs.activation_bytes
    assert act.budget == cfg.act_bytes and act.fits
    assert (dsp.used, dsp.budget) == (cfg.bm * cfg.bk, prof.memory.dsp)
    assert (bram.used, bram.budget) == (sum(scratchpad_blocks(cfg, uram).values()), prof.memory.bram18) and bram.fits
    assert costs.fits
    assert costs.macs == programs[1].macs() and costs.latency_ms is None
    assert costs.figures["overlay_bm"] == cfg.bm and costs.figures["act_peak_bytes"] == act.used


def test_an_act_peak_beyond_act_is_a_budget_failure_not_a_support_reason(programs, monkeypatch):
    real = fpga_target.overlay_config
    peak = get_target("fpga").estimate(programs[1], "pynq-z2").activation_bytes
    monkeypatch.setattr(fpga_target, "overlay_config", lambda p: dataclasses.replace(real(p), act_bytes=peak - 16))
    target, prof = get_target("fpga"), load_profile("pynq-z2")
    assert target.supports(programs[1], prof) == []
    costs = target.estimate(programs[1], prof)
    assert [p.name for p in costs.over_budget] == ["act"]
    hint = target.over_budget_hint(costs, programs[1])
    assert "spilling to DDR is not implemented" in hint and "tome" in hint


def test_estimate_works_on_float_programs_for_the_passes_memory_figures(programs):
    assert get_target("fpga").estimate(programs[0], "pynq-z2").activation_bytes > 0


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 4096), depth=st.integers(1, 1 << 16))
def test_memory_blocks_hold_the_memory_and_use_one_aspect_ratio(width, depth):
    blocks = memory_blocks(width, depth)
    assert blocks * 16384 >= width * depth  # 16 Kib of data per BRAM18
    assert any(blocks == -(-width // w) * -(-depth // d) for w, d in BRAM18_SHAPES)
    assert memory_blocks(32, 512) == 1 and memory_blocks(33, 512) == 2 and memory_blocks(8, 2048) == 1


def test_the_artifact_lists_and_digests_every_new_file(artifact):
    art = load_artifact(artifact)
    for rel in PROGRAM_FILES + DRIVER_FILES + ("report.md", "vectors/inputs.npy"):
        assert rel in art.files, rel
    info = art.manifest["target"]
    assert (info["kind"], info["default_runner"]) == ("fpga", "fsim") and "fsim" in info["runners"]
    mm = json.loads((artifact / MEMORY_MAP).read_text())
    regions = mm["regions"]
    assert (artifact / INSTRUCTIONS).stat().st_size == regions["instructions"]["bytes"]
    assert (artifact / WEIGHTS).stat().st_size == regions["weights"]["bytes"]
    assert json.loads((artifact / OVERLAY).read_text())["overlay"] == mm["overlay"] == art.manifest["fpga"]["overlay"]
    assert art.manifest["fpga"]["instructions"] * 32 == regions["instructions"]["bytes"]
    assert [p["name"] for p in art.manifest["pools"]] == ["act", "dsp", "bram"]


@pytest.mark.parametrize("rel", [INSTRUCTIONS, WEIGHTS, MEMORY_MAP, OVERLAY, "driver/edgevit_overlay.c"])
def test_an_edited_program_or_driver_file_is_refused(artifact, tmp_path, rel):
    copy = shutil.copytree(artifact, tmp_path / "art")
    data = bytearray((copy / rel).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / rel).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rel.replace(".", r"\.")):
        load_artifact(copy)


def test_fsim_runs_every_vector_bit_exact_under_the_three_orders(artifact):
    r = run_artifact(artifact, "fsim", progress=False)
    assert (r["count"], r["matches"], r["match_rule"]) == (3, 3, "bit-exact")
    assert r["fsim_orders"] == ["in-order", "load-first", "store-first"]
    assert r["ticks"] == [0, 0, 0] and r["estimated_latency_ms"] is None and "no clock" in r["latency_note"]
    assert r["fsim_instructions_per_inference"] == load_artifact(artifact).manifest["fpga"]["instructions"]
    load_artifact(artifact)  # still valid after the run


def test_the_runner_refuses_program_files_of_different_overlays(artifact, tmp_path):
    copy = shutil.copytree(artifact, tmp_path / "art")
    overlay = json.loads((copy / OVERLAY).read_text())
    overlay["overlay"]["bm"] *= 2
    (copy / OVERLAY).write_text(json.dumps(overlay))
    files = load_artifact(artifact).files
    with pytest.raises(ArtifactError, match="different overlays"):
        load_compiled(Artifact(copy, {}, files))


def test_same_program_same_bytes(programs):
    target, prof = get_target("fpga"), load_profile("zcu104")
    vectors = random_vectors(programs[1], 2)
    a, b = (target.build(programs[1], prof, target.estimate(programs[1], prof), vectors) for _ in range(2))
    assert a == b
