"""`edgevit passes list / show` (the Typer sub-app in edgevit/passes/cli.py) documents every registered pass."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edgevit.passes.cli import app
from edgevit.passes.registry import known_passes


def test_list_documents_every_pass_and_option():
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    passes = json.loads(result.output)
    assert [p["name"] for p in passes][-1] == "quant"
    assert {p["name"] for p in passes} == set(known_passes()) >= {"tome", "prune", "lowrank", "quant"}
    for p in passes:
        assert p["doc"]
        assert set(p["options"]) == set(known_passes()[p["name"]].options)
        assert all(o["doc"] and o["allowed"] for o in p["options"].values())
    tome = next(p for p in passes if p["name"] == "tome")
    assert tome["options"]["schedule"]["allowed"] == "one of constant, decreasing"
    table = CliRunner().invoke(app, ["list"])
    assert table.exit_code == 0 and "prune" in table.output and "finetune" in table.output


def test_show_one_pass_and_unknown_names():
    result = CliRunner().invoke(app, ["show", "lowrank"])
    assert result.exit_code == 0 and "energy" in result.output and "truncated-SVD" in result.output
    bad = CliRunner().invoke(app, ["show", "zap"])
    assert bad.exit_code != 0 and "unknown pass 'zap'" in str(bad.exception)
