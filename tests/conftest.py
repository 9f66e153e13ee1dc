"""Shared test helpers: small random ViTSpecs for hypothesis, fast synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from edgevit.model.spec import BlockSpec, ViTSpec


@st.composite
def block_specs(draw, allow_lowrank: bool = True) -> BlockSpec:
    """A random small BlockSpec (merge_r 0)."""
    ranks = {}
    if allow_lowrank:
        for name in draw(st.sets(st.sampled_from(["qkv", "proj", "fc1", "fc2"]))):
            ranks[name] = draw(st.integers(1, 8))
    return BlockSpec(heads=draw(st.integers(1, 3)), head_dim=draw(st.integers(1, 8)),
                     mlp_hidden=draw(st.integers(1, 24)), ranks=ranks)


@st.composite
def vit_specs(draw, allow_lowrank: bool = True) -> ViTSpec:
    """A random small ViTSpec: 1-3 blocks, image 4..16, patch dividing it; pool cls, mean or cls_dist,
    with a DeiT distillation token for cls_dist and sometimes for cls."""
    patch = draw(st.sampled_from([1, 2, 4]))
    grid = draw(st.integers(1, 4))
    blocks = draw(st.lists(block_specs(allow_lowrank), min_size=1, max_size=3))
    if draw(st.booleans()):
        blocks = [blocks[0]] * len(blocks)
    pool = draw(st.sampled_from(["cls", "mean", "cls_dist"]))
    distill = pool == "cls_dist" or (pool == "cls" and draw(st.booleans()))
    return ViTSpec(image_size=patch * grid, in_channels=draw(st.sampled_from([1, 3])), patch_size=patch,
                   embed_dim=draw(st.integers(2, 16)), num_classes=draw(st.integers(2, 5)),
                   blocks=tuple(blocks), pool=pool, distill_token=distill,
                   name=draw(st.sampled_from(["", "m"])))


@st.composite
def cheap_pipelines(draw, spec, always_quant: bool = False) -> str:
    """A random pipeline of the cheap passes for `spec`: some of tome / prune / lowrank in any order, then
    quant (8- or 4-bit weights, an int8 or int16 residual) — always with `always_quant` (int8-only targets),
    else sometimes."""
    steps = []
    if spec.grid >= 2 and draw(st.booleans()):
        steps.append(f"tome(r={draw(st.integers(1, 3))})")
    if draw(st.booleans()):
        steps.append(f"prune(heads={draw(st.sampled_from([0.0, 0.5]))},mlp={draw(st.sampled_from([0.0, 0.5]))},"
                     "importance=magnitude,calib=8)")
    if draw(st.booleans()):
        steps.append(f"lowrank(ratio={draw(st.sampled_from([0.3, 0.7]))})")
    steps = list(draw(st.permutations(steps)))
    if always_quant or draw(st.booleans()):
        steps.append(f"quant(w={draw(st.sampled_from([8, 4]))},residual={draw(st.sampled_from(['int8', 'int16']))},"
                     "calib=16,repq=0)")
    return ",".join(steps)


@pytest.fixture
def tiny_spec() -> ViTSpec:
    """A 2-block 8x8 spec for fast tests."""
    return ViTSpec.uniform(depth=2, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1,
                           patch_size=2, embed_dim=8, num_classes=3, name="t")


@pytest.fixture
def synthetic_npz(tmp_path):
    """A small .npz dataset (28x28 grayscale, 10 classes) written to tmp_path."""
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (200, 28, 28), dtype=np.uint8), y_train=rng.integers(0, 10, 200),
             x_test=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, 50))
    return path


# CI runs hypothesis derandomized so that a run is reproducible from the commit alone.
import os  # noqa: E402

from hypothesis import settings as _settings  # noqa: E402

_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _settings.load_profile("ci")
