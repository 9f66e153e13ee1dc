"""Pipeline strings: parsing, typed options, clear errors; passes never edit their input; peak memory
comes from the caller's `memory_of`."""

import numpy as np
import pytest
import torch

from edgevit.errors import UserInputError
from edgevit.model.vit import build_model
from edgevit.passes import registry
from edgevit.passes.options import Option
from edgevit.passes.pipeline import parse_pipeline, run_pipeline
from edgevit.passes.registry import PassReport


def test_parse_quant_with_typed_options_and_defaults():
    [(name, opts)] = parse_pipeline(" quant( w = 4 , observer=percentile, percentile=99.9, calib=64 ) ")
    assert name == "quant"
    assert opts["w"] == 4 and opts["a"] == 8 and opts["observer"] == "percentile"
    assert opts["percentile"] == 99.9 and opts["calib"] == 64 and opts["residual"] == "int8"
    assert parse_pipeline("quant(w=mixed,flash_kb=40)")[0][1]["w"] == "mixed"
    assert parse_pipeline("quant")[0][1]["w"] == 8
    assert isinstance(parse_pipeline("quant(flash_kb=40)")[0][1]["flash_kb"], float)


@pytest.mark.parametrize("text, needles", [
    ("quant(w=3)", ["quant: w must be one of 4, 8, mixed (got 3)"]),
    ("quant(a=4)", ["quant: a must be one of 8 (got 4)"]),
    ("quant(observer=kl)", ["quant: observer must be one of minmax, percentile, mse (got kl)"]),
    ("quant(calib=0)", ["quant: calib must be an integer >= 1 (got 0)"]),
    ("quant(calib=1.5)", ["calib", "got 1.5"]),
    ("quant(bits=8)", ["quant: unknown option 'bits'", "valid options: w, a, observer"]),
    ("merge(r=4)", ["unknown pass 'merge'", "known passes: lowrank, prune, quant, tome"]),
    ("quant(w=8", ["missing ')'"]),
    ("quant(w=8 a=8)", ["expected ',' or ')'", "position 10"]),
    ("quant(w=)", ["expected name=value", "position 6"]),
    ("quant(w=8)x", ["expected ',' between passes", "position 10"]),
    ("quant(w=8),", ["a pass name must follow"]),
    ("quant(w=8;a=8)", ["unexpected character ';' at position 9"]),
    ("", ["pipeline is empty"]),
    ("quant(w=8,w=4)", ["option 'w' given twice"]),
])
def test_parse_errors_name_the_pass_option_and_position(text, needles):
    with pytest.raises(UserInputError) as e:
        parse_pipeline(text)
    for n in needles:
        assert n in str(e.value)


@pytest.fixture
def scale_pass(monkeypatch):
    """A throwaway pass `scale(k=...)` that edits the model it is given in place."""

    def scale(model, calib, eval_data=None, progress=None, k=2.0):
        with torch.no_grad():
            model.head.weight.mul_(k)
        return model, PassReport(name="scale", options={"k": k})

    monkeypatch.setitem(registry.PASSES, "scale", registry.PassDef("scale", scale, {"k": Option((float,), 2.0)}))
    return scale


def test_quant_must_be_last(scale_pass):
    assert [n for n, _ in parse_pipeline("scale(k=3),quant(w=8)")] == ["scale", "quant"]
    with pytest.raises(UserInputError, match="quant must be the last pass"):
        parse_pipeline("quant(w=8),scale(k=3)")


def test_run_pipeline_never_mutates_its_input(scale_pass, tiny_spec):
    model = build_model(tiny_spec, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out, reports = run_pipeline(model, "scale(k=3),scale(k=0.5)", calib=None)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.allclose(out.head.weight, before["head.weight"] * 1.5)
    assert [r.name for r in reports] == ["scale", "scale"] and all(r.seconds >= 0 for r in reports)
    assert np.isfinite(reports[0].to_dict()["seconds"])


# ---- lists, YAML pipelines, order, peak memory ------------------------------------------------------
def test_list_values_and_yaml_pipelines(tmp_path):
    text = "tome(r=[4, 2,0]),prune(heads=0.25,mlp=0.3),lowrank(ratio=0.5),quant(w=8,a=8)"
    parsed = parse_pipeline(text)
    assert [n for n, _ in parsed] == ["tome", "prune", "lowrank", "quant"]
    assert parsed[0][1]["r"] == [4, 2, 0] and parsed[1][1]["heads"] == 0.25 and parsed[1][1]["importance"] == "taylor"
    yaml_text = ("passes:\n  - tome: {r: [4, 2, 0]}\n  - prune:\n      heads: 0.25\n      mlp: 0.3\n"
                 "  - lowrank(ratio=0.5)\n  - quant: {w: 8, a: 8}\n")
    assert parse_pipeline(yaml_text) == parsed
    path = tmp_path / "p.yaml"
    path.write_text("- tome: {r: [4, 2, 0]}\n- prune: {heads: 0.25, mlp: 0.3}\n- lowrank: {ratio: 0.5}\n- quant\n")
    assert parse_pipeline(str(path)) == parsed
    assert parse_pipeline("- prune: {heads: 0}")[0][1]["heads"] == 0.0  # ints become floats for float options


@pytest.mark.parametrize("text, needle", [
    ("- quant\n- tome: {r: 2}", "quant must be the last pass"),
    ("- tome: {r: -2}", "tome: r must be an integer >= 0"),
    ("- tome: {rr: 2}", "tome: unknown option 'rr'; valid options: r, schedule"),
    ("- tome: 4", "options of tome must be a mapping"),
    ("- zap", "unknown pass 'zap'"),
    ("- {tome: {r: 2}, prune: null}", "must be a pass name or a one-key mapping"),
    ("passes: 3", "expected a non-empty list of passes"),
    ("- tome: {r: [1, 2]", "not valid YAML"),
    ("missing.yaml", "pipeline file missing.yaml not found"),
    ("- prune: {heads: true}", "prune: heads must be a number"),
])
def test_yaml_errors(text, needle):
    with pytest.raises(UserInputError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        parse_pipeline(text)


def test_lists_are_checked_for_order_too(tiny_spec):
    with pytest.raises(UserInputError, match="quant must be the last pass"):
        run_pipeline(build_model(tiny_spec, seed=0), [("quant", {}), ("tome", {"r": 1, "schedule": "constant"})],
                     calib=None)


def test_peak_memory_comes_from_the_injected_memory_of(tiny_spec):
    model = build_model(tiny_spec, seed=0)
    seen = []

    def memory_of(program):  # a stand-in target: every tensor of the Program at once
        seen.append(program.name)
        return sum(t.nbytes for t in program.tensors.values())

    _, reports = run_pipeline(model, "tome(r=2),tome(r=3)", calib=None, memory_of=memory_of)
    first, second = reports
    assert len(seen) == 3  # the input model, then once after each pass
    assert first.peak_bytes_before > first.peak_bytes_after > second.peak_bytes_after > 0
    assert second.peak_bytes_before == first.peak_bytes_after
    assert {"peak_bytes_before", "peak_bytes_after"} <= set(first.to_dict())
    _, [plain] = run_pipeline(model, "tome(r=2)", calib=None)
    assert plain.peak_bytes_before is None and plain.peak_bytes_after is None


def test_peak_memory_that_cannot_be_estimated_is_none_with_a_note(tiny_spec):
    def memory_of(program):
        raise UserInputError("the stand-in target cannot plan this program")

    _, [report] = run_pipeline(build_model(tiny_spec, seed=0), "tome(r=2)", calib=None, memory_of=memory_of)
    assert report.peak_bytes_before is None and report.peak_bytes_after is None
    assert any("peak memory not estimated: the stand-in target cannot plan" in n for n in report.notes)
