"""Hypothesis strategies for specs with token merging (valid merge_r schedules on random specs)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from edgevit.model.spec import ViTSpec
from tests.conftest import vit_specs


@st.composite
def merge_schedules(draw, spec: ViTSpec) -> ViTSpec:
    """`spec` with a random valid merge_r per block (each at most half of the mergeable tokens)."""
    n, blocks = spec.num_patches + spec.num_prefix, []
    for b in spec.blocks:
        r = draw(st.integers(0, (n - spec.num_prefix) // 2))
        blocks.append(replace(b, merge_r=r))
        n -= r
    return spec.with_blocks(blocks)


@st.composite
def merged_vit_specs(draw, allow_lowrank: bool = True, min_grid: int = 2) -> ViTSpec:
    """A random small ViTSpec (tests.conftest.vit_specs, at least min_grid^2 patches) with random merging."""
    spec = draw(vit_specs(allow_lowrank).filter(lambda s: s.grid >= min_grid))
    return draw(merge_schedules(spec))
