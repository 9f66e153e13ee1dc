"""Each op family compiled for the overlay and run on the functional simulator (all three module orders),
bit-exact against the reference interpreter: one-kernel Programs from the backend kernel test cases
(random shapes and constants drawn the way lowering draws them) on three overlays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backend.kernels import elementwise_cases as ew
from tests.backend.kernels import gemm_cases as gemm
from tests.targets.fpga.comp_helpers import assert_bit_exact, case_program, overlay

OVERLAYS = ["pynq-z2", "zcu104", "tiny"]
SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_case(case, cfg_name: str, same_input_twice: bool = False) -> None:
    program, x = case_program(case, same_input_twice)
    assert_bit_exact(program, overlay(cfg_name), [x])


@pytest.mark.parametrize("cfg_name", OVERLAYS)
@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 40), k=st.integers(1, 70), m=st.integers(1, 40),
       bits=st.sampled_from([8, 4]), gelu=st.booleans())
def test_linear(cfg_name, seed, n, k, m, bits, gelu) -> None:
    check_case(gemm.linear_int8_case(np.random.default_rng(seed), n, k, m, bits, gelu), cfg_name)


@pytest.mark.parametrize("cfg_name", OVERLAYS)
@SETTINGS
@given(seed=st.integers(0, 2**16), c=st.sampled_from([1, 3]), gh=st.integers(1, 4), gw=st.integers(1, 4),
       patch=st.sampled_from([1, 2, 4]), d=st.integers(1, 20), out=st.sampled_from(["int8", "int16"]))
def test_patch_embed(cfg_name, seed, c, gh, gw, patch, d, out) -> None:
    check_case(gemm.patch_embed_int8_case(np.random.default_rng(seed), c, (gh, gw), patch, d, out), cfg_name)


@pytest.mark.parametrize("cfg_name", OVERLAYS)
@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 40), heads=st.integers(1, 3), hd=st.integers(1, 20))
def test_attention(cfg_name, seed, n, heads, hd) -> None:
    check_case(ew.attention_case(np.random.default_rng(seed), n, heads, hd), cfg_name)


@pytest.mark.parametrize("cfg_name", ["pynq-z2", "tiny"])
@SETTINGS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 12), d=st.integers(1, 40), dtype=st.sampled_from(["int8", "int16"]))
def test_vector_ops(cfg_name, seed, n, d, dtype) -> None:
    rng = np.random.default_rng(seed)
    check_case(ew.layernorm_case(rng, n, d, dtype), cfg_name)
    check_case(ew.add_case(rng, (n, d), dtype, dtype, dtype), cfg_name, same_input_twice=True)
    check_case(ew.add_case(rng, (n, d), dtype, "int8", dtype, op="add_pos"), cfg_name)
    check_case(ew.cls_concat_case(rng, n, d, dtype), cfg_name)
    for mode in ("cls", "mean"):
        check_case(ew.pool_case(rng, n, d, dtype, mode, dtype), cfg_name)
    check_case(ew.gelu_case(rng, (n, d)), cfg_name)


def test_without_the_war_tokens_a_decoupled_order_goes_wrong() -> None:
    """The c2l tokens are what keep the load module from overwriting WGT slots still in use: strip them
    (push_prev on compute, pop_next on load) and the load-first order no longer matches in-order."""
    from edgevit.targets.fpga.compiler import compile_program, ddr_image
    from edgevit.targets.fpga.fsim import FsimError, check_orders
    from edgevit.targets.fpga.isa import encode_stream

    cfg = overlay("tiny")
    program, x = case_program(gemm.linear_int8_case(np.random.default_rng(5), 9, 70, 30))
    compiled = compile_program(program, cfg)
    check_orders(cfg, compiled.stream, ddr_image(compiled, x))
    stripped = [i.with_deps(push_prev=0) if i.module == "compute" else i.with_deps(pop_next=0) if i.module == "load"
                else i for i in compiled.insns]
    assert stripped != compiled.insns
    with pytest.raises(FsimError, match="different DDR"):
        check_orders(cfg, encode_stream(stripped), ddr_image(compiled, x))
