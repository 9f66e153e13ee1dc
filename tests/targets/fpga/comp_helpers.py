"""Shared helpers of the FPGA compiler tests (test_comp_*.py): overlays, one-kernel Programs, zoo Programs,
and running a compiled Program on the functional simulator against the reference interpreter."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from edgevit.lower.program import Kernel, Program
from edgevit.lower.reference import run_program
from edgevit.targets.fpga.compiler import compile_program, ddr_image, read_output
from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.fsim import check_orders, run_stream

ROOT = Path(__file__).resolve().parents[3]


def overlay(name: str) -> OverlayConfig:
    """"pynq-z2" / "zcu104" (the profiles' overlays) or "tiny": bm 4 and small WGT / ACC / PARAM rings, so
    slots and PARAM blocks wrap around often (stresses the dependency tokens)."""
    if name == "tiny":
        return OverlayConfig(bk=16, bm=4, vl=8, act_bytes=64 * 1024, wgt_tiles=4, acc_rows=64, param_words=2048,
                             bus_bytes=8, clock_hz=100_000_000, ddr_latency_cycles=40)
    from edgevit.profiles.profile import load_profile
    from edgevit.targets.fpga.config import overlay_config

    return overlay_config(load_profile(name))


def case_program(case, same_input_twice: bool = False) -> tuple[Program, np.ndarray]:
    """A one-kernel Program of a tests/backend/kernels Case (its first input is the program input; with
    `same_input_twice` the kernel reads it as both operands, e.g. add(x, x)) and that input."""
    k = case.kernel
    x = k.inputs[0]
    inputs = (x, x) if same_input_twice else k.inputs
    kernel = Kernel(k.op, k.name, inputs, k.outputs, consts=k.consts, attrs=k.attrs)
    tensors = {t: case.tensors[t] for t in {x, *k.outputs}}
    consts = {k.consts[role]: a for role, a in case.consts.items()}
    program = Program(name="case", inputs=[x], outputs=[k.outputs[0]], tensors=tensors, consts=consts,
                      kernels=[kernel])
    program.validate()
    data = case.inputs[0] if hasattr(case, "inputs") else case.x
    return program, np.asarray(data)


def reference(program: Program, x: np.ndarray) -> np.ndarray:
    """The reference interpreter's output for one input (no batch dim)."""
    return run_program(program, {program.inputs[0]: x[None]})[program.outputs[0]][0]


def run_compiled(compiled, cfg: OverlayConfig, x: np.ndarray, orders: bool = True) -> np.ndarray:
    """Run a CompiledProgram on fsim for input `x` (all three orders compared when `orders`) -> the output."""
    ddr = ddr_image(compiled, x)
    if orders:
        check_orders(cfg, compiled.stream, ddr)
    else:
        run_stream(cfg, compiled.stream, ddr)
    return read_output(compiled, ddr)


def assert_bit_exact(program: Program, cfg: OverlayConfig, inputs, orders: bool = True) -> None:
    """Compile `program` for `cfg` and check every input's fsim output equals the reference's."""
    compiled = compile_program(program, cfg)
    for i, x in enumerate(inputs):
        got, want = run_compiled(compiled, cfg, x, orders), reference(program, x)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want), (i, got, want)


def calibration_data(spec, n: int = 16, seed: int = 0):
    """A small random uint8 ArrayDataset shaped for `spec` (pass calibration)."""
    from edgevit.data import ArrayDataset

    rng = np.random.default_rng(seed)
    shape = (n, spec.in_channels, spec.image_size, spec.image_size)
    return ArrayDataset(rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, spec.num_classes, n),
                        classes=[str(c) for c in range(spec.num_classes)], name="synthetic")


def model_program(model, pipeline: str, seed: int = 0) -> Program:
    """The Program of a model after `pipeline` (calibrated on random images)."""
    from edgevit.lower import lower
    from edgevit.passes.pipeline import parse_pipeline, run_pipeline

    if pipeline:
        model, _ = run_pipeline(model, parse_pipeline(pipeline), calibration_data(model.spec, seed=seed))
    return lower(model)


@lru_cache(maxsize=None)
def zoo_program(name: str, pipeline: str = "quant(w=8,a=8,calib=16)") -> Program:
    """The int8 Program of zoo model models/`name` (cached per test process)."""
    from edgevit.model.importers.source import load_model_source

    return model_program(load_model_source(ROOT / "models" / name, {}, warn=lambda _: None), pipeline)


def random_inputs(program: Program, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` program inputs from random uint8 images (quantized as the runtime does)."""
    from edgevit.backend.vectors import random_vectors

    return list(random_vectors(program, count, seed).inputs)
