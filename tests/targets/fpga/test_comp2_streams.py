"""The fast-stream changes of the FPGA compiler, each checked for its structure AND bit-exactness on the
functional simulator (all three module orders): multi-tile weight LOADs in schedule order, weights kept
resident across row blocks, REQUANTs over groups of tile columns, the score table pinned in PARAM."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.targets.fpga.compiler import compile_program
from edgevit.targets.fpga.compiler.common import ceil_div
from edgevit.targets.fpga.compiler.emit_gemm import MAX_BATCH, acc_group
from edgevit.targets.fpga.compiler.tir_gemm import row_block
from edgevit.targets.fpga.isa import MEM_CODES
from tests.backend.kernels import gemm_cases as gemm
from tests.targets.fpga.comp_helpers import (assert_bit_exact, case_program, overlay, reference, run_compiled,
                                             zoo_program)

SETTINGS = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def wgt_loads(compiled) -> list:
    return [i for i in compiled.insns if i.op == "LOAD" and i.mem == MEM_CODES["wgt"]]


def linear(seed: int, n: int, k: int, m: int, gelu: bool = False):
    return case_program(gemm.linear_int8_case(np.random.default_rng(seed), n, k, m, gelu=gelu))


@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 80), k=st.integers(1, 120), m=st.integers(1, 60),
       cfg_name=st.sampled_from(["pynq-z2", "tiny"]))
def test_weight_loads_are_multi_tile(seed, n, k, m, cfg_name) -> None:
    cfg = overlay(cfg_name)
    program, x = linear(seed, n, k, m)
    compiled = compile_program(program, cfg)
    loads = wgt_loads(compiled)
    gemms = [i for i in compiled.insns if i.op == "GEMM"]
    tiles = ceil_div(k, cfg.bk) * ceil_div(m, cfg.bm)
    loaded = sum(i.rows for i in loads)
    assert loaded == (tiles if tiles <= cfg.wgt_tiles // 2 else len(gemms))
    assert all(i.row_bytes == i.dram_stride == cfg.tile_bytes and i.sram + i.rows <= cfg.wgt_tiles for i in loads)
    per_load = max(1, min(MAX_BATCH, cfg.wgt_tiles // 4))
    assert len(loads) <= 2 + ceil_div(loaded, per_load)
    # one row block: the LOADs read the weight image front to back (tiles stored in schedule order)
    if len(gemms) == tiles:
        assert all(b.dram == a.dram + a.rows * cfg.tile_bytes for a, b in zip(loads, loads[1:]))
    got = run_compiled(compiled, cfg, x, orders=True)
    assert np.array_equal(got, reference(program, x))


def test_small_weights_stay_resident_across_row_blocks() -> None:
    cfg = overlay("tiny")                      # 32 rows a row block, 4 WGT slots
    n, k, m = 3 * row_block(1000, cfg) - 5, 20, 4
    program, x = linear(3, n, k, m)
    compiled = compile_program(program, cfg)
    gemms = [i for i in compiled.insns if i.op == "GEMM"]
    assert len(gemms) == 3 * 2 and sum(i.rows for i in wgt_loads(compiled)) == 2
    assert_bit_exact(program, cfg, [x])


@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 80), m=st.integers(1, 120), gelu=st.booleans(),
       cfg_name=st.sampled_from(["pynq-z2", "tiny"]))
def test_one_requant_per_group_of_tile_columns(seed, n, m, gelu, cfg_name) -> None:
    cfg = overlay(cfg_name)
    program, x = linear(seed, n, 24, m, gelu)
    compiled = compile_program(program, cfg)
    rb, mbs = row_block(n, cfg), ceil_div(m, cfg.bm)
    blocks = [min(rb, n - n0) for n0 in range(0, n, rb)]
    want = sum(ceil_div(mbs, acc_group(rows, mbs, cfg)) for rows in blocks)
    requants = [i for i in compiled.insns if i.op == "REQUANT"]
    assert len(requants) == want and all(i.gelu == int(gelu) for i in requants)
    assert sum(i.rows * i.cols for i in requants) == n * m
    got = run_compiled(compiled, cfg, x, orders=True)
    assert np.array_equal(got, reference(program, x))


def test_score_table_is_loaded_once_and_pinned() -> None:
    """Pinned at the top of PARAM when it fits a quarter of it; else reloaded per kernel in the ring."""
    program = zoo_program("fmnist-tiny")
    attn = [k for k in program.kernels if k.op == "attention"]
    table_words = program.kernel_consts(attn[0]).get("score_lut").size
    assert len(attn) >= 2
    # the tiny overlay's PARAM (2048 words) cannot spare the 1024-word table: loaded per kernel in the ring
    for cfg_name, pinned in (("pynq-z2", True), ("tiny", False)):
        cfg = overlay(cfg_name)
        compiled = compile_program(program, cfg)
        table_loads = [i for i in compiled.insns if i.op == "LOAD" and i.mem == MEM_CODES["param"]
                       and i.row_bytes == 4 * table_words]
        assert len(table_loads) == (1 if pinned else len(attn))
        assert (table_loads[0].sram == cfg.param_words - table_words) == pinned
    # bit-exactness of this program with the pinned table: test_comp_models (all three orders)
