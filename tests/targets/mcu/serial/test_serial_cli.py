"""`edgevit run --runner serial` on the command line: streamed and bundled runs against the fake board,
and one clear error (with its exit code) for each wrong use: no --port, nothing listening on the
port, serial options for another runner, streaming options without --data, --data for a runner
that cannot stream."""

from __future__ import annotations

import json
import socket

import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.artifact_program import load_program
from tests.backend.hil.fake_board import FakeBoard
from tests.cli_helpers import run_cli
from tests.backend.stream.stream_helpers import bundled_inputs, reference_model, stream_artifact, stream_dataset


@pytest.fixture
def edgevit(monkeypatch, capsys):
    """edgevit(*args) runs the command in-process; stderr comes back on one line."""
    return lambda *args: run_cli(monkeypatch, capsys, *args, flat_err=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    art = stream_artifact(tmp)
    return art, stream_dataset(tmp, 50), load_program(load_artifact(art))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamed_and_bundled_runs(setup, edgevit, tmp_path) -> None:
    art, data, program = setup
    with FakeBoard(reference_model(program), 64, 4, bundled_inputs(art)) as board:
        r = edgevit("run", art, "--runner", "serial", "--port", board.url, "--data", data, "--count", 12,
                    "--results", tmp_path / "r.jsonl", "--json")
        assert r.code == 0, r.err
        result = json.loads(r.out)
        assert result["streamed"] and result["count"] == result["matches"] == 12 and result["data"].endswith("/test")
        r = edgevit("run", art, "--runner", "serial", "--port", board.url, "--baud", 9600, "--count", 3)
        assert r.code == 0, r.err
        assert "3/3 bit-exact" in r.out and "all match" in r.out
        r = edgevit("run", art, "--runner", "serial", "--port", board.url, "--data", data, "--count", 12,
                    "--results", tmp_path / "r.jsonl")
        assert r.code == 0 and "12 resumed from" in " ".join(r.out.split())


def test_a_wrong_answer_exits_1(setup, edgevit, tmp_path) -> None:
    art, data, program = setup
    with FakeBoard(lambda x: bytes(4), 64, 4, bundled_inputs(art)) as board:  # a board that always answers 0s
        r = edgevit("run", art, "--runner", "serial", "--port", board.url, "--data", data, "--count", 5,
                    "--results", tmp_path / "r.jsonl", "--json")
    result = json.loads(r.out)
    assert r.code == 1 and result["matches"] < 5 and result["count"] == 5


def test_user_errors(setup, edgevit, tmp_path) -> None:
    art, data, _ = setup
    r = edgevit("run", art, "--runner", "serial", "--data", data)
    assert r.code == 2 and "--runner serial needs --port" in r.err and "/dev/ttyACM0" in r.err
    r = edgevit("run", art, "--runner", "qemu", "--port", "/dev/ttyACM0", "--baud", 9600)
    assert r.code == 2 and "--port, --baud only apply to --runner serial" in r.err
    r = edgevit("run", art, "--runner", "serial", "--port", "/dev/ttyACM0", "--results", tmp_path / "r.jsonl", "--fresh")
    assert r.code == 2 and "--results, --fresh only apply to a streamed run (--data NAME)" in r.err
    r = edgevit("run", art, "--runner", "host", "--data", data)
    assert r.code == 2 and "the host runner runs only the bundled vectors" in r.err


def test_nothing_listening_on_the_port_exits_1_naming_it(setup, edgevit) -> None:
    art, data, _ = setup
    url = f"socket://127.0.0.1:{closed_port()}"
    r = edgevit("run", art, "--runner", "serial", "--port", url, "--count", 1)
    assert r.code == 1 and url in r.err
