"""Smoke tests of the helpers behind benchmarks/mcu_speed.py (benchmarks/_mcu_bench.py): the
one-kernel Programs it measures, the kernel de-duplication, the copy-overhead arithmetic, the
softmax line fit, and one tiny kernel measured on QEMU (skipped without the toolchain)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks._mcu_bench import (Bench, attention_program, distinct_kernels, io_bytes, kernel_row, linear_fit,
                                   linear_program, requant_consts, schedule_columns, single_kernel_program)
from edgevit.lower.intmath import add_int, make_add_params
from edgevit.lower.ops.intcommon import quant_attr
from edgevit.lower.program import ProgramBuilder
from edgevit.lower.reference import run_program

needs_qemu = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed")


def _linear(b: ProgramBuilder, rng, x: str, k: int, m: int, name: str) -> str:
    consts = {"weight": rng.integers(-127, 128, (m, k)).astype(np.int8), **requant_consts(rng, m, k)}
    for role, v in consts.items():
        b.add_const(f"{name}.{role}", v)
    (y,) = b.add_kernel("linear", [x], attrs={"out_quant": quant_attr(0.05, 1, "int8")},
                        consts={r: f"{name}.{r}" for r in consts}, name=name)
    return y


def small_model(rng) -> tuple:
    """x [4, 8] -> fc_a (8->8) -> fc_b (8->8) -> add(fc_a, fc_b) -> y (8->4), whose constants are
    named "y.*" (and its output "y")."""
    b = ProgramBuilder("small")
    b.add_input("x", (4, 8), "int8", {"scale": 0.05, "zero_point": 1})
    a = _linear(b, rng, "x", 8, 8, "fc_a")
    c = _linear(b, rng, a, 8, 8, "fc_b")
    p = make_add_params(0.05, 0.05, 0.08, 1, 1, -3, out_dtype=np.dtype("int8"))
    (s,) = b.add_kernel("add", [a, c], name="res", attrs={"ka": p["ka"], "kb": p["kb"], "bias": p["bias"],
                                                          "shift": p["shift"], "out_quant": quant_attr(0.08, -3, "int8")})
    out = _linear(b, rng, s, 8, 4, "y")  # constants "y.weight", ...; kernel output "y"
    b.add_output(out)
    return b.build(), p


def test_distinct_kernels_groups_same_shaped_kernels() -> None:
    program, _ = small_model(np.random.default_rng(0))
    got = [(k.name, n) for k, n in distinct_kernels(program)]
    assert got == [("fc_a", 2), ("res", 1), ("y", 1)]


def test_single_kernel_program_reproduces_the_kernel_in_context() -> None:
    rng = np.random.default_rng(1)
    program, add_params = small_model(rng)
    x = rng.integers(-128, 128, (3, 4, 8)).astype(np.int8)
    by_name = {k.name: k for k in program.kernels}
    alone = {name: single_kernel_program(program, k) for name, k in by_name.items()}
    assert alone["fc_b"].kernels[0].consts == by_name["fc_b"].consts
    a = run_program(alone["fc_a"], {"x": x})["y"]
    b = run_program(alone["fc_b"], {"x": a})["y"]
    # the add alone reads its one program input twice
    np.testing.assert_array_equal(run_program(alone["res"], {"x": b})["y"], add_int(b, b, add_params))
    head = alone["y"]  # kernel "y" with constants "y.*": its output is still called "y"
    assert head.outputs == ["y"] and "y.weight" in head.consts and io_bytes(head) == (32, 16)
    chained = run_program(head, {"x": add_int(a, b, add_params)})["y"]
    np.testing.assert_array_equal(chained, run_program(program, {"x": x})[program.outputs[0]])


def test_single_kernel_program_avoids_constant_names() -> None:
    """fmnist-tiny's `pos_embed` kernel uses a constant named `pos_embed`; here the constants are
    named "x" and "y", the names the one-kernel Program would otherwise give its tensors."""
    b = ProgramBuilder("clash")
    b.add_input("tokens", (3, 2), "float32")
    b.add_const("x", np.ones((3, 2), np.float32))
    b.add_const("y", np.full((3, 2), 2, np.float32))
    (t,) = b.add_kernel("add_pos", ["tokens"], consts={"pos": "x"}, name="x_pos")
    (u,) = b.add_kernel("add_pos", [t], consts={"pos": "y"}, name="y_pos")
    b.add_output(u)
    program = b.build()
    for kernel, pos in zip(program.kernels, (1.0, 2.0)):
        alone = single_kernel_program(program, kernel)
        assert not set(alone.tensors) & set(alone.consts)
        got = run_program(alone, np.zeros((1, 3, 2), np.float32))[alone.outputs[0]]
        np.testing.assert_array_equal(got, np.full((1, 3, 2), pos, np.float32))


def test_single_kernel_program_rejects_inputs_of_different_shapes() -> None:
    b = ProgramBuilder("two")
    b.add_input("x", (2, 4), "float32")
    (r,) = b.add_kernel("reshape", ["x"], attrs={"shape": [4, 2]}, name="r")
    (s,) = b.add_kernel("add", ["r", "r"], name="s")
    b.add_output(s)
    program = b.build()
    kernel = program.kernels[1]
    odd = type(kernel)(kernel.op, kernel.name, ("x", "r"), kernel.outputs, kernel.consts, kernel.attrs)
    with pytest.raises(ValueError, match="cannot feed one program input"):
        single_kernel_program(program, odd)


def test_attention_program_runs_on_the_reference() -> None:
    p = attention_program(6, 2, 4, seed=3)
    x = np.random.default_rng(0).integers(-128, 128, (2, 6, 24)).astype(np.int8)
    y = run_program(p, {"x": x})[p.outputs[0]]
    assert y.shape == (2, 6, 8) and y.dtype == np.int8 and p.macs() == 2 * 6 * 6 * 8


def test_schedule_columns_subtracts_the_copy_and_flags_tiny_counts() -> None:
    run = {"instructions": 10_000.0, "instructions_per_tick": 40.0, "matches": 2, "count": 2}
    cols = schedule_columns(run, "fast", overhead=2_000.0, macs=4_000, elements=100)
    assert cols["fast_net_instructions"] == 8_000.0 and cols["fast_macs_per_instruction"] == 0.5
    assert cols["fast_instructions_per_output_element"] == 80.0 and cols["fast_bit_exact"]
    tiny = schedule_columns({**run, "instructions": 2_050.0, "matches": 1}, "reference", 2_000.0, 4_000, 100)
    assert tiny["reference_below_resolution"] and tiny["reference_macs_per_instruction"] is None
    assert not tiny["reference_bit_exact"]
    assert schedule_columns({"error": "boom"}, "fast", 0.0, 1, 1) == {"fast_error": "boom"}


@settings(max_examples=10, deadline=None)
@given(slope=st.floats(-100, 100), intercept=st.floats(-1e3, 1e3),
       xs=st.lists(st.integers(1, 64), min_size=2, max_size=5, unique=True))
def test_linear_fit_recovers_a_line(slope, intercept, xs) -> None:
    fit = linear_fit(xs, [slope * x + intercept for x in xs])
    assert fit["slope"] == pytest.approx(slope, abs=1e-6)
    assert fit["intercept"] == pytest.approx(intercept, abs=1e-6)
    assert fit["max_abs_residual"] < 1e-6


def test_linear_fit_needs_two_distinct_points() -> None:
    with pytest.raises(ValueError):
        linear_fit([4, 4], [1.0, 2.0])


@needs_qemu
def test_tiny_linear_measured_on_qemu(tmp_path) -> None:
    from edgevit.profiles.profile import load_profile

    bench = Bench(load_profile("stm32f746-disco"), tmp_path, count=1)
    row = kernel_row(bench, "smoke", "linear 4x16->8", linear_program(4, 16, 8, seed=2))
    for s in ("fast", "reference"):
        assert f"{s}_error" not in row, row
        assert row[f"{s}_bit_exact"] and row[f"{s}_count"] == 1
        assert row[f"{s}_net_instructions"] < row[f"{s}_instructions"]
    assert row["macs"] == 4 * 16 * 8 and row["reference_net_instructions"] > 2 * 40
    assert bench.copy_instructions(64) < bench.copy_instructions(4096)  # the copy charge grows with bytes
    assert list(tmp_path.iterdir()) == []  # artifacts are removed after each run
