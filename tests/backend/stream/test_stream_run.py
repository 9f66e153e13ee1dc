"""Streamed test sets (backend/stream_run.py) against the Python fake board (tests/backend/hil/fake_board.py):
the device's answers are checked against the reference interpreter running the artifact's own Program;
a board that answers one image wrongly gets a mismatch, never a match; result files resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.artifact_program import load_program
from edgevit.backend.run import pick_runner
from edgevit.backend.stream_run import load_test_images, reference_batch, run_streamed
from edgevit.errors import UserInputError
from tests.backend.hil.fake_board import FakeBoard
from tests.backend.stream.stream_helpers import (bundled_inputs, reference_model, stream_artifact, stream_dataset,
                                                 tiny_int8_program)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(artifact dir, loaded artifact, program, data path) shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("stream")
    art_dir = stream_artifact(tmp)
    art = load_artifact(art_dir)
    return art_dir, art, load_program(art), stream_dataset(tmp, 300)


def board_for(art_dir, program, model=None, **options) -> FakeBoard:
    info_in, info_out = program.tensors[program.inputs[0]], program.tensors[program.outputs[0]]
    return FakeBoard(model or reference_model(program), info_in.nbytes, info_out.nbytes, bundled_inputs(art_dir),
                     **options)


def streamed(art, board, data, port: str | None = None, **options) -> dict:
    """run_streamed on the serial runner talking to `board` (or to `port`, e.g. a proxy in front of it)."""
    return run_streamed(art, pick_runner(art, "serial", port=port or board.url), str(data), progress=False, **options)


def records(path) -> list[dict]:
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines[1:]]


def test_streamed_images_match_the_reference(setup, tmp_path) -> None:
    art_dir, art, program, data = setup
    results = tmp_path / "r.jsonl"
    with board_for(art_dir, program) as board:
        r = streamed(art, board, data, count=40, results=results)
    assert r["streamed"] is True and r["count"] == r["matches"] == 40 and r["mismatches"] == []
    assert r["match_rule"] == "bit-exact" and r["resumed"] == 0 and r["results_file"] == str(results)
    assert r["runner"] == "serial" and r["source"] == f"serial {board.url}" and r["bundled"] == 6
    assert board.inferences == 40 and len(r["ticks"]) == 40
    # the fake board's SysTick runs at 25 MHz, not the board's 216 MHz: an emulated board, instructions counted
    assert r["instructions_per_tick"] == 40.0 and r["instructions_per_inference"] == 1234 * 40
    link = r["link"]
    # HELLO, then INPUT + RUN per image (a slow answer may be retransmitted: the board answers from its cache)
    assert link["frames_sent"] == 1 + 40 * 2 + link["retransmissions"] and 0 < link["overhead"] < 0.5
    assert link["payload_bytes_sent"] == 40 * 64 and link["payload_bytes_received"] == 40 * 4
    rows = records(results)
    assert [row["index"] for row in rows] == list(range(40)) and all(row["status"] == 0 for row in rows)
    expected = np.load(art_dir / "vectors" / "expected.npy")  # the first test images are the bundled vectors
    assert [bytes.fromhex(row["output"]) for row in rows[:6]] == [e.tobytes() for e in expected]
    header = json.loads(results.read_text().splitlines()[0])
    assert header["fingerprint"] == program.fingerprint() and header["board"]["tick_kind"] == "SysTick"


def test_a_wrong_answer_is_a_mismatch_never_a_match(setup, tmp_path) -> None:
    art_dir, art, program, data = setup
    test = load_test_images(program, str(data))
    inputs, _ = reference_batch(program, test.images[:30])
    bad = inputs[17].tobytes()
    right = reference_model(program)

    def one_wrong(x: bytes) -> bytes:
        out = bytearray(right(x))
        if x == bad:
            out[0] ^= 0x01
        return bytes(out)

    with board_for(art_dir, program, one_wrong) as board:
        r = streamed(art, board, data, count=30, results=tmp_path / "r.jsonl")
    assert r["count"] == 30 and r["matches"] == 29 and r["mismatches"] == [17] and r["max_abs_error"] == 1


def test_rerun_resumes_and_a_foreign_result_file_is_refused(setup, tmp_path) -> None:
    art_dir, art, program, data = setup
    results = tmp_path / "r.jsonl"
    with board_for(art_dir, program) as board:
        streamed(art, board, data, count=10, results=results)
        with results.open("a") as f:
            f.write('{"index": 10, "sta')  # killed in the middle of a line
        r = streamed(art, board, data, count=25, results=results)
        assert r["resumed"] == 10 and r["count"] == r["matches"] == 25 and board.inferences == 25
        assert [row["index"] for row in records(results)] == list(range(25))
    other_dir = stream_artifact(tmp_path, tiny_int8_program(seed=9), name="other")
    other = load_artifact(other_dir)
    with board_for(other_dir, load_program(other)) as board:
        with pytest.raises(UserInputError, match=r"holds the results of another run: fingerprint .*--fresh"):
            streamed(other, board, data, count=5, results=results)
        r = streamed(other, board, data, count=5, results=results, fresh=True)
        assert r["resumed"] == 0 and r["matches"] == 5 and len(records(results)) == 5


def test_default_result_file_is_in_the_user_cache(setup, tmp_path, monkeypatch) -> None:
    art_dir, art, program, data = setup
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with board_for(art_dir, program) as board:
        r = streamed(art, board, data, count=3)
        again = streamed(art, board, data, count=3)
    assert r["results_file"].startswith(str(tmp_path / "cache" / "edgevit" / "streams" / program.fingerprint()[:16]))
    assert again["resumed"] == 3 and board.inferences == 3


def test_count_and_runner_errors(setup, tmp_path) -> None:
    art_dir, art, program, data = setup
    with pytest.raises(UserInputError, match=r"--count 301 but the test split of --data .* has 300 images"):
        run_streamed(art, pick_runner(art, "serial", port="socket://127.0.0.1:9"), str(data), count=301,
                     results=tmp_path / "r.jsonl", progress=False)
    with pytest.raises(UserInputError, match="the host runner runs only the bundled vectors"):
        run_streamed(art, pick_runner(art, "host"), str(data), count=3, progress=False)


@pytest.mark.parametrize("count, faults", [
    (30, {"corrupt": 0.01}),
    (30, {"drop": 0.005, "duplicate": 0.005, "delay": 0.002}),
    pytest.param(200, {"corrupt": 0.01}, marks=pytest.mark.slow),
])
def test_a_faulty_line_still_gives_every_image_exactly_once(setup, tmp_path, count, faults) -> None:
    from edgevit.backend.hil.fault_proxy import FaultProxy

    art_dir, art, program, data = setup
    results = tmp_path / "r.jsonl"
    with board_for(art_dir, program) as board:
        with FaultProxy(("127.0.0.1", board.port), seed=7, **faults) as proxy:
            r = streamed(art, board, data, proxy.url, count=count, results=results)
    assert r["count"] == r["matches"] == count and board.inferences == count  # no RUN acted on twice
    assert proxy.stats.to_target.faults + proxy.stats.to_client.faults > 0 and r["link"]["retransmissions"] > 0
    assert [row["index"] for row in records(results)] == list(range(count))


def test_a_failing_model_stops_the_run_and_says_how_to_resume(setup, tmp_path) -> None:
    from edgevit.backend.errors import RunFailedError

    art_dir, art, program, data = setup
    test = load_test_images(program, str(data))
    inputs, _ = reference_batch(program, test.images[:10])
    failing = inputs[3].tobytes()
    right = reference_model(program)
    results = tmp_path / "r.jsonl"
    with board_for(art_dir, program, lambda x: (3, bytes(4)) if x == failing else right(x)) as board:
        with pytest.raises(RunFailedError, match=r"edgevit_run returned 3 on image 3(.|\n)*3 of 10 images are recorded"):
            streamed(art, board, data, count=10, results=results)
    assert [row["index"] for row in records(results)] == [0, 1, 2]  # the failed image is not recorded
