"""The FPGA target accepts every integer Program the kernel-coverage suite lowers (int8 and an int16
residual, with and without token merging, GELU fused or separate: every op the overlay has an emitter for)
and refuses every float one with the quant advice (tests/targets/test_kernel_coverage.py covers the
targets that run both)."""

from __future__ import annotations

import pytest

from edgevit.backend.target import get_target
from edgevit.profiles.profile import load_profile
from edgevit.targets.fpga.target import FLOAT_REASON
from tests.targets.test_kernel_coverage import programs  # noqa: F401  (the module-scoped fixture)


@pytest.mark.parametrize("profile", ["pynq-z2", "zcu104"])
def test_every_integer_lowering_is_supported_and_every_float_one_refused(programs, profile):  # noqa: F811
    target, prof = get_target("fpga"), load_profile(profile)
    ints = {name: target.supports(p, prof) for name, p in programs.items() if not name.endswith("-float")}
    assert len(ints) == 8 and not any(ints.values()), {k: v for k, v in ints.items() if v}
    for name, p in programs.items():
        if name.endswith("-float"):
            (reason,) = target.supports(p, prof)
            assert FLOAT_REASON in reason, name
