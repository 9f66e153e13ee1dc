"""Whole test sets streamed to a device: `edgevit run DIR --data NAME|DIR|.npz [--count N]`.

Instead of the vectors compiled into the firmware, the host sends each test image over the
frame protocol (docs/serial-protocol.md, section 2) and checks every answer against the
reference interpreter running the artifact's own Program (reference/, artifact_program.py):

    test split of --data (edgevit.data, fitted to the Program's input like `edgevit compile` does)
      -> in batches: vectors.program_inputs (the exact bytes the reference sees) and the reference
         outputs (lower.reference.run_program)
      -> per image not yet in the result file: FrameClient.infer(index, input bytes) -> OUTPUT
      -> one JSON line per image in the result file (stream_results.py: flushed, resumable)
      -> outputs_match against the reference, top-1 against the labels

Nothing here knows a target: the runner opens the frame link (`Runner.open_frames`, e.g. the MCU
serial runner) and says what the board's ticks mean (`Runner.board_reported`). A result is only
accepted when its OUTPUT frame passed the CRC (the FrameClient drops others), answers the seq
that was sent and carries the index that was sent with `output_bytes` bytes; anything else is a
RunFailedError, never a match.

`--timeout` bounds the wait for one image's answer (the frame client's retransmission timer adapts
below it, and gives up after its retries). Default: the runner's time per vector
(`Runner.default_timeout` for 2 vectors minus 1) until an image went through without a
retransmission, then 4 x the slowest such image, never below 2 s.
"""

from __future__ import annotations

import hashlib
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgevit.backend.artifact import Artifact
from edgevit.backend.errors import RunFailedError
from edgevit.backend.run import check_timeout, compare_outputs, timing
from edgevit.backend.runner import Runner
from edgevit.backend.stream_results import Record, StreamResults, default_results_path
from edgevit.errors import UserInputError

BATCH = 256  # images per reference-interpreter batch
MIN_RUN_TIMEOUT_S = 2.0
RUN_TIMEOUT_FACTOR = 4.0


@dataclass(frozen=True)
class TestImages:
    """The test split of a data set, fitted to a Program's input: uint8 images [n, C, H, W],
    int64 labels [n], the data set's name and the SHA-256 of images and labels (the identity of
    the images in a result file)."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    sha256: str


def load_test_images(program, data: str, data_root: Path | None = None) -> TestImages:
    """The test split of `data` (a name, an image folder or an .npz: edgevit.data.load_dataset) with
    its images resized to the Program's [C, H, W] input as `edgevit compile` does (resize.fit_splits);
    UserInputError / DataError when the data cannot feed the Program."""
    from edgevit.data import load_dataset
    from edgevit.data.resize import fit_splits

    shape = program.tensors[program.inputs[0]].shape
    if len(shape) != 3 or shape[1] != shape[2]:
        raise UserInputError(f"--data: program {program.name!r} takes an input of shape {list(shape)}, not square "
                             "[C, H, W] images; streamed runs feed images")
    splits = fit_splits(load_dataset(data, root=data_root), shape[0], shape[1], f"--data {data}")
    test = splits.test
    digest = hashlib.sha256(np.ascontiguousarray(test.images).tobytes())
    digest.update(np.ascontiguousarray(test.labels, dtype=np.int64).tobytes())
    return TestImages(test.images, test.labels.astype(np.int64), test.name, digest.hexdigest())


def reference_batch(program, images_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(program inputs [n, *input shape], reference outputs [n, *output shape]) for uint8 images."""
    from edgevit.backend.vectors import program_inputs
    from edgevit.lower.reference import run_program

    inputs = np.ascontiguousarray(program_inputs(program, images_uint8))
    return inputs, np.ascontiguousarray(run_program(program, {program.inputs[0]: inputs})[program.outputs[0]])


def check_board(info, input_bytes: int, output_bytes: int, where: str) -> None:
    """RunFailedError when a board's HELLO reply (frames.BoardInfo) says its firmware was built for
    other input / output sizes than the artifact's: it runs another model (reflash it)."""
    if info.input_bytes != input_bytes or info.output_bytes != output_bytes:
        raise RunFailedError(f"{where}: the board's firmware takes {info.input_bytes} input bytes and gives "
                             f"{info.output_bytes} output bytes but this artifact's model takes {input_bytes} and "
                             f"gives {output_bytes}: the board runs other firmware (another model or artifact). "
                             "Flash this artifact first (`edgevit flash DIR`, or `edgevit run ... --flash`)")


def run_streamed(art: Artifact, run: Runner, data: str, *, data_root: Path | None = None, count: int | None = None,
                 results: Path | None = None, fresh: bool = False, timeout: float | None = None,
                 progress: bool = True) -> dict:
    """Stream the first `count` (default: all) test images of `data` to the device behind `run`
    and return the checked result dict: run_vectors' keys (backend/run.py) plus streamed (True),
    data, resumed (images taken from the result file), link (the frame link's byte counts,
    retransmissions and overhead for this session) and results_file. UserInputError (bad options,
    a result file of another run), RunFailedError (link failure, a board answering for another
    image or with another output size, edgevit_run failing)."""
    from edgevit.backend.artifact_program import load_program

    if not run.supports_stream():
        raise UserInputError(f"--data streams test images to a board; the {run.name} runner runs only the bundled "
                             "vectors (drop --data, or use a runner that streams: MCU serial)")
    check_timeout(timeout)
    art.refuse_inside(results, "--results")  # a valid artifact stays valid after a run
    program = load_program(art)
    profile = art.profile()
    run.check(art, profile)
    test = load_test_images(program, data, data_root)
    n = _count(count, len(test.images), data)
    in_info, out_info = program.tensors[program.inputs[0]], program.tensors[program.outputs[0]]
    t0 = time.perf_counter()
    with _progress(progress, n) as show, run.open_frames(art, profile, show.stage) as client:
        show.stage(f"asking the board on {run.source(profile)} what it runs")
        info = client.hello()
        check_board(info, in_info.nbytes, out_info.nbytes, run.source(profile))
        run.board_reported(info, profile)
        header = {"fingerprint": program.fingerprint(), "data": data, "data_sha256": test.sha256,
                  "input_bytes": in_info.nbytes, "output_bytes": out_info.nbytes,
                  "board": {"tick_kind": info.tick_kind, "clock_hz": info.clock_hz, "version": info.version},
                  "artifact": str(art.root), "source": run.source(profile)}
        path = Path(results) if results is not None else default_results_path(header["fingerprint"], test.sha256)
        with StreamResults(path, header, fresh=fresh) as store:
            resumed = sum(1 for i in store.done if i < n)
            show.start(resumed)
            per_image = run.default_timeout(art, profile, 2) - run.default_timeout(art, profile, 1)
            try:
                expected = _stream(program, test, n, client, store, show, fixed=timeout is not None,
                                   run_timeout=timeout or max(MIN_RUN_TIMEOUT_S, per_image))
            except (RunFailedError, KeyboardInterrupt) as e:
                where = (f"{sum(1 for i in store.done if i < n)} of {n} images are recorded in {path}; the same "
                         "command resumes after them")
                if isinstance(e, KeyboardInterrupt):
                    sys.stderr.write(f"interrupted: {where}\n")
                    raise
                raise RunFailedError(f"{e}\n{where}") from e
            records = [store.done[i] for i in range(n)]
        stats = client.stats
    result = {"runner": run.name, "source": run.source(profile), "profile": profile.name,
              "machine": run.machine(profile), "clock_hz": int(profile.clock_hz), "artifact": str(art.root),
              "bundled": _bundled(art), "sanitize": False, "elapsed_s": round(time.perf_counter() - t0, 3),
              "streamed": True, "data": test.name, "resumed": resumed, "results_file": str(path),
              "link": {**{k: int(getattr(stats, k)) for k in LINK_COUNTERS}, "overhead": round(stats.overhead(), 4)}}
    result.update(check_streamed(records, expected, test.labels[:n]))
    result.update(timing([r.ticks for r in records], run, profile))
    return result


LINK_COUNTERS = ("frames_sent", "frames_received", "retransmissions", "bad_frames", "payload_bytes_sent",
                 "payload_bytes_received", "bytes_sent", "bytes_received")


def _stream(program, test: TestImages, n: int, client, store: StreamResults, show, *, run_timeout: float,
            fixed: bool) -> np.ndarray:
    """Run every image < n not in `store` on the board (recording each), batch by batch; return the
    reference outputs of all n images."""
    expected, slowest = [], 0.0  # slowest: of the images that needed no retransmission
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        show.stage(f"reference outputs of images {start}..{stop - 1}")
        inputs, ref = reference_batch(program, test.images[start:stop])
        expected.append(ref)
        for i in range(start, stop):
            if i in store.done:
                continue
            t, resent = time.perf_counter(), client.stats.retransmissions
            answer = client.infer(i, inputs[i - start].tobytes(), run_timeout)
            if not fixed and client.stats.retransmissions == resent:
                slowest = max(slowest, time.perf_counter() - t)
                run_timeout = max(MIN_RUN_TIMEOUT_S, RUN_TIMEOUT_FACTOR * slowest)
            store.append(_accepted(answer, i, int(ref[0].nbytes)))
            show.advance(client.stats.retransmissions)
    return np.concatenate(expected) if expected else np.zeros((0,))


def _accepted(answer, index: int, output_bytes: int) -> Record:
    """The Record of an OUTPUT that answers image `index` with `output_bytes` bytes and status 0;
    RunFailedError otherwise (never recorded, so a rerun tries the image again)."""
    if answer.index != index:
        raise RunFailedError(f"the board answered image {index} with the output of image {answer.index}; "
                             "nothing was recorded for it (a board or link bug: rerun to resume)")
    if len(answer.output) != output_bytes:
        raise RunFailedError(f"the board answered image {index} with {len(answer.output)} output bytes, expected "
                             f"{output_bytes}: it runs other firmware; flash this artifact (`edgevit flash DIR`)")
    if answer.status != 0:
        raise RunFailedError(f"edgevit_run returned {answer.status} on image {index}: the model failed on the board "
                             "(nothing was recorded for this image)")
    return Record(index, int(answer.status), int(answer.ticks), bytes(answer.output))


def check_streamed(records: list[Record], expected: np.ndarray, labels: np.ndarray) -> dict:
    """count, dtype, matches, mismatches (first indices), match_rule, max_abs_error, top1,
    reference_top1 of the recorded outputs against the reference outputs (as run.check_outputs)."""
    dtype, shape = expected.dtype, expected.shape[1:]
    outputs = np.stack([np.frombuffer(r.output, dtype=dtype).reshape(shape) for r in records])
    return compare_outputs(outputs, expected, labels)


def _count(count: int | None, available: int, data: str) -> int:
    if count is None:
        return available
    if count < 1:
        raise UserInputError(f"--count must be at least 1 (got {count})")
    if count > available:
        raise UserInputError(f"--count {count} but the test split of --data {data} has {available} images; "
                             f"run with --count {available} or fewer")
    return count


def _bundled(art: Artifact) -> int | None:
    section = art.manifest.get("vectors")
    return int(section["count"]) if isinstance(section, dict) and isinstance(section.get("count"), int) else None


class _Shown:
    """What a streamed run shows on stderr: a stage while connecting, then one bar of images done /
    total with their rate and the link's retransmissions (a no-op without a Rich Progress)."""

    def __init__(self, progress=None, total: int = 0) -> None:
        self.progress, self.total, self.started = progress, total, False
        self.task = progress.add_task("connecting", total=None, retries=0) if progress is not None else None

    def stage(self, message: str) -> None:
        """Show what is happening before the images start."""
        if self.progress is not None and not self.started:
            self.progress.update(self.task, description=message)

    def start(self, done: int) -> None:
        """The images start; `done` of them are already in the result file."""
        if self.progress is not None:
            self.started = True
            self.progress.reset(self.task, total=self.total, completed=done, description="images")

    def advance(self, retransmissions: int) -> None:
        """One more image done; the link's retransmissions so far."""
        if self.progress is not None:
            self.progress.update(self.task, advance=1, retries=retransmissions)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[_Shown]:
    if not enabled:
        yield _Shown()
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Images per second."""

        def render(self, task) -> Text:
            return Text(f"{task.speed:.1f} img/s" if task.speed else "", style="progress.data.speed")

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                  TextColumn("{task.fields[retries]} retransmissions"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as progress:
        yield _Shown(progress, total)
