"""The vector unit's sequential scalar units (Divider, Isqrt) against Python integer maths."""

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from edgevit.lower.intmath import isqrt64
from edgevit.targets.fpga.rtl.divider import Divider
from edgevit.targets.fpga.rtl.isqrt import Isqrt
from edgevit.targets.fpga.rtl.vector_sim import run_scalar


def _divide(cases, **kw):
    dut = Divider(**kw)
    res = run_scalar(dut, {}, ["quotient", "remainder"], [{"dividend": a, "divisor": b} for a, b in cases])
    for (a, b), ((q, r), cycles) in zip(cases, res):
        assert (q, r) == divmod(a, b), (a, b)
        assert cycles == dut.cycles + 1
    return dut


def test_divider_edges_and_layernorm_range():
    cases = [(0, 1), (1, 1), (5, 7), ((1 << 32) - 1, 1), ((1 << 61) + (1 << 29), 1 << 30),
             ((1 << 61) + ((1 << 31) - 1 >> 1), (1 << 31) - 1), ((1 << 62) - 1, (1 << 31) - 1)]
    _divide(cases, quot_bits=32, steps=2)


@settings(max_examples=6, deadline=None)
@given(st.lists(st.tuples(st.integers(1, (1 << 32) - 1), st.integers(0, (1 << 64) - 1)), min_size=4, max_size=8),
       st.sampled_from([1, 2, 4]))
def test_divider_random(pairs, steps):
    cases = []
    for divisor, x in pairs:                            # quotient < 2^48, as softmax's reciprocal
        cases += [(x % (divisor << 48), divisor), ((255 << 40) + (divisor >> 1), divisor)]
    _divide(cases, quot_bits=48, steps=steps)


def test_divider_full_width_and_zero_divisor():
    dut = Divider(quot_bits=64, steps=4)
    res = run_scalar(dut, {}, ["quotient"], [{"dividend": (1 << 64) - 1, "divisor": 3},
                                              {"dividend": 12345, "divisor": 0}])
    assert res[0][0][0] == ((1 << 64) - 1) // 3
    assert res[1][0][0] == (1 << 64) - 1


@settings(max_examples=6, deadline=None)
@given(st.lists(st.integers(0, (1 << 62) - 1), min_size=4, max_size=10), st.sampled_from([1, 2, 4]))
def test_isqrt_random(xs, steps):
    xs = xs + [0, 1, 2, 3, 4, (1 << 62) - 1, (1 << 60), (1 << 31) ** 2 - 1]
    dut = Isqrt(steps=steps)
    res = run_scalar(dut, {}, ["root"], [{"x": x} for x in xs])
    for x, ((root,), cycles) in zip(xs, res):
        assert root == math.isqrt(x) == int(isqrt64(np.int64(x)))
        assert cycles == 32 // steps + 1
