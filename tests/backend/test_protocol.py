"""The EV protocol parser: well-formed output round-trips, every malformation is a clear error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.backend.protocol import ProtocolError, format_ev_line, parse_output


def _text(outputs: list[bytes], ticks: list[int] | None = None, end: int | None = None) -> str:
    ticks = ticks or [0] * len(outputs)
    lines = [format_ev_line(i, t, o) for i, (t, o) in enumerate(zip(ticks, outputs))]
    return "\n".join(lines + [f"EV-END {len(outputs) if end is None else end}"]) + "\n"


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 16).flatmap(lambda size: st.lists(st.binary(min_size=size, max_size=size), min_size=1,
                                                        max_size=6)),
       st.integers(0, 2**40))
def test_round_trip(outputs, ticks):
    run = parse_output(_text(outputs, [ticks + i for i in range(len(outputs))]), len(outputs), len(outputs[0]))
    assert [v.data for v in run.vectors] == outputs
    assert run.ticks == [ticks + i for i in range(len(outputs))] and run.end_count == len(outputs)


def test_spaced_hex_crlf_and_noise_lines_are_accepted():
    text = "booting...\r\nEV 0 12 0a ff 80\r\nsome debug\r\nEV 1 13 0aff81\r\nEV-END 2\r\n"
    run = parse_output(text, 2, 3)
    assert [v.data for v in run.vectors] == [b"\x0a\xff\x80", b"\x0a\xff\x81"]
    assert run.ticks == [12, 13]


GOOD = ["EV 0 5 0102", "EV 1 6 0304"]


@pytest.mark.parametrize("lines, count, needle", [
    (["EV 0 5 0102", "EV 1 6 03zz", "EV-END 2"], 2, "hex"),
    (["EV 0 5 010", "EV-END 1"], 1, "hex"),
    (["EV 0 5 010203", "EV-END 1"], 1, "3 bytes, expected 2"),
    (["EV 0", "EV-END 1"], 1, "needs an index"),
    (["EV 0 5", "EV-END 1"], 1, "0 bytes, expected 2"),
    (["EV 0 -5 0102", "EV-END 1"], 1, "decimal"),
    (["EV x 5 0102", "EV-END 1"], 1, "decimal"),
    (["EV 1 5 0102", "EV-END 1"], 1, "expected vector index 0, got 1"),
    (["EV 0 5 0102", "EV 0 5 0102", "EV-END 2"], 2, "expected vector index 1"),
    (GOOD, 2, "without EV-END after 2 of 2"),
    ([], 2, "no EV line"),
    (GOOD + ["EV-END 3"], 2, "EV-END says 3"),
    (GOOD + ["EV-END 2"], 3, "3 were requested"),
    (GOOD + ["EV-END two"], 2, "one decimal count"),
    (GOOD + ["EV-END 2", "EV 2 1 0102"], 2, "after EV-END"),
    (["EV 0 5 01 2", "EV-END 1"], 1, "two hex digits"),
])
def test_malformed_output_is_a_clear_error(lines, count, needle):
    text = "\n".join(["hello"] + lines) + "\n"
    with pytest.raises(ProtocolError) as e:
        parse_output(text, count, 2, source="qemu output")
    msg = str(e.value)
    assert needle in msg and msg.startswith("qemu output")
    assert "last lines of its output" in msg and "hello" in msg  # the tail is shown
    assert e.value.exit_code == 1
