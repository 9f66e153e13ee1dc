"""Crash-safe writes of `edgevit bench`: bench.json and bench.html each replace the previous one
whole, and a killed bench's leftovers are removed by the next one."""

from __future__ import annotations

import json

from edgevit.bench.results import load_document, write_document
from edgevit.bench.run_bench import HTML_NAME, JSON_NAME, write_outputs
from tests.atomic_helpers import check_atomic_writer
from tests.bench.bench_fixtures import document


def _doc(i: int) -> dict:
    return {**document(), "duration_s": float(i)}


def test_bench_json(tmp_path, monkeypatch):
    path = tmp_path / JSON_NAME
    check_atomic_writer(tmp_path, JSON_NAME, lambda i: write_document(_doc(i), path),
                        lambda: int(load_document(path)["duration_s"]), monkeypatch)


def test_bench_html(tmp_path, monkeypatch):
    seen: dict[bytes, int] = {}

    def write(i):
        write_outputs(_doc(i), tmp_path)
        seen[(tmp_path / HTML_NAME).read_bytes()] = i

    def read():
        json.loads((tmp_path / JSON_NAME).read_text())
        return seen[(tmp_path / HTML_NAME).read_bytes()]

    check_atomic_writer(tmp_path, HTML_NAME, write, read, monkeypatch)
