"""edgevit's pytest plugin (edgevit/pytest_plugin.py), loaded through its `pytest11` entry point in
pytest subprocesses (pytester): option parsing, the fixtures on real runners, skips, and the
example users copy (examples/ci-latency)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgevit.pytest_plugin import RunnerChoice, latency_of, parse_runner_choice

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EDGEVIT = shutil.which("edgevit") or str(Path(sys.executable).parent / "edgevit")
needs_qemu = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed")
needs_gcc = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("make")), reason="gcc / make not installed")


@pytest.mark.parametrize("text, expected", [
    (None, RunnerChoice(None)),
    ("qemu", RunnerChoice("qemu", {}, "qemu")),
    ("host", RunnerChoice("host", {}, "host")),
    ("serial:/dev/ttyACM0", RunnerChoice("serial", {"port": "/dev/ttyACM0"}, "serial:/dev/ttyACM0")),
    ("serial:socket://127.0.0.1:5555", RunnerChoice("serial", {"port": "socket://127.0.0.1:5555"},
                                                    "serial:socket://127.0.0.1:5555")),
    ("ssh:rpi4.local", RunnerChoice("ssh", {"ssh_host": "rpi4.local"}, "ssh:rpi4.local")),
    ("ssh:pi@10.0.0.7:2222", RunnerChoice("ssh", {"ssh_host": "10.0.0.7", "ssh_user": "pi", "ssh_port": 2222},
                                          "ssh:pi@10.0.0.7:2222")),
])
def test_runner_choices_parse(text, expected):
    assert parse_runner_choice(text) == expected


@pytest.mark.parametrize("text, message", [
    ("serial", "the serial runner needs the board's port"),
    ("qemu:fast", "only serial:PORT and ssh:HOST take a value"),
    ("ssh:pi@host:twentytwo", r"write ssh:\[USER@\]HOST\[:PORT\]"),
    (":5555", "expected a runner name"),
])
def test_bad_runner_choices_are_usage_errors(text, message):
    with pytest.raises(pytest.UsageError, match=message):
        parse_runner_choice(text)


def test_latency_prefers_a_measurement_over_the_estimate():
    assert latency_of({"latency_ms_median": 12.5, "estimated_latency_ms": 20.0}) == (12.5, "measured")
    assert latency_of({"latency_ms_median": None, "estimated_latency_ms": 20.0}) == (20.0, "estimated")
    assert latency_of({"estimated_latency_ms": None}) == (None, None)


# --- through pytest, with the plugin loaded by its entry point ----------------------------------------------


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A small real MCU artifact for stm32f746-disco (3 vectors)."""
    from tests.targets.mcu.small_artifact import write_small_artifact

    return write_small_artifact(tmp_path_factory.mktemp("plugin") / "adds", "stm32f746-disco", vectors=3)


USER_TEST = '''
import pytest

ARTIFACT = {artifact!r}


def test_run(edgevit_run, edgevit_runner):
    run = edgevit_run(ARTIFACT)
    print("RESULT", edgevit_runner.name, run.runner, run.matches, run.count, run.latency_kind, run.latency_ms,
          run.instructions, ",".join(sorted(run.memory)), run.memory["sram"].used, run.raw["profile"])
    assert run.matches == run.count


def test_count(edgevit_run):
    assert edgevit_run(ARTIFACT, count=2).count == 2
'''


def _result_line(outcome) -> list[str]:
    found = [re.search(r"RESULT (.*)", ln) for ln in outcome.outlines]
    return next(f for f in found if f).group(1).split()


def test_the_plugin_is_registered_and_adds_only_its_options(pytester):
    pytester.makepyfile(test_plain="def test_nothing():\n    assert True\n")
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=1)
    assert not any("edgevit:" in ln for ln in outcome.outlines)  # no header line without --edgevit-runner
    helptext = "\n".join(pytester.runpytest_subprocess("--help").outlines)
    for option in ("--edgevit-runner", "--edgevit-count", "--edgevit-timeout", "--edgevit-flash", "--edgevit-baud"):
        assert option in helptext


@pytest.mark.parametrize("args, message", [
    (["--edgevit-runner", "serial"], "the serial runner needs the board's port"),
    (["--edgevit-runner", "qemu", "--edgevit-flash"], "--edgevit-flash only apply to --edgevit-runner serial:PORT"),
    (["--edgevit-count", "0"], "--edgevit-count must be at least 1"),
])
def test_bad_options_stop_pytest_before_any_test(pytester, args, message):
    pytester.makepyfile(test_plain="def test_nothing():\n    assert True\n")
    outcome = pytester.runpytest_subprocess(*args)
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    assert message in "\n".join(outcome.errlines)


@needs_gcc
def test_host_runner_gives_no_latency_but_checks_every_vector(pytester, artifact):
    pytester.makepyfile(test_user=USER_TEST.format(artifact=str(artifact)))
    outcome = pytester.runpytest_subprocess("-s", "--edgevit-runner", "host", "-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2)
    assert "edgevit: runner host" in outcome.outlines
    chosen, runner, matches, count, kind, latency, instructions, pools, sram, profile = _result_line(outcome)
    assert (chosen, runner, matches, count, kind, latency, instructions) == ("host", "host", "3", "3", "None", "None",
                                                                              "None")
    assert pools == "flash,sram" and profile == "stm32f746-disco" and int(sram) > 0


@needs_qemu
def test_default_runner_is_the_artifacts_and_qemu_estimates_latency(pytester, artifact):
    from edgevit.backend.artifact import load_artifact
    from edgevit.backend.target import get_target
    from edgevit.backend.artifact_program import load_program

    pytester.makepyfile(test_user=USER_TEST.format(artifact=str(artifact)))
    outcome = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2)
    chosen, runner, matches, count, kind, latency, instructions, _, sram, _ = _result_line(outcome)
    assert (chosen, runner, matches, count, kind) == ("None", "qemu", "3", "3", "estimated")
    assert float(latency) > 0 and int(instructions) > 0
    art = load_artifact(artifact)
    pools = get_target("mcu").estimate(load_program(art), art.profile()).pools
    assert int(sram) == next(p.used for p in pools if p.name == "sram")  # what `edgevit compile` reported


def test_a_runner_of_another_target_skips_with_the_reason(pytester, artifact):
    pytester.makepyfile(test_user=USER_TEST.format(artifact=str(artifact)))
    outcome = pytester.runpytest_subprocess("-rs", "--edgevit-runner", "ssh:board.local", "-p", "no:cacheprovider")
    outcome.assert_outcomes(skipped=2)
    assert any("--edgevit-runner ssh:board.local: the ssh runner cannot run" in ln and "a mcu artifact" in ln
               for ln in outcome.outlines)


def test_missing_runner_tools_skip_with_the_install_hint(pytester, artifact, monkeypatch):
    empty = pytester.mkdir("empty-path")
    monkeypatch.setenv("PATH", str(empty))  # no make, no arm-none-eabi-gcc, no qemu-system-arm
    pytester.makepyfile(test_user=USER_TEST.format(artifact=str(artifact)))
    outcome = pytester.runpytest_subprocess("-rs", "--edgevit-runner", "qemu", "-p", "no:cacheprovider")
    outcome.assert_outcomes(skipped=2)
    assert any("--edgevit-runner qemu: the qemu runner needs" in ln and "qemu-system-arm" in ln
               and "apt-get install" in ln for ln in outcome.outlines)


def test_a_missing_board_fails_rather_than_skips(pytester, artifact):
    pytester.makepyfile(test_user=USER_TEST.format(artifact=str(artifact)))
    outcome = pytester.runpytest_subprocess("--edgevit-runner", "serial:/dev/ttyEDGEVIT-none", "-p",
                                            "no:cacheprovider")
    outcome.assert_outcomes(failed=2)
    assert "/dev/ttyEDGEVIT-none" in "\n".join(outcome.outlines)


@needs_qemu
@pytest.mark.slow
def test_serial_runner_on_an_emulated_board(pytester, artifact):
    """--edgevit-runner serial:socket://... against `edgevit emulate` (the UART firmware on QEMU)."""
    emulator = subprocess.Popen([EDGEVIT, "emulate", str(artifact), "--port", "0"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = None
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            line = emulator.stdout.readline()
            assert line, "edgevit emulate stopped before listening"
            found = re.search(r"socket://127\.0\.0\.1:\d+", line)
            url = found.group(0) if found else None
        pytester.makepyfile(test_user=USER_TEST.format(artifact=str(artifact)))
        outcome = pytester.runpytest_subprocess("-s", "--edgevit-runner", f"serial:{url}", "-p", "no:cacheprovider")
        outcome.assert_outcomes(passed=2)
        chosen, runner, matches, count, kind = _result_line(outcome)[:5]
        assert (chosen, runner, matches, count, kind) == ("serial", "serial", "3", "3", "estimated")
    finally:
        os.killpg(emulator.pid, signal.SIGINT)
        try:
            emulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(emulator.pid, signal.SIGKILL)
            emulator.wait()


@needs_qemu
@pytest.mark.slow
def test_the_ci_latency_example_passes_on_qemu():
    r = subprocess.run([sys.executable, "-m", "pytest", "examples/ci-latency", "--edgevit-runner", "qemu", "-p",
                        "no:cacheprovider", "-q", "-rs"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 passed" in r.stdout
