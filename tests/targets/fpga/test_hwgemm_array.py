"""The GEMM array alone (rtl/gemm_array.py) in amaranth.sim: the weight tile loaded one row a cycle, then
steps whose ACC writes carry sum_k W[m][k] * x[k] LATENCY cycles later, one a cycle."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("amaranth", reason="the fpga extra (make setup) is not installed")

from amaranth.sim import Simulator  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgevit.targets.fpga.rtl.gemm_array import LATENCY, GemmArray  # noqa: E402

BM, BK = 4, 16


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), unsigned=st.integers(0, 1), steps=st.integers(1, 5))
def test_row_loaded_tile_and_pipelined_steps(seed, unsigned, steps):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (BM, BK)).astype(np.int8)
    xs = rng.integers(0, 256, (steps, BK)).astype(np.uint8)
    arr = GemmArray(BM, BK)
    sim = Simulator(arr)
    sim.add_clock(1e-8)
    writes = []

    async def bench(ctx):
        for r in range(BM):  # one row of bk bytes a cycle
            ctx.set(arr.w_row_load, 1)
            ctx.set(arr.w_row, r)
            ctx.set(arr.w_row_data, int.from_bytes(w[r].tobytes(), "little"))
            await ctx.tick()
        ctx.set(arr.w_row_load, 0)
        assert ctx.get(arr.tile) == int.from_bytes(w.tobytes(), "little")
        for cycle in range(steps + LATENCY + 2):
            valid = cycle < steps
            ctx.set(arr.in_valid, valid)
            ctx.set(arr.in_reset, 1)
            ctx.set(arr.in_unsigned, unsigned)
            ctx.set(arr.in_acc, 10 + cycle)
            ctx.set(arr.in_data, int.from_bytes(xs[cycle].tobytes(), "little") if valid else 0)
            if ctx.get(arr.acc_wr_en):
                writes.append((cycle, ctx.get(arr.acc_wr_addr), ctx.get(arr.acc_wr_data)))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert [c for c, _, _ in writes] == [i + LATENCY - 1 for i in range(steps)]  # one write a cycle
    for i, (_, addr, data) in enumerate(writes):
        x = xs[i].astype(np.int64) if unsigned else xs[i].view(np.int8).astype(np.int64)
        want = w.astype(np.int64) @ x
        got = [((data >> (32 * m)) & 0xFFFFFFFF) for m in range(BM)]
        got = [g - (1 << 32) if g >= 1 << 31 else g for g in got]
        assert addr == 10 + i and got == list(want)
