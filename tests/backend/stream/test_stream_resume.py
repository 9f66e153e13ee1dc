"""An interrupted streamed run resumes: `edgevit run --data ... --results F` killed (SIGKILL) after some
images, then run again with the same file, runs exactly the images the file does not hold, once each."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from edgevit.backend.artifact import load_artifact
from edgevit.backend.artifact_program import load_program
from edgevit.backend.run import pick_runner
from edgevit.backend.stream_run import load_test_images, reference_batch, run_streamed
from tests.backend.hil.fake_board import FakeBoard
from tests.backend.stream.stream_helpers import bundled_inputs, reference_model, stream_artifact, stream_dataset

ROOT = Path(__file__).resolve().parents[3]
COUNT = 60


def recorded(path: Path) -> list[int]:
    return [json.loads(line)["index"] for line in path.read_text().splitlines()[1:] if line.endswith("}")]


def test_a_killed_run_resumes_without_running_an_image_twice(tmp_path) -> None:
    art_dir, data = stream_artifact(tmp_path), stream_dataset(tmp_path, 100)
    art = load_artifact(art_dir)
    program = load_program(art)
    inputs, _ = reference_batch(program, load_test_images(program, str(data)).images[:COUNT])
    index_of = {row.tobytes(): i for i, row in enumerate(inputs)}
    right, seen, lock = reference_model(program), [], threading.Lock()

    def slow_model(x: bytes) -> bytes:  # records which image ran; slow enough to be killed mid-run
        with lock:
            seen.append(index_of[x])
        time.sleep(0.03)
        return right(x)

    results = tmp_path / "r.jsonl"
    with FakeBoard(slow_model, inputs[0].nbytes, 4, bundled_inputs(art_dir)) as board:
        cmd = [sys.executable, "-m", "edgevit", "run", str(art_dir), "--runner", "serial", "--port", board.url,
               "--data", str(data), "--count", str(COUNT), "--results", str(results), "--json"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if results.exists() and len(recorded(results)) >= 20:
                    break
                time.sleep(0.01)
            assert proc.poll() is None, proc.communicate()
            proc.kill()
        finally:
            proc.wait(timeout=30)
        done = recorded(results)
        assert 20 <= len(done) < COUNT and done == list(range(len(done)))
        first = list(seen)
        assert set(done) <= set(first)

        r = run_streamed(art, pick_runner(art, "serial", port=board.url), str(data), count=COUNT, results=results,
                         progress=False)
        second = seen[len(first):]
    assert r["count"] == r["matches"] == COUNT and r["resumed"] == len(done)
    assert sorted(second) == sorted(set(range(COUNT)) - set(done))  # exactly the missing ones, once each
    assert sorted(recorded(results)) == list(range(COUNT))
