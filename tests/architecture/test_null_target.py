"""Issue #13's proof: a backend defined only under tests/ (null_target.py) is registered and taken
through `edgevit compile` and `edgevit run` without any file under edgevit/ naming it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevit.backend.target import get_target, register_target, target_names, unregister_target
from tests.cli_helpers import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
from null_target import NullTarget, load_program  # noqa: E402  (tests/architecture has no __init__.py)

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "models" / "fmnist-tiny"
PROFILE = """\
name: null-box
description: a cpu-kind device compiled by the test-only null backend
kind: cpu
target: "null"   # quoted: a bare null is YAML for "none"
core: x86-64
clock_hz: 1GHz
memory: {cores: 1, l1d_bytes: 32KiB, l2_bytes: 1MiB, ram_bytes: 64MiB, simd: []}
emulator: {kind: native}
toolchain: {cc: gcc, cflags: [], ldflags: []}
"""


@pytest.fixture
def null_target():
    """The null backend registered for the duration of a test."""
    register_target("null", NullTarget)
    yield
    unregister_target("null")


@pytest.fixture
def profile_file(tmp_path) -> Path:
    path = tmp_path / "null-box.yaml"
    path.write_text(PROFILE)
    return path


class Result:
    """What a CLI invocation gave: exit code and everything printed (stdout + stderr)."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.output = exit_code, stdout, stdout + stderr


@pytest.fixture
def invoke(monkeypatch, capsys):
    """invoke(*args) runs the console entry point in-process (where the null target is registered)."""
    def run(*args: str) -> Result:
        r = run_cli(monkeypatch, capsys, *args)
        return Result(r.code, r.out, r.err)
    return run


def test_compile_and_run_through_the_null_target(null_target, profile_file, tmp_path, invoke) -> None:
    out = tmp_path / "art"
    r = invoke("compile", str(ZOO), "--profile", str(profile_file), "--passes", "quant(w=8,a=8)",
               "--vectors", "6", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["target"] == "null" and summary["runner"] == "replay" and summary["lowering"] == "int8"
    assert [p["name"] for p in summary["pools"]] == ["ram"] and summary["fits"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == {"kind": "null", "runners": ["replay"], "default_runner": "replay"}
    assert set(manifest["files"]) == {p.relative_to(out).as_posix() for p in out.rglob("*")
                                      if p.is_file() and p.name != "manifest.json"}
    program = load_program(out)
    assert program.fingerprint() == summary["fingerprint"]

    r = invoke("run", str(out), "--json")  # no --runner: the artifact's default runner
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["runner"] == "replay" and result["count"] == result["matches"] == 6
    assert result["match_rule"] == "bit-exact"


def test_the_null_artifact_is_checked_against_the_reference(null_target, profile_file, tmp_path, invoke) -> None:
    out = tmp_path / "art"
    assert invoke("compile", str(ZOO), "--profile", str(profile_file), "--passes", "quant(w=8,a=8)",
                  "--vectors", "3", "--out", str(out), "--json").exit_code == 0
    expected = out / "vectors" / "expected.npy"
    wrong = np.load(expected)
    wrong[1] += 1
    np.save(expected, wrong)  # the digest check refuses the edit before anything runs
    r = invoke("run", str(out), "--json")
    assert r.exit_code == 2 and "vectors/expected.npy" in r.output


def test_a_runner_of_another_target_is_refused(null_target, profile_file, tmp_path, invoke) -> None:
    out = tmp_path / "art"
    assert invoke("compile", str(ZOO), "--profile", str(profile_file), "--out", str(out), "--vectors", "2",
                  "--json").exit_code == 0
    r = invoke("run", str(out), "--runner", "qemu")
    assert r.exit_code == 2
    assert re.search(r"--runner 'qemu' cannot run .*null artifact.*runners that can: replay", " ".join(r.output.split()))


def test_over_budget_and_unknown_targets(null_target, profile_file, tmp_path, invoke) -> None:
    small = tmp_path / "small.yaml"
    # holds the 556,072 B of float weights (compile's early check passes) but not the arena as well
    small.write_text(PROFILE.replace("ram_bytes: 64MiB", "ram_bytes: 560KiB"))
    r = invoke("compile", str(ZOO), "--profile", str(small), "--out", str(tmp_path / "x"))
    assert r.exit_code == 3 and "ram: arena" in " ".join(r.output.split()) and not (tmp_path / "x").exists()
    assert "null" in target_names() and get_target("null").kind == "null"
    unregister_target("null")
    r = invoke("compile", str(ZOO), "--profile", str(profile_file), "--out", str(tmp_path / "y"))
    assert r.exit_code == 2 and "no backend can compile for it" in " ".join(r.output.split())
