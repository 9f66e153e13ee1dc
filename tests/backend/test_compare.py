"""Output comparison (bit-exact int8, 1e-4 relative float) and the instruction/latency figures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgevit.backend.run import outputs_match, timing
from edgevit.backend.runner import Runner


@settings(max_examples=20, deadline=None)
@given(arrays(np.int8, st.tuples(st.integers(1, 6), st.integers(1, 12))), st.data())
def test_int8_bit_exact(ref, data):
    ok, err = outputs_match(ref.copy(), ref)
    assert ok.all() and err == 0
    i = data.draw(st.integers(0, ref.shape[0] - 1))
    j = data.draw(st.integers(0, ref.shape[1] - 1))
    out = ref.copy()
    out[i, j] = np.int8(int(out[i, j]) ^ 1)
    ok, err = outputs_match(out, ref)
    assert list(np.flatnonzero(~ok)) == [i] and err == 1


@settings(max_examples=20, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(2, 10)),
              elements=st.floats(-100, 100, width=32)).filter(lambda a: (np.abs(a).max(axis=1) > 1e-3).all()),
       st.floats(1e-3, 1e3))
def test_float_relative_tolerance_is_scale_free(ref, scale):
    ref = (ref * np.float32(scale)).astype(np.float32)
    span = np.abs(ref).max(axis=1, keepdims=True)
    assert outputs_match((ref + 0.5e-4 * span).astype(np.float32), ref)[0].all()
    assert not outputs_match((ref + 3e-4 * span).astype(np.float32), ref)[0].any()
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert not outputs_match(nan, ref)[0][0]


class _CountingRunner(Runner):
    """A runner whose ticks count 40 instructions each, except on the profile named "uncalibrated"."""

    name = "counting"
    counts_instructions = True
    tick_name = "cycle"
    latency_note = "estimate: counted by the test runner"

    def tools(self, profile):
        return []

    def instructions_per_tick(self, profile):
        return None if profile.name == "uncalibrated" else 40.0


class _QuietRunner(_CountingRunner):
    name = "quiet"
    counts_instructions = False


def test_timing_figures_and_notes_come_from_the_runner():
    profile = SimpleNamespace(name="board", clock_hz=200e6)
    t = timing([100, 102], _CountingRunner(), profile)
    assert t["instructions_per_inference"] == 4040 and t["estimated_latency_ms"] == 4040 / 200e6 * 1e3
    assert t["ticks"] == [100, 102] and t["latency_note"] == "estimate: counted by the test runner"
    unknown = timing([100], _CountingRunner(), SimpleNamespace(name="uncalibrated", clock_hz=200e6))
    assert unknown["instructions_per_inference"] is None and "'uncalibrated'" in unknown["latency_note"]
    quiet = timing([0], _QuietRunner(), profile)
    assert quiet["estimated_latency_ms"] is None and quiet["instructions_per_tick"] is None
    assert quiet["latency_note"] == "no instruction count: the quiet runner does not count instructions"
    zero = timing([0, 0], _CountingRunner(), profile)
    assert zero["instructions_per_inference"] is None and zero["latency_note"].endswith("reported 0 cycles")


class _CycleRunner(_QuietRunner):
    name = "cycles"
    ticks_are_cycles = True
    latency_note = "measured: test cycles"

    def cycle_clock_hz(self, profile):
        return 16e6  # the firmware runs the core at 16 MHz, not the profile's 200 MHz


def test_cycles_are_turned_into_latency_at_the_clock_the_runner_names():
    profile = SimpleNamespace(name="board", clock_hz=200e6)
    t = timing([16_000, 32_000], _CycleRunner(), profile)
    assert t["cycles_per_inference"] == 24_000 and t["latency_ms"] == 1.5  # at 16 MHz
    assert t["latency_ms_median"] == 1.5 and t["latency_ms_min"] == 1.0 and t["latency_note"] == "measured: test cycles"
    assert t["estimated_latency_ms"] is None
