"""The bench program's result line (edgevit/targets/cpu/bench.py: parse_bench, bench_result) and the
runner options that ask for a bench (backend/runner.get_runner: --bench-runs / --threads only for
runners that measure latency). The bench program itself runs end to end in test_library.py."""

from __future__ import annotations

import pytest

from edgevit.backend.errors import RunFailedError
from edgevit.backend.runner import MEASURED_KEYS, get_runner
from edgevit.backend.target import get_target
from edgevit.errors import UserInputError
from edgevit.targets.cpu.bench import bench_command, bench_result, parse_bench
from edgevit.targets.cpu.target import CpuTarget

GOOD = ("EV-BENCH runs=200 warmup=20 threads=2 median_ms=0.652992 p90_ms=0.718126 min_ms=0.646133 "
        "mean_ms=0.668318 peak_rss_bytes=1335296")


def test_parse_bench_reads_the_line_among_others() -> None:
    figures = parse_bench(f"some warning\n{GOOD}\r\n\n")
    assert figures == {"runs": 200, "warmup": 20, "threads": 2, "median_ms": 0.652992, "p90_ms": 0.718126,
                       "min_ms": 0.646133, "mean_ms": 0.668318, "peak_rss_bytes": 1335296}
    assert isinstance(figures["runs"], int) and isinstance(figures["median_ms"], float)
    assert parse_bench(GOOD.replace("0.718126", "7.2e-01"))["p90_ms"] == pytest.approx(0.72)


@pytest.mark.parametrize("text, reason", [
    ("", "0 EV-BENCH lines"),
    (GOOD + "\n" + GOOD, "2 EV-BENCH lines"),
    (GOOD.replace(" peak_rss_bytes=1335296", ""), "7 fields instead of 8"),
    (GOOD + " extra=1", "9 fields instead of 8"),
    (GOOD.replace("warmup=20 threads=2", "threads=2 warmup=20"), "expected warmup=... but got 'threads=2'"),
    (GOOD.replace("runs=200", "runs=2x0"), "runs='2x0' is not a non-negative int"),
    (GOOD.replace("median_ms=0.652992", "median_ms=nan"), "median_ms='nan' is not a non-negative float"),
    (GOOD.replace("min_ms=0.646133", "min_ms=-1.0"), "is not a non-negative float"),
    (GOOD.replace("threads=2", "threads=0"), "runs and threads must be at least 1"),
    (GOOD.replace("p90_ms=0.718126", "p90_ms=0.5"), "min_ms <= median_ms <= p90_ms does not hold"),
    (GOOD.replace("median_ms=0.652992", "median_ms"), "expected median_ms=... but got 'median_ms'"),
])
def test_parse_bench_refuses_malformed_output(text, reason) -> None:
    with pytest.raises(RunFailedError, match="EV-BENCH runs=<n>") as e:
        parse_bench(text, source="host bench output")
    assert reason in str(e.value) and str(e.value).startswith("host bench output: ")


def test_parse_bench_reports_a_failed_run() -> None:
    with pytest.raises(RunFailedError, match="edgevit_run returned 3 on vector 17"):
        parse_bench("EV-ERROR 17 3\n")


def test_bench_result_keys_and_note() -> None:
    result = bench_result(parse_bench(GOOD), "this machine")
    assert set(MEASURED_KEYS) <= set(result)
    assert result["latency_ms_median"] == 0.652992 and result["latency_ms_p90"] == 0.718126
    assert result["threads"] == 2 and result["peak_rss_bytes"] == 1335296 and result["bench_runs"] == 200
    assert "measured on this machine" in result["latency_note"] and "2 threads" in result["latency_note"]
    assert bench_command(50) == ["50", "20"] and bench_command(5, 0, 3) == ["5", "0", "3"]


def test_only_runners_that_bench_take_bench_options() -> None:
    cpu = CpuTarget()
    host = get_runner("host", cpu, bench_runs=7, threads=2)
    assert (host.bench_runs, host.threads) == (7, 2)
    assert get_runner("host", cpu, bench_runs=None, threads=None).bench_runs == 200  # None: not given
    with pytest.raises(UserInputError, match=r"--bench-runs: the qemu runner does not bench \(emulated time means "
                                             r"nothing.*runners that can: host"):
        get_runner("qemu", cpu, bench_runs=10)
    with pytest.raises(UserInputError, match="--threads: the qemu runner does not bench"):
        get_runner("qemu", cpu, threads=2)
    mcu = get_target("mcu")
    with pytest.raises(UserInputError, match="--bench-runs / --threads: the host runner does not bench .*no runner "
                                             "of a mcu artifact measures latency"):
        get_runner("host", mcu, bench_runs=10, threads=1)
    with pytest.raises(UserInputError, match="--bench-runs must be a whole number >= 0"):
        get_runner("host", cpu, bench_runs=-1)
    with pytest.raises(UserInputError, match="--threads must be a whole number >= 1"):
        get_runner("host", cpu, threads=0)
