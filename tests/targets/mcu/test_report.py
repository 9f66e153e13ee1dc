"""manifest.json, report.md and memory.png of an emitted artifact: content, hashes, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from edgevit.profiles.profile import load_profile
from edgevit.backend.manifest import FORMAT, VERSION, file_hashes, manifest_digest, manifest_json, reference_top1
from edgevit.backend.memory_plot import memory_png
from edgevit.targets.mcu.emit import artifact_files, emit_artifact
from edgevit.targets.mcu.memory import STACK_BYTES, memory_figures
from edgevit.targets.mcu.report import render_memory_png
from tests.targets.mcu.helpers import add_chain_program, chain_plan, vectors_for


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    profile = load_profile("stm32f746-disco")
    program = add_chain_program("int8", rows=10, dim=5, depth=3, seed=5)
    plan = chain_plan(program, 4, 10)
    vectors = vectors_for(program, 3)
    out = tmp_path_factory.mktemp("artifact")
    manifest = emit_artifact(program, profile, plan, out, vectors=vectors, passes="quant(w=8,a=8)")
    return profile, program, plan, vectors, out, manifest


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_manifest_sections(case) -> None:
    profile, program, plan, vectors, out, m = case
    assert m["format"] == FORMAT and m["version"] == VERSION and m["digest"] == manifest_digest(m)
    assert m["profile"]["name"] == profile.name and m["profile"]["memory"]["sram_bytes"] == profile.memory.sram_bytes
    assert m["passes"] == "quant(w=8,a=8)"
    assert m["program"]["fingerprint"] == program.fingerprint()
    assert m["program"]["input"] == {"name": "x", "shape": [10, 5], "dtype": "int8",
                                     "quant": {"scale": 0.05, "zero_point": 0}}
    assert m["program"]["output"]["name"] == "out" and m["program"]["output"]["dtype"] == "int8"
    assert m["memory"] == memory_figures(program, plan, profile) and m["memory"]["stack_bytes"] == STACK_BYTES
    assert f"EDGEVIT_STACK_BYTES = {STACK_BYTES};" in (out / "firmware" / "linker.ld").read_text()
    assert m["budget"] == {"sram_bytes": profile.memory.sram_bytes, "flash_bytes": profile.memory.flash_bytes}
    assert [k["name"] for k in m["kernels"]] == ["add0", "add1", "add2"]
    k0 = m["kernels"][0]
    assert k0["op"] == "add" and k0["step"] == 0 and len(k0["functions"]) == 2  # chunk body + tail
    assert k0["offsets"] == {"x": 0, "add0": plan.buffers["add0"].offset}
    assert k0["bytes"] == 3 * 50
    assert m["steps"] == [{"index": 0, "kernels": ["add0", "add1", "add2"], "chunk_rows": 4, "rows": 10,
                           "live_bytes": plan.timeline[0]}]
    assert m["vectors"]["count"] == 3 and m["vectors"]["reference_top1"] is None


def test_files_section_hashes_every_other_file(case) -> None:
    *_, out, m = case
    on_disk = all_files(out)
    assert set(m["files"]) == set(on_disk) - {"manifest.json"}
    for rel, digest in m["files"].items():
        assert hashlib.sha256(on_disk[rel]).hexdigest() == digest, rel
    assert {"src/model.c", "src/kernels.c", "src/weights.c", "src/edgevit_model.h", "src/vectors.c",
            "vectors/expected.npy", "firmware/linker.ld", "host/Makefile", "report.md", "memory.png"} <= set(m["files"])
    assert json.loads((out / "manifest.json").read_text()) == m


def test_the_runners_accept_the_artifact(case) -> None:
    from edgevit.backend.artifact import load_artifact

    profile, *_, vectors, out, _ = case
    art = load_artifact(out)
    assert art.profile() == profile
    loaded = art.load_vectors()
    assert (loaded.expected == vectors.expected).all() and loaded.count == 3


def test_report_tables(case) -> None:
    profile, program, plan, vectors, out, m = case
    text = (out / "report.md").read_text()
    assert text.startswith(f"# adds for {profile.name}")
    assert f"| arena (planned, allocated by model.c) | {plan.arena_bytes:,} B" in text
    assert f"{plan.naive_bytes:,} B" in text and "lower bound" in text
    for k in ("add0", "add1", "add2"):
        assert f"| 0 | {k} | add |" in text
    assert "![arena timeline](memory.png)" in text and "edgevit run DIR --runner qemu" in text
    assert "`quant(w=8,a=8)`" in text


def test_memory_png_is_deterministic_without_software_tag(case) -> None:
    *_, plan, _, out, m = case
    png = (out / "memory.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in png and b"matplotlib" not in png
    assert render_memory_png(m, plan.naive_timeline) == png


def test_memory_png_takes_the_figures_it_draws() -> None:
    """The shared plot knows no target: same figures, same bytes; another budget line, other bytes."""
    args = dict(title="t on d", planned=[100, 300, 200], naive=[400, 900, 500], arena_bytes=320, naive_bytes=900,
                budget_bytes=1000, budget_what="RAM")
    png = memory_png(**args)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and memory_png(**args) == png
    assert memory_png(**{**args, "budget_bytes": 10**9}) != png  # off the scale: noted in the title instead


def test_same_inputs_give_byte_identical_artifacts(case, tmp_path) -> None:
    profile, program, plan, vectors, out, m = case
    emit_artifact(program, profile, plan, tmp_path, vectors=vectors, passes="quant(w=8,a=8)")
    assert all_files(tmp_path) == all_files(out)
    files = artifact_files(program, profile, plan, vectors=vectors, passes="quant(w=8,a=8)")
    assert manifest_json(json.loads(files["manifest.json"])) == files["manifest.json"]
    assert str(out) not in files["manifest.json"] and str(out) not in files["report.md"]


def test_file_hashes_and_reference_top1() -> None:
    import numpy as np

    from edgevit.backend.vectors import Vectors

    assert file_hashes({"b": "x", "a": b"x"}) == {"a": hashlib.sha256(b"x").hexdigest(),
                                                   "b": hashlib.sha256(b"x").hexdigest()}
    v = Vectors(np.zeros((3, 2)), np.array([[1, 0], [0, 1], [1, 0]], np.int8), np.array([0, 1, 1]), "s")
    assert reference_top1(v) == pytest.approx(2 / 3, abs=1e-6)
