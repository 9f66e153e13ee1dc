"""Output comparison (bit-exact int8, 1e-4 relative float) and the instruction/latency figures."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgevit.backend.protocol import DeviceRun, VectorOutput
from edgevit.backend.run import outputs_match, timing


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


def _run(ticks):
    return DeviceRun(tuple(VectorOutput(i, t, b"") for i, t in enumerate(ticks)), len(ticks))


def test_timing_figures_and_notes():
    t = timing(_run([100, 102]), 40.0, 200e6, "qemu", "mps2-an500")
    assert t["instructions_per_inference"] == 4040 and t["estimated_latency_ms"] == 4040 / 200e6 * 1e3
    assert t["ticks"] == [100, 102] and "estimate" in t["latency_note"]
    unknown = timing(_run([100]), None, 200e6, "qemu", "mps2-an505")
    assert unknown["instructions_per_inference"] is None and "mps2-an505" in unknown["latency_note"]
    host = timing(_run([0]), None, 200e6, "host", None)
    assert host["estimated_latency_ms"] is None and "does not count" in host["latency_note"]
    zero = timing(_run([0, 0]), 40.0, 200e6, "qemu", "mps2-an500")
    assert zero["instructions_per_inference"] is None and "0 SysTick ticks" in zero["latency_note"]
