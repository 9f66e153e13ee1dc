"""The generated `pool` kernel in mode "prefix" (the class and distillation tokens of a DeiT-distilled
model): TVM's C (host gcc, MCU backend) and TVM's LLVM code (cpu backend) against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from elementwise_cases import assert_no_tvm, c_source, check, generate, make_case, random_int

CASES = [("int8", 2, "fast"), ("int16", 2, "reference"), ("float32", 2, "fast"), ("int8", 3, "reference"),
         ("int8", 7, "fast")]


def prefix_case(rng: np.random.Generator, n: int, d: int, dtype: str, rows: int):
    """A random pool(mode prefix, rows) case over [n, d] tokens."""
    x = rng.normal(0, 1, (n, d)).astype(np.float32) if dtype == "float32" else random_int(rng, dtype, (n, d))
    quant = None if dtype == "float32" else [{"scale": 0.1, "zero_point": 3}]
    return make_case("pool", [x], {}, {"mode": "prefix", "rows": rows}, quant)


@pytest.mark.parametrize("dtype, rows, schedule", CASES)
def test_prefix_pool_matches_reference(dtype, rows, schedule) -> None:
    case = prefix_case(np.random.default_rng(rows), 7, 5, dtype, rows)
    check(case, schedule=schedule)
    assert_no_tvm(c_source(case, schedule=schedule))


def test_rows_are_compiled_in() -> None:
    rng = np.random.default_rng(0)
    two, three = generate(prefix_case(rng, 9, 4, "int8", 2))[0], generate(prefix_case(rng, 9, 4, "int8", 3))[0]
    assert two.func != three.func
    cls = generate(make_case("pool", [random_int(rng, "int8", (9, 4))], {}, {"mode": "cls"},
                             [{"scale": 0.1, "zero_point": 3}]))[0]
    assert cls.func != two.func


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32"])
def test_prefix_pool_on_the_cpu_backend(dtype) -> None:
    from edgevit.backend.kernels import get_kernel
    from edgevit.profiles.profile import load_profile
    from edgevit.targets.cpu.isa import llvm_target, missing_on_host
    from edgevit.targets.cpu.kernels import KERNEL_PACKAGE, kernel_isa
    from tests.targets.cpu.llvm_harness import run_llvm_kernel
    from tests.targets.cpu.op_cases import assert_matches, reference_outputs, request

    if missing_on_host(load_profile("host")):
        pytest.skip("this machine cannot run the host profile's code")
    target = llvm_target(load_profile("host"))
    case = prefix_case(np.random.default_rng(5), 11, 6, dtype, 2)
    req = request(case, "fast", kernel_isa(target))
    code = get_kernel("pool", req.dtype, overrides=KERNEL_PACKAGE).generate(req)
    assert_matches(run_llvm_kernel(code, req, case.inputs, target), reference_outputs(case))
