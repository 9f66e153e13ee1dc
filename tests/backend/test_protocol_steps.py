"""EV-STEPS lines (the opt-in per-step profile, -DEDGEVIT_PROFILE_STEPS): parsed into
DeviceRun.step_ticks; malformed ones are clear errors; runs without them parse as before."""

from __future__ import annotations

import pytest

from edgevit.backend.protocol import ProtocolError, parse_output

PROFILED = "EV 0 9 0102\nEV-STEPS 0 1 2 6\nEV 1 10 0304\r\nEV-STEPS 1 2 2 6\r\nEV-END 2\n"


def test_step_lines_are_exposed_per_vector():
    run = parse_output(PROFILED, 2, 2)
    assert run.step_ticks == ((1, 2, 6), (2, 2, 6)) and run.ticks == [9, 10]
    assert [v.data for v in run.vectors] == [b"\x01\x02", b"\x03\x04"]


def test_runs_without_step_lines_have_none():
    assert parse_output("EV 0 9 0102\nEV-END 1\n", 1, 2).step_ticks == ()


@pytest.mark.parametrize("text, needle", [
    ("EV 0 9 0102\nEV-STEPS 0 1 2\nEV 1 9 0102\nEV-END 2\n", "vector 1 has no EV-STEPS line"),
    ("EV 0 9 0102\nEV 1 9 0102\nEV-STEPS 1 1 2\nEV-END 2\n", "must follow that vector's EV line once"),
    ("EV-STEPS 0 1 2\nEV 0 9 0102\nEV 1 9 0102\nEV-END 2\n", "must follow that vector's EV line once"),
    ("EV 0 9 0102\nEV-STEPS 0 1 2\nEV-STEPS 0 1 2\nEV 1 9 0102\nEV-END 2\n", "once"),
    ("EV 0 9 0102\nEV-STEPS 0 1 2\nEV 1 9 0102\nEV-STEPS 1 1 2 3\nEV-END 2\n", "3 steps, earlier lines had 2"),
    ("EV 0 9 0102\nEV-STEPS 0 1 x\nEV 1 9 0102\nEV-END 2\n", "one decimal tick count per plan step"),
    ("EV 0 9 0102\nEV-STEPS 0\nEV 1 9 0102\nEV-END 2\n", "one decimal tick count per plan step"),
    ("EV 0 9 0102\nEV-STEPS 0 1\nEV 1 9 0102\nEV-STEPS 1 1\nEV-END 2\nEV-STEPS 2 1\n", "after EV-END"),
])
def test_malformed_step_lines_are_clear_errors(text, needle):
    with pytest.raises(ProtocolError) as e:
        parse_output(text, 2, 2, source="qemu output")
    assert needle in str(e.value) and "qemu output" in str(e.value)
