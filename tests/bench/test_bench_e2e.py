"""`edgevit bench` end to end: a small matrix (fmnist-tiny int8 on the host CPU and on the STM32F746 board
under QEMU, a serial cell without a port) through the command line, its bench.json, its HTML in
headless Chromium and a failing baseline; the shipped default matrix within its 10-minute target (slow)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgevit.bench.baseline import compare
from edgevit.bench.results import load_document
from tests.bench.bench_chromium import open_page, require_chromium

ROOT = Path(__file__).resolve().parents[2]
QEMU_CELL = "fmnist-tiny/int8/stm32f746-disco/qemu"
HOST_CELL = "fmnist-tiny/int8/host/host"
SERIAL_CELL = "fmnist-tiny/int8/stm32f746-disco/serial"
DEFAULT_TARGET_S = 600


def bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgevit", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def synthetic_baseline(path: Path) -> None:
    """A baseline the run must regress against: a 1 ns QEMU latency and 1-byte memory pools."""
    def cell(key, kind, pools):
        return {"key": key, "status": "ok", "latency": {"ms": 1e-6, "kind": kind},
                "memory": {"pools": [{"name": p, "used": 1, "unit": "B"} for p in pools]},
                "accuracy": {"count": 4, "matches": 4, "top1": 0.0}}
    path.write_text(json.dumps({"format": "edgevit-bench", "version": 1, "created": "then", "cells": [
        cell(QEMU_CELL, "estimated", ["sram", "flash"]), cell("gone/int8/host/host", "measured", ["ram"])]}))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    require_chromium()
    tmp = tmp_path_factory.mktemp("bench")
    config = {"name": "e2e", "vectors": 4, "count": 4, "kernel_profile": {"count": 1},
              "models": [str(ROOT / "models" / "fmnist-tiny")], "passes": {"int8": "quant(w=8,a=8)"},
              "profiles": [{"profile": "stm32f746-disco", "runners": ["qemu", "serial"]},
                           {"profile": "host", "runners": {"host": {"bench_runs": 20}}}]}
    (tmp / "bench.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    synthetic_baseline(tmp / "base.json")
    proc = bench(str(tmp / "bench.yaml"), "--out", str(tmp / "out"), "--baseline", str(tmp / "base.json"))
    return tmp, proc


def test_the_run_writes_every_cell_and_fails_on_the_baseline(small_run):
    tmp, proc = small_run
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "bench failed:" in proc.stderr and "regression(s) against the baseline" in proc.stderr
    assert "regressions against" in proc.stdout and "latency_ms" in proc.stdout and "memory.sram" in proc.stdout
    assert re.search(r"\[1/3\] .*qemu: compiling", proc.stderr) and "profiling plan steps" in proc.stderr
    doc = load_document(tmp / "out" / "bench.json")
    assert doc["edgevit"]["version"] and doc["host"]["cores"] >= 1 and doc["config"]["name"] == "e2e"
    cells = {c["key"]: c for c in doc["cells"]}
    assert [c["key"] for c in doc["cells"]] == [QEMU_CELL, SERIAL_CELL, HOST_CELL]
    assert cells[SERIAL_CELL]["status"] == "skipped" and "--port" in cells[SERIAL_CELL]["reason"]
    for key, kind in ((QEMU_CELL, "estimated"), (HOST_CELL, "measured")):
        c = cells[key]
        assert c["status"] == "ok" and c["accuracy"]["matches"] == c["accuracy"]["count"] == 4
        assert c["latency"]["kind"] == kind and c["latency"]["ms"] > 0
        assert c["kernels"]["kind"] == kind and len(c["kernels"]["steps"]) == c["compile"]["steps"] > 0
        assert sum(s["ms"] for s in c["kernels"]["steps"]) > 0 and "linear" in c["kernels"]["by_op"]
    qemu = cells[QEMU_CELL]
    assert [p["name"] for p in qemu["memory"]["pools"]] == ["sram", "flash"]
    assert qemu["latency"]["instructions"] > 1_000_000
    # the profiled steps add up to the whole inference (QEMU counts are deterministic; the profile's
    # own clock reads cost a few hundred instructions)
    steps_ms = sum(s["ms"] for s in qemu["kernels"]["steps"])
    assert 0.97 * qemu["latency"]["ms"] < steps_ms < 1.001 * qemu["latency"]["ms"]
    assert cells[HOST_CELL]["memory"]["pools"][0]["name"] == "ram"
    assert not cells[QEMU_CELL]["compile"]["reused"] and cells[SERIAL_CELL]["compile"]["reused"]
    base = doc["baseline"]
    assert base["failed"] and base["missing_in_current"] == ["gone/int8/host/host"]
    assert {(r["key"], r["metric"]) for r in base["regressions"]} == {
        (QEMU_CELL, "latency_ms"), (QEMU_CELL, "memory.sram"), (QEMU_CELL, "memory.flash")}
    assert not compare(doc["cells"], doc)["failed"]  # the run against itself: clean


def test_the_report_opens_in_headless_chromium_without_console_errors(small_run):
    tmp, _ = small_run
    page = open_page(tmp / "out" / "bench.html")
    assert page.console == [], page.console
    assert len(re.findall(r"<svg[^>]*class=\"chart\"", page.dom)) == 1 + 3 + 1 + 2  # latency, 3 pools, top-1, 2 kernels
    assert "<h2>Baseline comparison</h2>" in page.dom and "Regressions (3)" in page.dom
    assert page.dom.count("<table") >= 5


@pytest.mark.slow
def test_the_default_matrix_finishes_within_ten_minutes(tmp_path):
    require_chromium()
    start = time.monotonic()
    proc = bench("--default", "--out", str(tmp_path), timeout=2 * DEFAULT_TARGET_S)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = load_document(tmp_path / "bench.json")
    assert doc["summary"]["ok"] == doc["summary"]["cells"] == 6 and doc["summary"]["mismatched"] == []
    assert {c["profile"] for c in doc["cells"]} == {"stm32f746-disco", "nrf52840", "host"}
    assert all(c["kernels"]["steps"] for c in doc["cells"])
    page = open_page(tmp_path / "bench.html")
    assert page.console == [], page.console
    assert elapsed < DEFAULT_TARGET_S, f"the default bench took {elapsed:.0f} s (target < {DEFAULT_TARGET_S} s)"
