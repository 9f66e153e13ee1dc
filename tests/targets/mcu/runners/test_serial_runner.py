"""The serial runner stub: fits the Runner interface, fails clearly; its line reader works."""

from __future__ import annotations

import io

import pytest

from edgevit.backend.errors import RunTimeoutError
from edgevit.backend.protocol import parse_output
from edgevit.backend.run import run_artifact
from edgevit.backend.runner import Runner, get_runner
from edgevit.backend.target import get_target
from edgevit.targets.mcu.runners.serial import SerialNotImplementedError, read_ev_text, run_request


def test_serial_runner_is_a_runner_that_says_not_implemented(int8_artifact):
    runner = get_runner("serial", get_target("mcu"), port="/dev/ttyACM0")
    assert isinstance(runner, Runner) and runner.port == "/dev/ttyACM0"
    with pytest.raises(SerialNotImplementedError, match="not implemented yet.*--runner qemu") as e:
        run_artifact(int8_artifact, "serial", progress=False)
    assert e.value.exit_code == 2


def test_read_ev_text_feeds_the_protocol_parser():
    stream = io.BytesIO(b"EV-READY 5\r\nEV 0 7 0102\r\nEV 1 8 0304\r\nEV-END 2\r\nEV 9 9 99\r\n")
    text = read_ev_text(stream.readline, timeout=5)
    assert parse_output(text, 2, 2).ticks == [7, 8]
    assert run_request(2) == b"RUN 2\n"


def test_read_ev_text_times_out_with_tail():
    clock = iter(range(100))
    stream = io.BytesIO(b"EV 0 7 0102\n")
    with pytest.raises(RunTimeoutError, match=r"no EV-END line within 3 s(.|\n)*EV 0 7 0102"):
        read_ev_text(stream.readline, timeout=3, clock=lambda: next(clock))
