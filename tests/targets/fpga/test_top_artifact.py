"""The artifact bundles the overlay's Verilog (rtl/overlay.v): generated once per (overlay parameters,
RTL sources), taken from the cache after that; report.md and rtl/overlay.json say so."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.targets.fpga.tgt_helpers import tiny_programs, write_artifact

pytest.importorskip("amaranth")


def test_the_artifact_holds_the_verilog_and_a_second_compile_is_instant(tmp_path) -> None:
    from edgevit.profiles.profile import load_profile
    from edgevit.targets.fpga.artifact import VERILOG, overlay_verilog_text
    from edgevit.targets.fpga.target import FpgaTarget

    program = tiny_programs()[1]
    out = write_artifact(program, "pynq-z2", tmp_path / "a")
    if not (out / VERILOG).exists():
        pytest.skip("no Verilog: the fpga extra's Yosys is missing")
    text = (out / VERILOG).read_text(encoding="utf-8")
    assert "module edgevit_overlay" in text and "s_axil_awaddr" in text and "m_axi_araddr" in text
    assert not re.search(r"\[\d+\] = \d+'[hd]0+;", text)  # no per-word zero init of the memories
    meta = json.loads((out / "rtl" / "overlay.json").read_text(encoding="utf-8"))
    assert meta["verilog"] == VERILOG
    assert "rtl/overlay.v" in (out / "report.md").read_text(encoding="utf-8")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert VERILOG in json.dumps(manifest["files"])
    t = time.monotonic()
    again = overlay_verilog_text(FpgaTarget().overlay(load_profile("pynq-z2")))
    assert again == text and time.monotonic() - t < 5
    out2 = write_artifact(program, "pynq-z2", tmp_path / "b")
    assert (out2 / VERILOG).read_bytes() == (out / VERILOG).read_bytes()


def test_a_big_overlay_is_not_converted_at_compile_time() -> None:
    """zcu104's 64 x 16 array takes minutes to convert: its artifact names the command instead."""
    from edgevit.profiles.profile import load_profile
    from edgevit.targets.fpga.artifact import VERILOG_MAX_PES, overlay_json, overlay_verilog_text
    from edgevit.targets.fpga.target import FpgaTarget

    prof = load_profile("zcu104")
    cfg = FpgaTarget().overlay(prof)
    assert cfg.pes > VERILOG_MAX_PES and overlay_verilog_text(cfg) is None
    meta = overlay_json(cfg, prof, verilog=False)
    assert meta["verilog"] is None and "python -m edgevit.targets.fpga.rtl.overlay" in meta["note"]
