"""The overlay's top level under Verilator against the functional simulator on the same DDR image:
a hand-written stream (LOAD into ACT / WGT / PARAM with unaligned rows and a 4 KB crossing, COPY,
GEMM, TILE, REQUANT, two STOREs, FINISH) under random DDR latency and back-pressure, and one-kernel
Programs compiled for the overlay (every vector instruction family), bit-exact DDR and counters that
add up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.targets.fpga.isa import Insn, encode_stream
from tests.targets.fpga.top_helpers import TOP_CFG, assert_counters_add_up, assert_same_ddr, model_or_skip, run_both

DATA, PARAMS, OUT = 8192, 20000, 24576
DDR_BYTES = 32768


def hand_stream(rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """(stream, DDR image) of the hand-written stream; random data, identity-like requantization params."""
    bm, bk, tb = TOP_CFG.bm, TOP_CFG.bk, TOP_CFG.tile_bytes
    ddr = np.zeros(DDR_BYTES, dtype=np.uint8)
    ddr[DATA:PARAMS] = rng.integers(0, 256, PARAMS - DATA, dtype=np.uint8)
    header = [int(rng.integers(-3, 4)), -(1 << 31), (1 << 31) - 1, 0]     # zp, qmin, qmax (int32 output)
    chan = []
    for _ in range(bm):
        chan += [int(rng.integers(-1000, 1000)), 1 << 30, 1]             # bias, multiplier, shift: ~ACC + bias
    ddr[PARAMS:PARAMS + 4 * len(header + chan)] = np.asarray(header + chan, dtype="<i4").view(np.uint8)
    insns = [
        Insn("LOAD", mem=0, sram=5, dram=DATA + 3, rows=3, row_bytes=37, dram_stride=101, sram_stride=50),
        Insn("LOAD", mem=0, sram=300, dram=12288 - 77, rows=2, row_bytes=300, dram_stride=333, sram_stride=310),
        Insn("LOAD", mem=1, sram=1, dram=DATA + 1000, rows=2, row_bytes=tb, dram_stride=tb + 8),
        Insn("LOAD", mem=2, sram=0, dram=PARAMS, rows=1, row_bytes=4 * len(header + chan), dram_stride=0,
             push_next=1),
        Insn("COPY", src=7, src_stride=50, dst=2000, dst_stride=41, rows=3, row_bytes=33, pop_prev=1, push_next=1),
        Insn("GEMM", reset=1, wgt=1, acc=0, acc_stride=1, inp=5, inp_stride=7, count=9),
        Insn("GEMM", reset=0, unsigned=1, wgt=2, acc=2, acc_stride=0, inp=300, inp_stride=13, count=4),
        Insn("TILE", transpose=1, wgt=3, src=300, stride=19, rows=bk, cols=bm - 3),
        Insn("TILE", transpose=0, wgt=4, src=5, stride=50, rows=3, cols=bk - 1),
        Insn("GEMM", reset=1, wgt=3, acc=9, acc_stride=1, inp=320, inp_stride=3, count=3),
        Insn("GEMM", reset=1, wgt=4, acc=12, acc_stride=1, inp=2000, inp_stride=41, count=2),
        Insn("REQUANT", dtype=2, acc=0, dst=3000, dst_stride=40, rows=14, cols=bm, param=0, chan=4, push_next=1),
        Insn("STORE", sram=2000, dram=OUT + 5, rows=3, row_bytes=33, dram_stride=35, sram_stride=41, pop_prev=1),
        Insn("STORE", sram=3000, dram=OUT + 200, rows=14, row_bytes=4 * bm, dram_stride=4 * bm + 3, sram_stride=40,
             pop_prev=1, push_prev=1),
        Insn("FINISH", pop_next=1),
    ]
    stream = encode_stream(insns)
    ddr[:len(stream)] = np.frombuffer(stream, dtype=np.uint8)
    return stream, ddr


def test_hand_written_stream_is_bit_exact_with_fsim() -> None:
    exe = model_or_skip()
    stream, ddr = hand_stream(np.random.default_rng(0))
    want, got = run_both(TOP_CFG, exe, stream, ddr)
    assert_same_ddr(want, got.ddr)
    assert np.any(want[OUT:OUT + 600] != 0)   # the stores wrote something
    assert_counters_add_up(got.counters)
    assert got.counters["GEMM_BUSY"] >= 9 + 4 + 3 + 2 and got.counters["VECTOR_BUSY"] > 0


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), stall=st.sampled_from([0, 10, 40]), latency=st.integers(1, 90))
def test_random_ddr_latency_and_back_pressure(seed, stall, latency) -> None:
    exe = model_or_skip()
    stream, ddr = hand_stream(np.random.default_rng(seed))
    want, got = run_both(TOP_CFG, exe, stream, ddr, stall_percent=stall, seed=seed, latency=latency)
    assert_same_ddr(want, got.ddr)
    assert_counters_add_up(got.counters)


def test_latency_shows_in_the_cycle_count() -> None:
    exe = model_or_skip()
    stream, ddr = hand_stream(np.random.default_rng(1))
    fast = run_both(TOP_CFG, exe, stream, ddr, latency=1)[1].counters
    slow = run_both(TOP_CFG, exe, stream, ddr, latency=80)[1].counters
    assert slow["CYCLES"] > fast["CYCLES"] + 80
    assert slow["STALL_DMA"] > fast["STALL_DMA"]


def _cases():
    from tests.backend.kernels import elementwise_cases as ew
    from tests.backend.kernels import gemm_cases as gemm

    rng = np.random.default_rng(7)
    return {
        "linear+gelu (GEMM, REQUANT with GELU)": (gemm.linear_int8_case(rng, 5, 37, 11, 8, True), False),
        "patch embedding (strided LOAD)": (gemm.patch_embed_int8_case(rng, 3, (2, 3), 2, 10, "int16"), False),
        "attention (TILE, SOFTMAX)": (ew.attention_case(rng, 7, 2, 5), False),
        "layernorm": (ew.layernorm_case(rng, 4, 19, "int16"), False),
        "add": (ew.add_case(rng, (3, 21), "int8", "int8", "int16"), True),
        "cls concat (COPY)": (ew.cls_concat_case(rng, 4, 9, "int8"), False),
        "mean pool (MEANPOOL)": (ew.pool_case(rng, 5, 12, "int16", "mean", "int8"), False),
        "gelu (LUT)": (ew.gelu_case(rng, (3, 17)), False),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_compiled_kernel_is_bit_exact(name) -> None:
    from edgevit.targets.fpga.compiler import compile_program, ddr_image, read_output
    from tests.targets.fpga.comp_helpers import case_program, reference

    exe = model_or_skip()
    case, twice = _cases()[name]
    program, x = case_program(case, twice)
    compiled = compile_program(program, TOP_CFG)
    ddr = ddr_image(compiled, x)
    offset = int(compiled.memory_map["regions"]["instructions"]["offset"])
    want, got = run_both(TOP_CFG, exe, compiled.stream, ddr, insn_offset=offset)
    assert_same_ddr(want, got.ddr)
    assert np.array_equal(read_output(compiled, got.ddr), reference(program, x))
    assert_counters_add_up(got.counters)


def test_merge_beyond_the_engine_is_refused_before_building() -> None:
    from edgevit.backend.errors import RunFailedError
    from edgevit.targets.fpga.runners.verilator import check_stream

    ok = encode_stream([Insn("MERGE", rows=256, cols=8, r=1, heads=1, head_dim=64), Insn("FINISH")])
    assert len(check_stream(ok)["merge"]) == 1
    for fields in ({"rows": 257, "head_dim": 8}, {"rows": 20, "head_dim": 65}):
        stream = encode_stream([Insn("MERGE", cols=8, r=1, heads=1, **fields), Insn("FINISH")])
        with pytest.raises(RunFailedError, match="MERGE engine holds at most.*--runner fsim"):
            check_stream(stream)
