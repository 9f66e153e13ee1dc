"""Baseline comparison on synthetic bench.json documents: regressions, improvements, accuracy drops,
tolerances, cells on one side only, and reading baseline files."""

from __future__ import annotations

import json

import pytest

from edgevit.bench.baseline import compare, parse_tolerance
from edgevit.bench.results import load_document, write_document
from edgevit.bench.run_bench import verdict
from edgevit.errors import UserInputError
from tests.bench.bench_fixtures import changed, document

HOST = "tiny/int8/host/host"
STM = "tiny/int8/stm32f746-disco/qemu"
NRF = "tiny/int8/nrf52840/qemu"


def metrics(rows):
    return sorted((r["key"], r["metric"]) for r in rows)


def test_identical_runs_compare_clean():
    doc = document()
    cmp = compare(doc["cells"], doc)
    assert cmp["compared"] == 3 and not cmp["failed"]
    assert cmp["regressions"] == cmp["improvements"] == cmp["notes"] == []
    assert cmp["missing_in_current"] == cmp["missing_in_baseline"] == []
    assert {r["key"] for r in cmp["not_ok"]} == {"tiny/int8/stm32f746-disco/serial", "tiny/int8/nrf52840/serial",
                                                 "small/int8/nrf52840/qemu"}


def test_latency_regression_beyond_the_tolerance_fails_and_within_it_passes():
    base = document()
    slower = changed(base, HOST, ("latency", "ms"), 0.123 * 1.08)
    cmp = compare(slower["cells"], base, latency_tolerance=0.05)
    assert cmp["failed"] and metrics(cmp["regressions"]) == [(HOST, "latency_ms")]
    row = cmp["regressions"][0]
    assert row["baseline"] == 0.123 and row["change"] == pytest.approx(0.08) and row["limit"] == "+5.0%"
    assert not compare(slower["cells"], base, latency_tolerance=0.10)["failed"]


def test_memory_growth_of_any_pool_fails_at_zero_tolerance():
    base = document()
    bigger = changed(base, STM, ("memory", "pools"), [{**p, "used": p["used"] + (8 if p["name"] == "flash" else 0)}
                                                      for p in base["cells"][1]["memory"]["pools"]])
    cmp = compare(bigger["cells"], base)
    assert cmp["failed"] and metrics(cmp["regressions"]) == [(STM, "memory.flash")]
    assert not compare(bigger["cells"], base, memory_tolerance=0.01)["failed"]


def test_improvements_are_reported_and_do_not_fail():
    base = document()
    faster = changed(base, NRF, ("latency", "ms"), 200.0)
    smaller = changed(faster, NRF, ("memory", "pools"), [{**p, "used": p["used"] - 100}
                                                         for p in base["cells"][2]["memory"]["pools"]])
    cmp = compare(smaller["cells"], base)
    assert not cmp["failed"] and cmp["regressions"] == []
    assert metrics(cmp["improvements"]) == [(NRF, "latency_ms"), (NRF, "memory.flash"), (NRF, "memory.sram")]


@pytest.mark.parametrize("path, value, metric", [
    (("accuracy", "matches"), 9, "matches"),
    (("accuracy", "top1"), 0.89, "top1"),
])
def test_any_accuracy_drop_fails(path, value, metric):
    base = document()
    worse = changed(base, STM, path, value)
    cmp = compare(worse["cells"], base, latency_tolerance=10.0, memory_tolerance=10.0)
    assert cmp["failed"] and metrics(cmp["regressions"]) == [(STM, metric)]


def test_latencies_of_different_kinds_or_top1_over_other_counts_are_notes_not_failures():
    base = document()
    cur = changed(base, HOST, ("latency", "kind"), "estimated")
    cur = changed(cur, HOST, ("latency", "ms"), 5.0)
    cur = changed(cur, STM, ("accuracy", "count"), 20)
    cur = changed(cur, STM, ("accuracy", "matches"), 20)
    cur = changed(cur, STM, ("accuracy", "top1"), 0.5)
    cmp = compare(cur["cells"], base)
    assert not cmp["failed"], cmp["regressions"]
    assert metrics(cmp["notes"]) == [(HOST, "latency_ms"), (STM, "top1")]


def test_cells_on_one_side_only_are_reported_not_failures():
    base = document()
    cur = dict(base, cells=[c for c in base["cells"] if c["key"] != NRF]
               + [{**base["cells"][0], "key": "tiny/int8/rpi4/ssh"}])
    cmp = compare(cur["cells"], base)
    assert not cmp["failed"]
    assert cmp["missing_in_current"] == [NRF] and cmp["missing_in_baseline"] == ["tiny/int8/rpi4/ssh"]


def test_verdict_fails_on_regressions_failed_cells_and_mismatches():
    base = document()
    assert verdict(base) == ["1 cell(s) failed"]
    clean = document([c for c in base["cells"] if c["status"] != "failed"])
    assert verdict(clean) == []
    drop = changed(clean, STM, ("accuracy", "matches"), 9)
    drop["cells"][1]["accuracy"]["bit_exact"] = False
    from edgevit.bench.record import summary_counts

    drop["summary"] = summary_counts(drop["cells"])
    drop["baseline"] = compare(drop["cells"], clean, path="base.json")
    why = verdict(drop)
    assert any(STM in w for w in why) and any("regression(s) against the baseline base.json" in w for w in why)


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.05", 0.05), ("0%", 0.0), ("150%", 1.5)])
def test_tolerances_parse(text, value):
    assert parse_tolerance(text, "--latency-tolerance") == pytest.approx(value)


@pytest.mark.parametrize("text", ["five", "-1%", "nan", "inf"])
def test_bad_tolerances_name_the_option(text):
    with pytest.raises(UserInputError, match="--memory-tolerance"):
        parse_tolerance(text, "--memory-tolerance")


def test_baseline_files_round_trip_and_bad_ones_are_clear(tmp_path):
    path = tmp_path / "bench.json"
    write_document(document(), path)
    assert load_document(path)["cells"] == json.loads(json.dumps(document()["cells"]))
    for content, needle in (("{", "not a readable JSON"), ('{"format": "x"}', "not an edgevit bench result"),
                            ('{"format": "edgevit-bench", "version": 99}', "version 99"),
                            ('{"format": "edgevit-bench", "version": 1, "cells": [{}]}', "a `key` each")):
        path.write_text(content)
        with pytest.raises(UserInputError, match="--baseline") as e:
            load_document(path)
        assert needle in str(e.value)
    with pytest.raises(UserInputError, match="no such file"):
        load_document(tmp_path / "missing.json")
