"""benchmarks/mcu_speed.py reports only what it measured: the numbers in its target tables come from the
measured rows (or are the targets' own thresholds), nothing typed into the script. It used to write
CMSIS-NN figures under `cmsis_nn_measured` that nothing in the repository measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import mcu_speed  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def numbers(obj) -> set[float]:
    """Every int / float (not bool) anywhere in a JSON-like structure."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return set()
    if isinstance(obj, (int, float)):
        return {float(obj)}
    items = obj.values() if isinstance(obj, dict) else obj
    return set().union(*(numbers(v) for v in items)) if items else set()


KERNEL_ROWS = [
    {"group": "issue-linear", "kernel": "linear 64x64->128", "op": "linear", "rows": 64,
     "fast_macs_per_instruction": 0.6123, "reference_macs_per_instruction": 0.2211},
    {"group": "fmnist-tiny", "kernel": "blocks.0.fc1", "op": "linear", "rows": 17,
     "fast_macs_per_instruction": 0.5377, "reference_macs_per_instruction": 0.1902},
    {"group": "fmnist-tiny", "kernel": "head", "op": "linear", "rows": 1, "fast_macs_per_instruction": 0.3},
]
FITS = [{"tokens": 50, "schedule": "fast", "softmax_instructions_per_element": 27.9},
        {"tokens": 50, "schedule": "reference", "softmax_instructions_per_element": 51.2}]


def test_target_tables_hold_only_measured_numbers_and_thresholds() -> None:
    measured = numbers(KERNEL_ROWS) | numbers(FITS)
    thresholds = {mcu_speed.GEMM_TARGET, mcu_speed.SOFTMAX_TARGET, float(mcu_speed.GEMM_MIN_ROWS)}
    for table in (mcu_speed.gemm_target(KERNEL_ROWS), mcu_speed.softmax_target(FITS)):
        assert numbers(table) <= measured | thresholds, table
        assert "cmsis" not in json.dumps(table).lower()


def test_with_nothing_measured_the_tables_hold_no_figures() -> None:
    for table in (mcu_speed.gemm_target([]), mcu_speed.softmax_target([])):
        assert numbers(table) == set(), table
        assert table["met"] is False


def test_the_method_says_there_is_no_cmsis_nn_comparison() -> None:
    assert "nothing in this repository measures it" in mcu_speed.METHOD["comparisons"]
