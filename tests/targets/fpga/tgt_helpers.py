"""Shared pieces of the FPGA target tests (prefix tgt): a tiny int8 ViT Program and its artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevit.model.spec import ViTSpec

TINY = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=12, image_size=8, in_channels=1, patch_size=4,
                       embed_dim=8, num_classes=3, name="tgt-tiny")


def tiny_model(spec: ViTSpec = TINY, seed: int = 0):
    """A randomly weighted model of `spec`."""
    from edgevit.model.vit import build_model
    from tests.lower.int8_helpers import randomise

    return randomise(build_model(spec, seed=seed), seed)


def tiny_programs(spec: ViTSpec = TINY, seed: int = 0, **quant) -> tuple:
    """(float Program, int8 Program) of a random model of `spec` (min/max calibration on random images)."""
    from edgevit.lower import lower_float, lower_int8
    from tests.lower.int8_helpers import minmax_qmodel

    model = tiny_model(spec, seed)
    x = np.random.default_rng(seed).standard_normal((8, spec.in_channels, spec.image_size,
                                                     spec.image_size)).astype(np.float32)
    return lower_float(model), lower_int8(minmax_qmodel(model, x, **quant))


def write_artifact(program, profile: str, out: Path, count: int = 3) -> Path:
    """The FPGA artifact of `program` for `profile` with `count` random vectors, written as compile does."""
    from edgevit.backend.artifact_program import program_files
    from edgevit.backend.artifact_write import seal, write_atomically
    from edgevit.backend.target import get_target
    from edgevit.backend.vectors import random_vectors
    from edgevit.profiles.profile import load_profile

    prof = load_profile(profile)
    target = get_target(prof)
    assert target.supports(program, prof) == []
    costs = target.estimate(program, prof)
    files = target.build(program, prof, costs, random_vectors(program, count))
    write_atomically(out, seal({**files, **program_files(program)}, target, prof), False)
    return out
