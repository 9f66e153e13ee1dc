"""`edgevit import` and importing on the fly in compile / eval / export-onnx: dispatch by source, the
preprocessing flags and the loud warning when nothing gives them, the record in the checkpoint,
refusals (exit 2, nothing written), and that an imported model compiles to the same Program."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from edgevit.model.checkpoint import checkpoint_info, load_checkpoint
from edgevit.model.importers.source import ASSUMED, ImportOptions, import_source, load_model_source
from edgevit.model.onnx_export import export_onnx

ROOT = Path(__file__).resolve().parents[3]
TINY = ROOT / "models" / "fmnist-tiny"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_onnx(load_checkpoint(TINY), tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def timm_file(tmp_path_factory) -> Path:
    """fmnist-tiny's weights as a bare timm-layout .pth (edgevit's keys are timm's): no spec, no mean/std."""
    path = tmp_path_factory.mktemp("timm") / "tiny.pth"
    torch.save(load_checkpoint(TINY).state_dict(), path)
    return path


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_import_of_an_edgevit_export_is_the_identity(monkeypatch, capsys, tiny_onnx, tmp_path):
    r = run_cli(monkeypatch, capsys, "import", tiny_onnx, "--out", tmp_path / "ck", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["format"] == "onnx" and report["preprocess_source"] == "onnx metadata"
    original, imported = load_checkpoint(TINY), load_checkpoint(tmp_path / "ck")
    assert imported.spec.to_dict() == {**original.spec.to_dict(), "name": imported.spec.name}
    assert same_weights(original, imported) and imported.preprocess == original.preprocess
    record = checkpoint_info(tmp_path / "ck")["import"]
    assert record["source"] == str(tiny_onnx) and record["report"]["agreement"]["inputs"] == 100
    assert "warning" not in r.err


def test_a_state_dict_without_normalisation_is_imported_loudly_and_recorded(monkeypatch, capsys, timm_file, tmp_path):
    r = run_cli(monkeypatch, capsys, "import", timm_file, "--heads", 2, "--out", tmp_path / "ck", flat_err=True)
    assert r.code == 0, r.err
    assert "warning:" in r.err and "mean 0, std 1" in r.err and "--mean" in r.err
    assert checkpoint_info(tmp_path / "ck")["import"]["preprocess_source"] == ASSUMED
    assert same_weights(load_checkpoint(TINY), load_checkpoint(tmp_path / "ck"))
    # and every later use of that checkpoint says it again
    warned: list[str] = []
    load_model_source(tmp_path / "ck", warn=warned.append)
    assert len(warned) == 1 and "--mean" in warned[0] and str(timm_file) in warned[0]


def test_mean_and_std_flags_set_the_preprocessing(monkeypatch, capsys, timm_file, tmp_path):
    out = tmp_path / "ck.safetensors"
    r = run_cli(monkeypatch, capsys, "import", timm_file, "--heads", 2, "--mean", "0.25", "--std", "0.5",
                "--out", out)
    assert r.code == 0 and "warning" not in r.err, r.err
    model = load_checkpoint(out)
    assert model.preprocess.mean == (0.25,) and model.preprocess.std == (0.5,)
    assert checkpoint_info(out)["import"]["preprocess_source"] == "--mean/--std flags"


def test_flags_override_onnx_metadata_with_a_note(tiny_onnx):
    result = import_source(tiny_onnx, ImportOptions(mean=(0.5,), std=(0.25,)))
    assert result.model.preprocess.mean == (0.5,) and result.preprocess_source == "--mean/--std flags"
    assert any("override the normalisation from onnx metadata" in n for n in result.notes)


@pytest.mark.parametrize("args, message", [
    (["--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"], "--mean has 3 values but"),
    (["--mean", "0.5"], "--std is missing"),
    (["--mean", "a,b", "--std", "1"], "--mean 'a,b': expected comma-separated numbers"),
    (["--heads", "3"], "--heads: "),
    (["--image-size", "32"], "is fixed at 28 x 28"),
])
def test_bad_import_options_are_refused_before_writing(monkeypatch, capsys, tiny_onnx, tmp_path, args, message):
    r = run_cli(monkeypatch, capsys, "import", tiny_onnx, *args, "--out", tmp_path / "ck", flat_err=True)
    assert r.code == 2 and message in r.err, r.err
    assert list(tmp_path.iterdir()) == []


def test_unknown_sources_are_refused_naming_what_is_read(monkeypatch, capsys, tmp_path):
    (tmp_path / "model.txt").write_text("hello")
    r = run_cli(monkeypatch, capsys, "import", tmp_path / "model.txt", "--out", tmp_path / "ck", flat_err=True)
    assert r.code == 2 and "not a model edgevit can read" in r.err and ".onnx" in r.err
    r = run_cli(monkeypatch, capsys, "compile", tmp_path / "nothing.onnx", "--profile", "stm32f746-disco",
                "--out", tmp_path / "a", flat_err=True)
    assert r.code == 2 and "not found" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.txt"]


def test_out_exists_needs_force_and_force_replaces_whole(monkeypatch, capsys, tiny_onnx, tmp_path):
    out = tmp_path / "ck"
    assert run_cli(monkeypatch, capsys, "import", tiny_onnx, "--out", out).code == 0
    (out / "stale.txt").write_text("from before")
    r = run_cli(monkeypatch, capsys, "import", tiny_onnx, "--out", out, flat_err=True)
    assert r.code == 2 and "--force" in r.err
    assert run_cli(monkeypatch, capsys, "import", tiny_onnx, "--out", out, "--force").code == 0
    assert not (out / "stale.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_eval_imports_on_the_fly(monkeypatch, capsys, tiny_onnx):
    onnx_run = run_cli(monkeypatch, capsys, "eval", tiny_onnx, "--limit", 200, "--json")
    native = run_cli(monkeypatch, capsys, "eval", TINY, "--limit", 200, "--json")
    assert onnx_run.code == native.code == 0, onnx_run.err
    assert json.loads(onnx_run.out) == json.loads(native.out)


def test_an_imported_model_lowers_to_the_same_int8_program(tiny_onnx):
    """What `compile x.onnx --passes quant(w=8,a=8)` lowers is exactly what compiling the checkpoint lowers."""
    from edgevit.backend.compile import _calibrate_and_lower
    from edgevit.data.resize import load_for_spec

    programs = []
    for source in (TINY, tiny_onnx):
        model = load_model_source(source)
        calib = load_for_spec("fashion-mnist", model.spec, None, str(source)).train
        program, _ = _calibrate_and_lower(model, "quant(w=8,a=8)", calib, 64, lambda message: None)
        programs.append(program)
    a, b = programs
    assert [k.to_dict() for k in a.kernels] == [k.to_dict() for k in b.kernels]
    assert a.consts.keys() == b.consts.keys()
    assert all(np.array_equal(a.consts[k], b.consts[k]) and a.consts[k].dtype == b.consts[k].dtype for k in a.consts)


@pytest.mark.slow
def test_issue_acceptance_onnx_to_qemu_with_the_same_weights(monkeypatch, capsys, tiny_onnx, tmp_path):
    """export-onnx -> compile the .onnx for stm32f746-disco with quant -> 20/20 bit-exact on QEMU, and the
    artifact's weights are those of compiling the checkpoint directly."""
    common = ["--profile", "stm32f746-disco", "--passes", "quant(w=8,a=8)", "--json"]
    assert run_cli(monkeypatch, capsys, "compile", tiny_onnx, *common, "--out", tmp_path / "ta").code == 0
    assert run_cli(monkeypatch, capsys, "compile", TINY, *common, "--out", tmp_path / "tb").code == 0
    assert (tmp_path / "ta/src/weights.c").read_bytes() == (tmp_path / "tb/src/weights.c").read_bytes()
    for runner in ("qemu", "host"):  # the emulated board, and the same C on this machine
        r = run_cli(monkeypatch, capsys, "run", tmp_path / "ta", "--runner", runner, "--count", 20, "--json")
        result = json.loads(r.out)
        assert r.code == 0 and result["matches"] == result["count"] == 20, (runner, r.err)


def test_names_too_long_are_clear_errors(monkeypatch, capsys, tiny_onnx, tmp_path):
    # the CLI fuzzer's finding: ENAMETOOLONG from a stat of --out or SOURCE was a traceback
    long = "x" * 300
    r = run_cli(monkeypatch, capsys, "import", tiny_onnx, "--out", tmp_path / f"{long}.safetensors", flat_err=True)
    assert r.code == 2 and "--out" in r.err and "Traceback" not in r.err
    r = run_cli(monkeypatch, capsys, "import", tmp_path / f"{long}.onnx", "--out", tmp_path / "ck", flat_err=True)
    assert r.code == 2 and "cannot be read" in r.err
    assert list(tmp_path.iterdir()) == []
