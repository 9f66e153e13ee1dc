"""A latency / bit-exactness / memory test a team keeps in its CI, written with edgevit's pytest plugin.

    pytest examples/ci-latency --edgevit-runner qemu                      # emulated board (no hardware)
    pytest examples/ci-latency --edgevit-runner serial:/dev/ttyACM0 --edgevit-flash   # the real board

The model is compiled once per session (edgevit_artifact) and its bundled vectors run once on
the runner chosen on the command line (edgevit_run); each test checks one promise.
"""

from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[2] / "models" / "fmnist-tiny"  # your checkpoint directory here
PROFILE = "stm32f746-disco"
PASSES = "quant(w=8,a=8)"
VECTORS = 8
LATENCY_BUDGET_MS = 100.0  # QEMU's instruction estimate for this model: ~88 ms at 216 MHz
SRAM_BUDGET_BYTES = 64 * 1024
FLASH_BUDGET_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def run(edgevit_artifact, edgevit_run):
    """fmnist-tiny, int8, compiled for the STM32F746G-DISCO, its 8 test vectors run once."""
    return edgevit_run(edgevit_artifact(MODEL, PROFILE, passes=PASSES, vectors=VECTORS))


def test_outputs_are_bit_exact(run):
    assert run.count == VECTORS
    assert run.matches == run.count, f"mismatching vectors: {run.raw['mismatches']}"


def test_latency_within_budget(run):
    if run.latency_ms is None:
        pytest.skip(f"the {run.runner} runner gives no latency: {run.raw['latency_note']}")
    assert run.latency_ms < LATENCY_BUDGET_MS, f"{run.latency_kind} latency {run.latency_ms:.1f} ms"


def test_memory_within_budget(run):
    assert run.memory["sram"].used < SRAM_BUDGET_BYTES
    assert run.memory["flash"].used < FLASH_BUDGET_BYTES
