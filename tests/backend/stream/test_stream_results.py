"""The result file of streamed runs (backend/stream_results.py): header identity, resuming after a
cut-off line, refusing foreign or damaged files, --fresh, the default location."""

from __future__ import annotations

import json

import pytest

from edgevit.backend.stream_results import Record, StreamResults, default_results_path
from edgevit.errors import UserInputError

HEADER = {"fingerprint": "ab" * 32, "data": "d", "data_sha256": "cd" * 32, "input_bytes": 4, "output_bytes": 2,
          "board": {"tick_kind": "SysTick", "clock_hz": 1}, "source": "serial socket://127.0.0.1:1"}


def test_records_are_flushed_and_read_back(tmp_path) -> None:
    path = tmp_path / "sub" / "r.jsonl"
    with StreamResults(path, HEADER) as store:
        store.append(Record(0, 0, 11, b"\x01\x02"))
        lines = path.read_text().splitlines()  # flushed before close
        assert len(lines) == 2 and json.loads(lines[1]) == {"index": 0, "status": 0, "ticks": 11, "output": "0102"}
    with path.open("a") as f:
        f.write('{"index": 1, "status": 0, "ti')  # cut off
    with StreamResults(path, {**HEADER, "source": "serial /dev/ttyACM0"}) as store:  # the port may differ
        assert store.done == {0: Record(0, 0, 11, b"\x01\x02")}
        store.append(Record(1, 0, 12, b"\x03\x04"))
    assert [json.loads(line)["index"] for line in path.read_text().splitlines()[1:]] == [0, 1]


def test_foreign_damaged_and_fresh(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    StreamResults(path, HEADER).close()
    with pytest.raises(UserInputError, match=r"another run: board .*DWT CYCCNT.*--fresh"):
        StreamResults(path, {**HEADER, "board": {"tick_kind": "DWT CYCCNT", "clock_hz": 1}})
    with StreamResults(path, {**HEADER, "data_sha256": "00"}, fresh=True) as store:
        assert store.done == {}
    with path.open("a") as f:
        f.write('{"index": 0, "status": 0, "ticks": 1, "output": "0102030405"}\n')
    with pytest.raises(UserInputError, match="line 2 has index 0 and 5 output bytes .expected 2."):
        StreamResults(path, {**HEADER, "data_sha256": "00"})
    path.write_text("hello\n")
    with pytest.raises(UserInputError, match="not an edgevit stream result file"):
        StreamResults(path, HEADER)


def test_default_path_follows_xdg_cache_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_results_path("f" * 64, "d" * 64) == tmp_path / "edgevit" / "streams" / f"{'f' * 16}-{'d' * 16}.jsonl"
