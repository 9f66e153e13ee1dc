"""Program.from_dict: a Program serialised with to_dict / to_json plus its constant values comes
back with the same fingerprint and the same reference outputs; bad inputs are ProgramErrors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevit.lower import lower_float, lower_int8
from edgevit.lower.program import Program, ProgramError
from edgevit.lower.reference import quantize_input, run_program
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.model.vit import build_model
from tests.lower.int8_helpers import minmax_qmodel, randomise
from tests.lower.test_program import tiny_program


@pytest.fixture(scope="module")
def programs() -> dict[str, Program]:
    blocks = (BlockSpec(heads=2, head_dim=4, mlp_hidden=16),) * 2
    spec = ViTSpec(image_size=8, in_channels=1, patch_size=2, embed_dim=8, num_classes=3, blocks=blocks, name="t")
    model = randomise(build_model(spec, seed=1), 1)
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    return {"tiny": tiny_program(), "float": lower_float(model), "int8": lower_int8(minmax_qmodel(model, x))}


def _through_json(p: Program) -> Program:
    return Program.from_dict(json.loads(p.to_json()), {n: np.array(v) for n, v in p.consts.items()})


@pytest.mark.parametrize("name", ["tiny", "float", "int8"])
def test_round_trip_keeps_the_fingerprint_and_the_outputs(programs, name) -> None:
    p = programs[name]
    q = _through_json(p)
    assert q.fingerprint() == p.fingerprint() and q.to_json() == p.to_json()
    assert all(not v.flags.writeable for v in q.consts.values())
    shape = p.tensors[p.inputs[0]].shape
    x = np.random.default_rng(2).standard_normal((3, *shape)).astype(np.float32)
    if p.tensors[p.inputs[0]].dtype != "float32":
        x = quantize_input(p, x)
    a, b = run_program(p, {p.inputs[0]: x}), run_program(q, {q.inputs[0]: x})
    assert all(np.array_equal(a[t], b[t]) for t in p.outputs)


def test_constant_values_must_be_the_recorded_ones(programs) -> None:
    p = programs["tiny"]
    d = json.loads(p.to_json())
    consts = {n: np.array(v) for n, v in p.consts.items()}
    consts["fc.bias"] = consts["fc.bias"] + 1
    with pytest.raises(ProgramError, match="'fc.bias' has other values"):
        Program.from_dict(d, consts)
    consts["fc.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ProgramError, match=r"'fc.bias' is \[3\] float32 but the program records \[2\] float32"):
        Program.from_dict(d, consts)
    del consts["fc.bias"]
    with pytest.raises(ProgramError, match=r"constant values missing for \['fc.bias'\]"):
        Program.from_dict(d, consts)


def test_malformed_dicts_are_program_errors(programs) -> None:
    p = programs["tiny"]
    consts = dict(p.consts)
    with pytest.raises(ProgramError, match="format is 'x'"):
        Program.from_dict({**p.to_dict(), "format": "x"}, consts)
    with pytest.raises(ProgramError, match="version 99"):
        Program.from_dict({**p.to_dict(), "version": 99}, consts)
    broken = p.to_dict()
    del broken["kernels"]
    with pytest.raises(ProgramError, match="missing or malformed field"):
        Program.from_dict(broken, consts)
    wrong = json.loads(p.to_json())
    wrong["kernels"][1]["inputs"] = ["y"]  # used before it is defined
    with pytest.raises(ProgramError, match="used before it is defined"):
        Program.from_dict(wrong, consts)
