"""The host runner end to end on synthetic artifacts: matches, mismatches, counts, failures."""

from __future__ import annotations

import json

import pytest

from edgevit.errors import UserInputError
from edgevit.backend.errors import RunFailedError, RunTimeoutError
from edgevit.backend.protocol import ProtocolError
from edgevit.backend.run import run_artifact
from tests.backend.synth_artifact import build_artifact, write_manifest


def test_int8_bit_exact_with_sanitizers(int8_artifact):
    before = {p: p.read_bytes() for p in int8_artifact.rglob("*") if p.is_file()}
    r = run_artifact(int8_artifact, "host", sanitize=True, progress=False)
    assert r["runner"] == "host" and r["sanitize"] and "ASan" in r["source"]
    assert (r["count"], r["matches"], r["mismatches"]) == (5, 5, [])
    assert r["match_rule"] == "bit-exact" and r["dtype"] == "int8"
    assert r["top1"] == r["reference_top1"] == pytest.approx(3 / 5)
    assert r["ticks"] == [0] * 5 and r["instructions_per_inference"] is None and r["estimated_latency_ms"] is None
    after = {p: p.read_bytes() for p in int8_artifact.rglob("*") if p.is_file()}
    assert after == before  # nothing was built inside the artifact


def test_float_within_tolerance(float_artifact):
    r = run_artifact(float_artifact, "host", progress=False)
    assert r["matches"] == 5 and r["dtype"] == "float32" and r["max_abs_error"] <= 1e-4


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_wrong_expected_values_are_reported(tmp_path, dtype):
    art = build_artifact(tmp_path / "a", dtype=dtype, wrong_expected=(1, 3))
    r = run_artifact(art, "host", progress=False)
    assert r["matches"] == 3 and r["mismatches"] == [1, 3] and r["max_abs_error"] > 0


def test_count_subset_and_too_large(int8_artifact):
    r = run_artifact(int8_artifact, "host", count=2, progress=False)
    assert r["count"] == 2 and r["matches"] == 2 and r["bundled"] == 5 and len(r["ticks"]) == 2
    with pytest.raises(UserInputError) as e:
        run_artifact(int8_artifact, "host", count=6, progress=False)
    assert "bundles only 5" in str(e.value) and "--vectors 6" in str(e.value) and e.value.exit_code == 2


@pytest.mark.parametrize("variant, error, needle", [
    ("garbage", ProtocolError, "line 6: the output bytes are not an even number of hex digits"),
    ("short", ProtocolError, "without EV-END after 5 of 5"),
    ("exit3", RunFailedError, "exited with code 3"),
    ("ev-error", RunFailedError, "exited with code 1: edgevit_run returned 7 on vector 2"),
])
def test_misbehaving_program_is_a_clear_error(tmp_path, variant, error, needle):
    art = build_artifact(tmp_path / "a", variant=variant)
    with pytest.raises(error) as e:
        run_artifact(art, "host", progress=False)
    assert needle in str(e.value) and "EV 4 0" in str(e.value)  # the tail of the output is shown
    assert e.value.exit_code == 1


@pytest.mark.parametrize("variant, needle", [
    ("overflow", "SUMMARY: AddressSanitizer: global-buffer-overflow"),
    ("ub", "runtime error: shift exponent 40"),
])
def test_sanitizers_catch_memory_errors_and_ub(tmp_path, variant, needle):
    art = build_artifact(tmp_path / "a", variant=variant)
    assert run_artifact(art, "host", progress=False)["matches"] == 5  # unnoticed without sanitizers
    with pytest.raises(RunFailedError, match=needle):
        run_artifact(art, "host", sanitize=True, progress=False)


def test_hang_times_out(tmp_path):
    art = build_artifact(tmp_path / "a", variant="hang")
    with pytest.raises(RunTimeoutError, match="did not finish within 2 s") as e:
        run_artifact(art, "host", timeout=2, progress=False)
    assert "EV 4 0" in str(e.value)


def test_build_failure_shows_compiler_output(int8_artifact):
    (int8_artifact / "src" / "kernels.c").write_text("this is not C\n")
    manifest = json.loads((int8_artifact / "manifest.json").read_text())
    write_manifest(int8_artifact, {k: v for k, v in manifest.items() if k != "files"})
    with pytest.raises(RunFailedError, match=r"host build \(host/Makefile\) failed(.|\n)*kernels\.c"):
        run_artifact(int8_artifact, "host", progress=False)


def test_bad_options(int8_artifact):
    with pytest.raises(UserInputError, match="positive"):
        run_artifact(int8_artifact, "host", timeout=0, progress=False)
    with pytest.raises(UserInputError, match="--sanitize only applies to the host runner"):
        run_artifact(int8_artifact, "qemu", sanitize=True, progress=False)
    with pytest.raises(UserInputError, match="--runner 'board' cannot run .*a mcu artifact.*host, qemu, serial"):
        run_artifact(int8_artifact, "board", progress=False)
