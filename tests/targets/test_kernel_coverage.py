"""Every op the lowering can emit has a kernel on every backend, for every dtype it is lowered with.

A kernel that stops being registered (its module renamed, `KERNEL` removed, a dtype dropped) must fail
the default suite here, not just make the backends refuse such Programs: this used to be a skip
(`emit_or_skip`), which silently dropped the host bit-exact tests. Programs: a small ViT lowered as
float, int8 and int8 with an int16 residual stream, each with and without token merging, and with the
MLP's GELU fused into fc1 (the default) and as its own kernel; together they use every registered op
(checked, so a new op must be added here too).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.backend.target import get_target
from edgevit.lower import lower_float, lower_int8
from edgevit.lower.ops import OPS, kernel_dtype
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from edgevit.profiles.profile import load_profile
from tests.lower.int8_helpers import minmax_qmodel, randomise

SPEC = ViTSpec.uniform(depth=2, heads=2, head_dim=4, mlp_hidden=12, image_size=8, in_channels=1, patch_size=2,
                       embed_dim=8, num_classes=3, name="coverage")
TARGET_PROFILES = {"mcu": "stm32f746-disco", "cpu": "host"}


@pytest.fixture(scope="module")
def programs() -> dict:
    """name -> Program: float / int8 / int8 with int16 residual, without and with token merging, GELU fused
    and separate."""
    from edgevit.passes.pipeline import run_pipeline
    from tests.fuzz.codegen_cases import calibration_data

    base = randomise(build_model(SPEC, seed=0), 0)
    merged, _ = run_pipeline(base, "tome(r=2)", calibration_data(SPEC, 0))
    x = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
    out = {}
    for tag, model in (("plain", base), ("merged", merged)):
        for fuse in (True, False):
            name = f"{tag}{'' if fuse else '-gelu'}"
            out[f"{name}-float"] = lower_float(model, fuse_gelu=fuse)
            out[f"{name}-int8"] = lower_int8(minmax_qmodel(model, x), fuse_gelu=fuse)
            out[f"{name}-int16res"] = lower_int8(minmax_qmodel(model, x, residual_dtype="int16"), fuse_gelu=fuse)
    return out


def _op_dtypes(programs: dict) -> set[tuple[str, str]]:
    return {(k.op, kernel_dtype(k, [p.tensors[t] for t in k.inputs])) for p in programs.values() for k in p.kernels}


def test_the_programs_use_every_registered_op(programs) -> None:
    used = {op for op, _ in _op_dtypes(programs)}
    assert used == set(OPS), f"ops never lowered here: {sorted(set(OPS) - used)}; add a Program that uses them"
    assert {d for _, d in _op_dtypes(programs)} >= {"float32", "int8", "int16"}


@pytest.mark.parametrize("kind", sorted(TARGET_PROFILES))
def test_every_lowered_op_has_a_kernel_on_every_target(programs, kind) -> None:
    profile = load_profile(TARGET_PROFILES[kind])
    target = get_target(profile)
    assert target.kind == kind
    missing = {name: target.supports(p, profile) for name, p in programs.items()}
    assert not any(missing.values()), {k: v for k, v in missing.items() if v}
