"""fmnist-tiny through `edgevit compile --profile pynq-z2 --passes quant(w=8,a=8)` and `edgevit run --runner
fsim` (the CLI entry, in-process): bit-exact with the reference; a float Program is refused before anything
is written (exit 2); an activation peak beyond ACT is a budget failure naming the pool (exit 3)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgevit.targets.fpga import target as fpga_target
from tests.cli_helpers import run_cli

MODEL = Path(__file__).resolve().parents[3] / "models" / "fmnist-tiny"
PASSES = "quant(w=8,a=8)"


def _compile(monkeypatch, capsys, out: Path, vectors: int) -> dict:
    r = run_cli(monkeypatch, capsys, "compile", MODEL, "--profile", "pynq-z2", "--passes", PASSES, "--vectors",
                vectors, "--out", out, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def _run(monkeypatch, capsys, art: Path, count: int) -> dict:
    r = run_cli(monkeypatch, capsys, "run", art, "--runner", "fsim", "--count", count, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_fmnist_tiny_compiles_and_runs_bit_exact_on_fsim(tmp_path, monkeypatch, capsys):
    art = tmp_path / "f"
    summary = _compile(monkeypatch, capsys, art, 3)
    assert (summary["target"], summary["runner"], summary["vectors"]) == ("fpga", "fsim", 3)
    assert [p["name"] for p in summary["pools"]] == ["act", "dsp", "bram"] and summary["fits"]
    result = _run(monkeypatch, capsys, art, 3)
    assert (result["count"], result["matches"], result["match_rule"]) == (3, 3, "bit-exact")
    assert result["fsim_orders"] == ["in-order", "load-first", "store-first"]


@pytest.mark.slow
def test_fmnist_tiny_runs_20_of_20_bit_exact_on_fsim(tmp_path, monkeypatch, capsys):
    _compile(monkeypatch, capsys, tmp_path / "f", 20)
    result = _run(monkeypatch, capsys, tmp_path / "f", 20)
    assert (result["count"], result["matches"], result["max_abs_error"]) == (20, 20, 0)


def test_a_float_program_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    out = tmp_path / "float"
    r = run_cli(monkeypatch, capsys, "compile", MODEL, "--profile", "pynq-z2", "--out", out, flat_err=True)
    assert r.code == 2, r.err
    assert "int8 only" in r.err and "quant(w=8,a=8)" in r.err and "Nothing was written" in r.err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_activation_peak_beyond_act_fails_the_budget_naming_the_pool(tmp_path, monkeypatch, capsys):
    # A copy of pynq-z2 whose overlay has a 16 KiB ACT (fmnist-tiny's peak is ~19 KB). Fewer block RAMs alone
    # cannot make ACT that small without starving PARAM first, so the copy's ACT size is set on its config.
    profile = tmp_path / "pynq-z2-small-act.yaml"
    text = (Path(fpga_target.__file__).parents[2] / "profiles" / "pynq-z2.yaml").read_text()
    profile.write_text(text.replace("name: pynq-z2", "name: pynq-z2-small-act"))
    real = fpga_target.overlay_config
    monkeypatch.setattr(fpga_target, "overlay_config", lambda p: dataclasses.replace(
        real(p), act_bytes=16 * 1024) if p.name == "pynq-z2-small-act" else real(p))
    out = tmp_path / "small"
    r = run_cli(monkeypatch, capsys, "compile", MODEL, "--profile", profile, "--passes", PASSES, "--calib-size", 8,
                "--out", out, flat_err=True)
    assert r.code == 3, r.err
    assert "act: activations at their peak" in r.err and "> 16,384 B" in r.err and "spilling to DDR" in r.err
    assert not out.exists()
