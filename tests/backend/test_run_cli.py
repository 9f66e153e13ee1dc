"""`edgevit run` through the real command line: JSON result and exit codes (0 / 1 / 2)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.backend.synth_artifact import build_artifact, write_manifest


def edgevit(*args):
    return subprocess.run([sys.executable, "-m", "edgevit", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _retarget(root, **target):
    """Rewrite the artifact's manifest `target` section (keeping the hashes right)."""
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["target"].update(target)
    write_manifest(root, {k: v for k, v in manifest.items() if k != "files"})


def test_all_match_exits_0_and_prints_json(int8_artifact):
    r = edgevit("run", int8_artifact, "--runner", "host", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["matches"] == result["count"] == 5 and result["runner"] == "host"


def test_human_output_says_what_matched(int8_artifact):
    r = edgevit("run", int8_artifact, "--runner", "host", "--count", "2")
    assert r.returncode == 0, r.stderr
    assert "2/2 bit-exact" in r.stdout and "top-1" in r.stdout


def test_wrong_expected_exits_1(tmp_path):
    art = build_artifact(tmp_path / "a", wrong_expected=(2,))
    r = edgevit("run", art, "--runner", "host")
    assert r.returncode == 1
    assert "4/5" in r.stdout and "MISMATCH" in r.stdout and "[2]" in r.stdout


def test_user_errors_exit_2(int8_artifact):
    r = edgevit("run", int8_artifact, "--runner", "host", "--count", "9")
    assert r.returncode == 2 and "bundles only 5" in r.stderr and "--vectors" in r.stderr
    (int8_artifact / "src" / "weights.c").write_text("// edited\n")
    r = edgevit("run", int8_artifact, "--runner", "host")
    assert r.returncode == 2 and "src/weights.c" in r.stderr and "sha256" in r.stderr


def test_no_runner_option_uses_the_artifacts_default_runner(int8_artifact):
    _retarget(int8_artifact, default_runner="host")
    r = edgevit("run", int8_artifact, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runner"] == "host"


def test_runner_the_artifacts_target_lacks_exits_2_listing_those_that_can(int8_artifact):
    r = edgevit("run", int8_artifact, "--runner", "board")
    assert r.returncode == 2 and "--runner 'board' cannot run" in r.stderr
    assert "a mcu artifact" in r.stderr and "runners that can: host, qemu, serial" in r.stderr
    _retarget(int8_artifact, runners=["host"], default_runner="host")
    r = edgevit("run", int8_artifact, "--runner", "qemu")
    assert r.returncode == 2 and "--runner 'qemu' cannot run" in r.stderr and "runners that can: host" in r.stderr


def test_manifest_without_target_exits_2_asking_to_recompile(int8_artifact):
    manifest = json.loads((int8_artifact / "manifest.json").read_text())
    write_manifest(int8_artifact, {k: v for k, v in manifest.items() if k not in ("files", "target")})
    r = edgevit("run", int8_artifact)
    assert r.returncode == 2 and "no `target` section" in r.stderr and "edgevit compile" in r.stderr
