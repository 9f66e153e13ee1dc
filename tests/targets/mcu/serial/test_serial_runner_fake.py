"""The serial runner (targets/mcu/runners/serial.py) against the Python fake board: bundled vectors in
text mode, what the board's ticks mean (DWT cycles: measured latency; SysTick of the emulated board:
instructions counted), a board running other firmware, and the flash option."""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.artifact_program import load_program
from edgevit.backend.errors import RunFailedError
from edgevit.backend.run import pick_runner, print_result, run_vectors
from edgevit.backend.stream_run import run_streamed
from edgevit.errors import UserInputError
from tests.backend.hil.fake_board import FakeBoard
from tests.backend.stream.stream_helpers import bundled_inputs, reference_model, stream_artifact, stream_dataset

CLOCK = 216_000_000  # stm32f746-disco
BOARD_CLOCK = 16_000_000  # what its board firmware reports and counts DWT cycles at (HSI after reset)


@pytest.fixture(scope="module")
def art_dir(tmp_path_factory):
    return stream_artifact(tmp_path_factory.mktemp("serial"))


def board(art_dir, **options) -> FakeBoard:
    program = load_program(load_artifact(art_dir))
    options.setdefault("ticks", lambda x: 100_000 + x[0])  # per-input cycle counts
    return FakeBoard(reference_model(program), 64, 4, bundled_inputs(art_dir), **options)


def test_bundled_vectors_with_dwt_cycles_give_a_measured_latency(art_dir) -> None:
    art = load_artifact(art_dir)
    with board(art_dir, tick_kind="DWT CYCCNT", clock_hz=BOARD_CLOCK) as b:
        runner = pick_runner(art, "serial", port=b.url)
        r = run_vectors(art, runner, count=5, progress=False)
    assert r["count"] == r["matches"] == 5 and r["runner"] == "serial" and r["source"] == f"serial {b.url}"
    inputs = np.load(art_dir / "vectors" / "inputs.npy")
    cycles = [100_000 + int(row.tobytes()[0]) for row in inputs[:5]]
    assert r["ticks"] == cycles and r["cycles_per_inference"] == round(np.mean(cycles))
    assert r["latency_ms"] == pytest.approx(np.mean(cycles) / BOARD_CLOCK * 1e3)
    assert r["latency_ms_median"] == pytest.approx(np.median(cycles) / BOARD_CLOCK * 1e3)
    assert r["estimated_latency_ms"] is None and r["latency_note"].startswith("measured: DWT CYCCNT")
    from rich.console import Console

    console = Console(record=True, width=200)
    print_result(r, console, runner)
    text = console.export_text()
    assert "5/5 bit-exact" in text and "(measured)" in text and "cycles" in text


def test_systick_of_the_emulated_board_counts_instructions(art_dir) -> None:
    art = load_artifact(art_dir)
    with board(art_dir, tick_kind="SysTick", clock_hz=CLOCK, ticks=500) as b:
        r = run_vectors(art, pick_runner(art, "serial", port=b.url), progress=False)
    assert r["count"] == r["matches"] == 6  # default: every bundled vector
    assert r["instructions_per_tick"] == 40.0 and r["instructions_per_inference"] == 20_000
    assert r["estimated_latency_ms"] == pytest.approx(20_000 / CLOCK * 1e3) and "latency_ms" not in r
    assert r["machine"] == "mps2-an500"


def test_a_board_with_other_firmware_is_refused_with_flash_advice(art_dir, tmp_path) -> None:
    art = load_artifact(art_dir)
    other = FakeBoard(lambda x: bytes(4), 100, 4, [bytes(100)] * 6)
    with other as b:
        with pytest.raises(RunFailedError, match=r"takes 100 input bytes .* this artifact's model takes 64.*edgevit flash"):
            run_vectors(art, pick_runner(art, "serial", port=b.url), progress=False)
        with pytest.raises(RunFailedError, match="runs other firmware"):
            run_streamed(art, pick_runner(art, "serial", port=b.url), str(stream_dataset(tmp_path, 10)), count=2,
                         results=tmp_path / "r.jsonl", progress=False)
    with FakeBoard(lambda x: bytes(4), 64, 4, bundled_inputs(art_dir)[:3]) as b:
        with pytest.raises(RunFailedError, match="bundles 3 test vectors but 5 were asked for.*--data"):
            run_vectors(art, pick_runner(art, "serial", port=b.url), count=5, progress=False)


def test_port_is_required_and_baud_must_be_positive(art_dir) -> None:
    art = load_artifact(art_dir)
    with pytest.raises(UserInputError, match=r"--runner serial needs --port: .*/dev/ttyACM0.*edgevit emulate"):
        run_vectors(art, pick_runner(art, "serial"), progress=False)
    with pytest.raises(UserInputError, match="--baud must be a positive"):
        pick_runner(art, "serial", port="/dev/ttyACM0", baud=-5)


def test_flash_flashes_before_talking_to_the_board(art_dir, monkeypatch) -> None:
    import edgevit.targets.mcu.flash as flash

    art = load_artifact(art_dir)
    calls = []
    monkeypatch.setattr(flash, "flash_artifact", lambda artifact, profile, **kw: calls.append(profile.name) or {})
    with board(art_dir, tick_kind="DWT CYCCNT", clock_hz=BOARD_CLOCK) as b:
        r = run_vectors(art, pick_runner(art, "serial", port=b.url, flash=True), count=2, progress=False)
    assert calls == ["stm32f746-disco"] and r["matches"] == 2
