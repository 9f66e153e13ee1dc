"""The resumable result file of a streamed run (`edgevit run --data ... --results FILE`).

JSON lines, one object a line, flushed after every line so an interrupted run loses at most the
image in flight:

    {"edgevit_stream": 1, "fingerprint": "...", "data": "fashion-mnist", "data_sha256": "...",
     "input_bytes": 784, "output_bytes": 10, "board": {"tick_kind": "DWT CYCCNT", "clock_hz": ...}}
    {"index": 0, "status": 0, "ticks": 123456, "output": "f3e2..."}
    {"index": 1, ...}

The header says what the records are results *of*: the artifact's Program (fingerprint), the
test images (the data set's name and the SHA-256 of its fitted test split) and the board (what
its HELLO reply says about ticks and sizes). A rerun whose header is the same resumes: the
images already recorded are not run again (`StreamResults.done`). A different header is refused
(`--fresh` starts over; or another `--results`), so results of two programs, data sets or boards
are never mixed. A truncated last line (the process was killed mid-write) is dropped.

Without `--results` the file lives in the user's cache, one per program and data set:
`$XDG_CACHE_HOME/edgevit/streams/<fingerprint[:16]>-<data_sha256[:16]>.jsonl` (`default_results_path`),
so rerunning the same command resumes wherever it is started from; the artifact directory itself is
never written to (its files are sealed by their digests).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgevit.errors import UserInputError

FORMAT_KEY = "edgevit_stream"
FORMAT_VERSION = 1
IDENTITY = ("fingerprint", "data_sha256", "input_bytes", "output_bytes", "board")  # must match to resume


@dataclass(frozen=True)
class Record:
    """One image's device result: its index in the test split, edgevit_run's status, ticks, output bytes."""

    index: int
    status: int
    ticks: int
    output: bytes

    def to_line(self) -> str:
        """The JSON line for the file (with its newline)."""
        return json.dumps({"index": self.index, "status": self.status, "ticks": self.ticks,
                           "output": self.output.hex()}) + "\n"


def default_results_path(fingerprint: str, data_sha256: str) -> Path:
    """$XDG_CACHE_HOME (default ~/.cache)/edgevit/streams/<fingerprint[:16]>-<data sha[:16]>.jsonl."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edgevit" / "streams" / f"{fingerprint[:16]}-{data_sha256[:16]}.jsonl"


class StreamResults:
    """An open result file: `done` (index -> Record, read back on resume) and `append`."""

    def __init__(self, path: Path, header: dict, *, fresh: bool = False) -> None:
        """Open `path` for the run described by `header` (the IDENTITY keys plus anything informative):
        resume when the file's header has the same identity, start a new file when there is none or
        `fresh`; UserInputError naming the file and what differs otherwise."""
        self.path = Path(path)
        self.header = {FORMAT_KEY: FORMAT_VERSION, **header}
        self.done: dict[int, Record] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keep = 0
        if self.path.exists() and not fresh:
            keep = self._read_existing()
        mode = "r+" if keep else "w"
        try:
            self._file = open(self.path, mode, encoding="utf-8")
        except OSError as e:
            raise UserInputError(f"--results {self.path}: cannot write the result file ({e.strerror})") from None
        if keep:
            self._file.seek(keep)
            self._file.truncate()  # drop a partial last line
        else:
            self._file.write(json.dumps(self.header, sort_keys=True) + "\n")
            self._file.flush()

    def _read_existing(self) -> int:
        """Parse the existing file into `done`; return the byte length of its complete lines."""
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise UserInputError(f"--results {self.path}: cannot read the result file ({e.strerror})") from None
        lines = raw.split(b"\n")
        complete = lines[:-1]  # the last element is "" after a final newline, or a truncated line
        if not complete:
            return 0
        try:
            found = json.loads(complete[0])
        except ValueError:
            found = None
        if not isinstance(found, dict) or found.get(FORMAT_KEY) != FORMAT_VERSION:
            raise UserInputError(f"--results {self.path}: not an edgevit stream result file (no header line); "
                                 "choose another --results file or pass --fresh to overwrite it")
        diffs = [f"{key} {found.get(key)!r} (now {self.header.get(key)!r})" for key in IDENTITY
                 if found.get(key) != self.header.get(key)]
        if diffs:
            raise UserInputError(f"--results {self.path} holds the results of another run: {'; '.join(diffs)}. "
                                 "Pass --fresh to start over in that file, or choose another --results file")
        length = len(complete[0]) + 1
        for number, line in enumerate(complete[1:], start=2):
            record = _parse_record(line, self.path, number, int(self.header["output_bytes"]))
            self.done.setdefault(record.index, record)
            length += len(line) + 1
        return length

    def append(self, record: Record) -> None:
        """Write one image's record and flush it to the file."""
        self._file.write(record.to_line())
        self._file.flush()
        self.done.setdefault(record.index, record)

    def close(self) -> None:
        """Close the file (records are already flushed)."""
        self._file.close()

    def __enter__(self) -> "StreamResults":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parse_record(line: bytes, path: Path, number: int, output_bytes: int) -> Record:
    try:
        d = json.loads(line)
        record = Record(int(d["index"]), int(d["status"]), int(d["ticks"]), bytes.fromhex(d["output"]))
    except (ValueError, KeyError, TypeError):
        raise UserInputError(f"--results {path}: line {number} is not a result record; the file was edited or "
                             "is damaged: pass --fresh to start over") from None
    if record.index < 0 or len(record.output) != output_bytes:
        raise UserInputError(f"--results {path}: line {number} has index {record.index} and {len(record.output)} "
                             f"output bytes (expected {output_bytes}); pass --fresh to start over")
    return record
