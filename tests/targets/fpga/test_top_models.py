"""Whole models on the overlay's RTL (Verilator), bit-exact with the reference interpreter and the
functional simulator: a 1-block ViT compiled for the small test overlay (default run), and the zoo
models through the CLI with `--runner verilator` on the pynq-z2 overlay (slow: the first build of that
overlay's model takes minutes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.targets.fpga.top_helpers import TOP_CFG, assert_counters_add_up, assert_same_ddr, model_or_skip, run_both


@pytest.mark.parametrize("pipeline", ["quant(w=8,a=8,calib=16)", "tome(r=3),quant(w=8,residual=int16,calib=16)"])
def test_one_block_vit_is_bit_exact_with_sane_counters(pipeline) -> None:
    """A 1-block ViT (the second with token merging: MERGE, SOFTMAX with sizes, int16 residual)."""
    from edgevit.model.spec import ViTSpec
    from edgevit.model.vit import build_model
    from edgevit.targets.fpga.compiler import compile_program, ddr_image, read_output
    from edgevit.targets.fpga.runners.verilator import breakdown, check_stream
    from tests.lower.int8_helpers import randomise
    from tests.targets.fpga.comp_helpers import model_program, random_inputs, reference

    exe = model_or_skip()
    spec = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1, patch_size=2,
                           embed_dim=8, num_classes=3, name="t")
    program = model_program(randomise(build_model(spec, seed=0), 0), pipeline)
    assert ("tome" in pipeline) == any(k.op == "token_merge" for k in program.kernels)
    compiled = compile_program(program, TOP_CFG)
    figs = check_stream(compiled.stream)
    assert ("tome" in pipeline) == bool(figs["merge"])
    offset = int(compiled.memory_map["regions"]["instructions"]["offset"])
    for x in random_inputs(program, 2, seed=4):
        want, got = run_both(TOP_CFG, exe, compiled.stream, ddr_image(compiled, x), insn_offset=offset)
        assert_same_ddr(want, got.ddr)
        assert np.array_equal(read_output(compiled, got.ddr), reference(program, x))
        assert_counters_add_up(got.counters)
        b = breakdown(got.counters, figs["gemm_steps"], TOP_CFG.pes)
        assert 0 < b["pe_utilization"] <= got.counters["GEMM_BUSY"] / got.counters["CYCLES"] <= 1
        assert abs(sum(b["stall_breakdown"].values()) - 1) < 1e-3


def _run_cli_model(model: str, tmp_path, count: int, monkeypatch, capsys) -> dict:
    from tests.cli_helpers import run_cli
    from tests.targets.fpga.comp_helpers import ROOT

    model_or_skip()
    out = tmp_path / "art"
    r = run_cli(monkeypatch, capsys, "compile", ROOT / "models" / model, "--profile", "pynq-z2", "--passes",
                "quant(w=8,a=8)", "--out", out)
    assert r.code == 0, r.err
    r = run_cli(monkeypatch, capsys, "run", out, "--runner", "verilator", "--count", count, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


@pytest.mark.slow
@pytest.mark.parametrize("model,count", [("fmnist-tiny", 20), ("fmnist-small", 3)])
def test_zoo_model_on_verilator_via_the_cli(model, count, tmp_path, monkeypatch, capsys) -> None:
    result = _run_cli_model(model, tmp_path, count, monkeypatch, capsys)
    assert result["matches"] == count == result["count"], result
    assert result["cycles_per_inference"] > 0 and result["estimated_latency_ms"] > 0
    assert 0 < result["pe_utilization"] <= 1
    assert set(result["stall_breakdown"]) == {"gemm_busy", "vector_busy", "stall_dma", "stall_dependency", "other"}
