"""The driver (model.c, weights.c, edgevit_model.h) on small Programs: generated C compiled with
-Wall -Wextra -Werror (host gcc and arm-none-eabi-gcc) and run through the test main, outputs
compared with the reference interpreter (bit-exact int8, 1e-4 float)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.lower.program import Kernel
from edgevit.backend.kernels.base import Arg, KernelCode
from edgevit.backend import cdriver
from edgevit.targets.mcu import driver
from edgevit.targets.mcu.emit import emit_artifact
from edgevit.targets.mcu.target import McuTarget
from edgevit.backend.planner import Buffer
from tests.targets.mcu.helpers import (add_chain_program, assert_outputs_match, build_firmware, chain_plan, needs_arm,
                                       needs_qemu, run_host, run_qemu, vectors_for)

def real_plan(program, profile):
    """The MCU target's memory plan."""
    return McuTarget().plan(program, profile)


@pytest.mark.parametrize("dtype", ["int8", "float32"])
@pytest.mark.parametrize("chunk", [4, 10])
def test_chain_with_and_without_tail_matches_reference(tmp_path, profile, dtype, chunk) -> None:
    program = add_chain_program(dtype, rows=10, dim=5, depth=3, seed=1)
    vectors = vectors_for(program, 4, seed=2)
    emit_artifact(program, profile, chain_plan(program, chunk, 10), tmp_path, vectors=vectors)
    model_c = (tmp_path / "src" / "model.c").read_text()
    full = 10 // chunk * chunk
    assert f"for (uint32_t r0 = 0; r0 < {full}u; r0 += {chunk}u)" in model_c
    assert ("/* tail: rows 8..9 */" in model_c) == (chunk == 4)
    # the tail's whole tensors start at row 8: x at 8 * row bytes, out at its base + 8 * row bytes
    if chunk == 4:
        row = program.tensors["x"].nbytes // 10
        assert f"(edgevit_arena + {8 * row})" in model_c
    for name in ("add0", "add1", "add2"):
        assert f"/* {name}: add " in model_c
    got, ticks = run_host(tmp_path)
    assert ticks == [0] * 4
    assert_outputs_match(got, vectors.expected)


def test_tail_and_body_use_functions_specialised_for_their_rows(tmp_path, profile) -> None:
    program = add_chain_program("int8", rows=10, dim=5, depth=3)
    steps = driver.request_kernels(program, chain_plan(program, 4, 10))
    (step,) = steps
    assert [c.rows for c in step.body] == [4, 4, 4] and [c.rows for c in step.tail] == [2, 2, 2]
    assert step.body[0].code.func != step.tail[0].code.func
    assert len(cdriver.distinct_codes(steps)) == 2  # the three adds share one function per row count


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(["int8", "float32"]), rows=st.integers(1, 12), dim=st.integers(1, 9),
       depth=st.integers(1, 4), seed=st.integers(0, 1000))
def test_random_programs_with_the_real_planner_match_reference(tmp_path_factory, profile, dtype, rows, dim, depth,
                                                                seed) -> None:
    program = add_chain_program(dtype, rows, dim, depth, seed)
    plan = real_plan(program, profile)
    vectors = vectors_for(program, 3, seed)
    out = tmp_path_factory.mktemp("art")
    emit_artifact(program, profile, plan, out, vectors=vectors)
    got, _ = run_host(out)
    assert_outputs_match(got, vectors.expected)


@needs_arm
def test_firmware_builds_with_werror_and_links_the_arena_into_bss(tmp_path, profile) -> None:
    program = add_chain_program("int8", rows=10, dim=5, depth=3)
    plan = chain_plan(program, 4, 10)
    emit_artifact(program, profile, plan, tmp_path, vectors=vectors_for(program, 2))
    elf = build_firmware(tmp_path)
    assert elf.is_file()
    mapping = (tmp_path / "firmware" / "firmware.map").read_text()
    assert re.search(r"\.bss\.edgevit_arena\s+0x2000", mapping), "the arena is not in RAM's .bss"


@needs_qemu
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_firmware_on_qemu_matches_reference_and_counts_ticks(tmp_path, profile, dtype) -> None:
    program = add_chain_program(dtype, rows=10, dim=5, depth=3, seed=3)
    vectors = vectors_for(program, 3, seed=4)
    emit_artifact(program, profile, chain_plan(program, 4, 10), tmp_path, vectors=vectors)
    got, ticks = run_qemu(tmp_path, profile.emulator.machine)
    assert_outputs_match(got, vectors.expected)
    assert all(t > 0 for t in ticks) and len(set(ticks)) == 1  # -icount: same work, same count
    got2, _ = run_qemu(tmp_path, profile.emulator.machine, count=1)
    assert got2.shape[0] == 1


@needs_arm
def test_over_budget_arena_fails_at_link_time(tmp_path, profile) -> None:
    import subprocess

    program = add_chain_program("int8", rows=10, dim=5, depth=3)
    plan = chain_plan(program, 4, 10)
    plan.arena_bytes = profile.memory.sram_bytes  # + the stack: cannot fit
    emit_artifact(program, profile, plan, tmp_path, vectors=vectors_for(program, 1))
    r = subprocess.run(["make", "-s", "-C", str(tmp_path / "firmware")], capture_output=True, text=True)
    assert r.returncode != 0 and "overflowed" in r.stderr


def test_model_h_declares_the_api_and_sizes(profile) -> None:
    program = add_chain_program("float32", rows=3, dim=4, depth=1)
    plan = chain_plan(add_chain_program("float32", rows=3, dim=4, depth=3), 3, 3)
    h = driver.model_h(program, plan)
    assert "#define EDGEVIT_INPUT_SIZE   12 " in h and "#define EDGEVIT_OUTPUT_SIZE  12 " in h
    assert f"#define EDGEVIT_ARENA_BYTES  {plan.arena_bytes} " in h
    assert "typedef float edgevit_in_t;" in h and "typedef float edgevit_out_t;" in h
    assert "int edgevit_run(const edgevit_in_t *input, edgevit_out_t *output);" in h
    h8 = driver.model_h(add_chain_program("int8", 3, 4, 1), plan)
    assert "typedef int8_t edgevit_in_t;" in h8 and "real = 0.05 * (q - (0))" in h8


def test_const_symbols_are_sanitised_and_unique() -> None:
    fake = SimpleNamespace(consts={"blocks.0.fc1/weight": 1, "blocks_0_fc1_weight": 2, "a-b": 3, "a.b": 4})
    syms = cdriver.const_symbols(fake)
    assert syms["blocks.0.fc1/weight"] == "ev_c_blocks_0_fc1_weight"
    assert len(set(syms.values())) == 4
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s) for s in syms.values())


def test_weights_c_is_const_aligned_and_exact() -> None:
    program = SimpleNamespace(name="w", consts={"t.w": np.array([[-128, 127], [0, 1]], np.int8),
                                                "b": np.array([-(1 << 31), 5], np.int32),
                                                "e": np.array([-(1 << 63), (1 << 62)], np.int64),
                                                "f": np.array([0.1, -2.5], np.float32)})
    text = cdriver.weights_c(program)
    assert "const int8_t ev_c_t_w[4] __attribute__((aligned(8))) = {\n  -128, 127, 0, 1\n};" in text
    assert "(-2147483647 - 1)" in text and "(-INT64_C(9223372036854775807) - 1)" in text
    assert f"{float(np.float32(0.1)).hex()}f" in text


def test_scratch_smaller_than_the_code_needs_is_an_error() -> None:
    k = Kernel("attention", "att", ("q",), ("o",))
    code = KernelCode("ev_att", None, (Arg("scratch", None, "int32_t*"),), scratch_bytes=64)
    plan = SimpleNamespace(scratch_buffer={"att": "att.scratch"}, buffers={"att.scratch": Buffer("att.scratch", 8, 32, 0, 0,
                                                                                                "scratch")})
    with pytest.raises(AssertionError, match="needs 64 bytes of scratch but the memory plan reserved 32"):
        cdriver._scratch_arg(plan, cdriver.Call(k, code), code.args[0])
    plan.buffers["att.scratch"] = Buffer("att.scratch", 8, 64, 0, 0, "scratch")
    assert cdriver._scratch_arg(plan, cdriver.Call(k, code), code.args[0]) == "(int32_t*)(edgevit_arena + 8)"


def test_programs_with_two_outputs_are_rejected() -> None:
    from edgevit.errors import UserInputError

    program = SimpleNamespace(name="two", inputs=["a"], outputs=["b", "c"])
    with pytest.raises(UserInputError, match="exactly one input and one output"):
        cdriver.io_infos(program)


def _one_linear_program(k: int):
    """A Program of one int8 linear [5, k] -> [5, 6] (random weights and requantize constants)."""
    from edgevit.lower.program import ProgramBuilder
    from tests.backend.kernels.gemm_cases import linear_int8_case

    case = linear_int8_case(np.random.default_rng(k), 5, k, 6)
    b = ProgramBuilder("one_linear")
    b.add_input("x", case.tensors["x"].shape, "int8", case.tensors["x"].quant)
    consts = {role: b.add_const(f"fc.{role}", value) for role, value in case.consts.items()}
    (y,) = b.add_kernel("linear", ["x"], attrs=case.kernel.attrs, consts=consts, name="fc")
    b.add_output(y)
    return b.build()


@pytest.mark.parametrize("isa, dsp", [(("armv7e-m", "thumb2", "dsp"), True), (("armv7e-m", "thumb2"), False)])
def test_the_driver_takes_the_mcu_kernel_overrides(isa, dsp) -> None:
    """linear comes from edgevit/targets/mcu/kernels (DSP micro-kernel on DSP cores, the SMMLA/SSAT
    requantize of micro/gemm_dsp.h on every core), and kernels.c carries that header."""
    program = _one_linear_program(16)
    plan = SimpleNamespace(steps=[SimpleNamespace(kernels=(0,), chunk_rows=None)])
    steps = driver.request_kernels(program, plan, "fast", isa)
    (code,) = cdriver.distinct_codes(steps)
    definitions = driver.lower_kernels(steps)
    assert code.helpers == ("gemm_dsp",) and ("ev_gemm_dsp_2x2(" in definitions[code.func]) == dsp
    assert "#ifndef EV_GEMM_DSP_H" in driver.kernels_c(program, steps, definitions)
