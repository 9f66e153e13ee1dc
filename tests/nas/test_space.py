"""NAS search space: sampling / mutation / crossover stay valid and inside; YAML; errors; defaults."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.errors import SpecError, UserInputError
from edgevit.model.spec import ViTSpec
from edgevit.nas.space import (
    MIN_KEPT_TOKENS, SPACES_DIR, SearchSpace, default_space, lowrank_ranks, merge_allowed, mlp_hidden_for,
)

ROOT = Path(__file__).resolve().parents[2]
MCU = dict(name="t", in_channels=1, num_classes=10, pool="cls", image_sizes=[28, 24], patch_sizes=[4, 6, 7],
           embed_dims=[48, 64], depths=[2, 3], heads=[2, 3], head_dim=16, mlp_ratios=[1.0, 2.0],
           lowrank_ratios=[1.0, 0.5], merge_rs=[0, 2, 4])


@st.composite
def spaces(draw) -> SearchSpace:
    """A random small valid SearchSpace (every image size has a dividing patch size and vice versa)."""
    patches = draw(st.lists(st.sampled_from([1, 2, 3, 4, 7]), min_size=1, max_size=3, unique=True))
    images = sorted({p * draw(st.integers(1, 6)) for p in patches})
    most = max((s // p) ** 2 for s in images for p in patches if s % p == 0)
    merges = [0] + [r for r in draw(st.lists(st.integers(1, 12), max_size=3)) if merge_allowed(most, r)]
    ints = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=1, max_size=3))  # noqa: E731
    return SearchSpace(in_channels=draw(st.sampled_from([1, 3])), num_classes=draw(st.integers(2, 10)),
                       pool=draw(st.sampled_from(["cls", "mean"])), image_sizes=tuple(images),
                       patch_sizes=tuple(patches), embed_dims=tuple(ints(4, 64)), depths=tuple(ints(1, 4)),
                       heads=tuple(ints(1, 4)), head_dim=draw(st.integers(1, 16)),
                       mlp_ratios=tuple(draw(st.lists(st.sampled_from([0.5, 1.0, 1.5, 4.0]), min_size=1, max_size=3))),
                       lowrank_ratios=tuple(draw(st.lists(st.sampled_from([0.25, 0.5, 1.0]), min_size=1, max_size=2))),
                       merge_rs=tuple(merges), name="h")


def assert_inside(space: SearchSpace, spec: ViTSpec) -> None:
    """Every field among the choices, the token schedule valid under the space's merge rule."""
    assert isinstance(spec, ViTSpec) and spec.name.startswith("nas-") and len(spec.name) == 12
    space.check(spec)
    assert spec.image_size in space.image_sizes and spec.patch_size in space.patch_choices(spec.image_size)
    assert spec.embed_dim in space.embed_dims and spec.depth in space.depths
    assert (spec.in_channels, spec.num_classes, spec.pool) == (space.in_channels, space.num_classes, space.pool)
    assert spec.embed_dim <= space.max_embed and spec.depth <= space.max_depth
    assert spec.image_size <= space.max_image_size and spec.num_patches <= space.max_patches
    counts = spec.tokens_per_block()
    for i, (b, g) in enumerate(zip(spec.blocks, space.block_choices(spec))):
        assert b.heads == g["heads"] in space.heads and b.heads <= space.max_heads and b.head_dim == space.head_dim
        assert g["mlp_ratio"] in space.mlp_ratios and b.mlp_hidden == mlp_hidden_for(spec.embed_dim, g["mlp_ratio"])
        assert b.mlp_hidden <= space.max_mlp_hidden
        assert g["lowrank_ratio"] in space.lowrank_ratios
        assert b.ranks == lowrank_ranks(spec.embed_dim, b.heads, b.head_dim, b.mlp_hidden, g["lowrank_ratio"])
        mergeable = counts[i] - spec.num_prefix
        assert b.merge_r in space.merge_rs and b.merge_r <= mergeable // 2
        assert b.merge_r == 0 or mergeable - b.merge_r >= MIN_KEPT_TOKENS
    rebuilt = space.build(spec.image_size, spec.patch_size, spec.embed_dim, space.block_choices(spec))
    assert rebuilt == spec


@settings(max_examples=25, deadline=None)
@given(spaces(), st.integers(0, 2**32))
def test_sample_mutate_crossover_stay_valid_and_inside(space, seed):
    rng = random.Random(seed)
    a, b = space.sample(rng), space.sample(rng)
    for spec in (a, b, space.mutate(a, rng), space.mutate(b, rng, prob=1.0), space.crossover(a, b, rng),
                 space.largest(), space.smallest()):
        assert_inside(space, spec)
        assert ViTSpec.from_yaml(spec.to_yaml()) == spec


@settings(max_examples=25, deadline=None)
@given(spaces())
def test_yaml_round_trip(space):
    assert SearchSpace.from_yaml(space.to_yaml()) == space
    assert SearchSpace.from_yaml(space.to_yaml()).to_yaml() == space.to_yaml()
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_save_load_round_trip_and_name_from_the_file(tmp_path):
    space = SearchSpace.from_dict(MCU)
    space.save(tmp_path / "s.yaml")
    assert SearchSpace.load(tmp_path / "s.yaml") == space
    d = {k: v for k, v in MCU.items() if k not in ("name", "in_channels", "num_classes", "pool")}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(d))
    loaded = SearchSpace.load(tmp_path / "mine.yaml", image_shape=(1, 28, 28), num_classes=10)
    assert loaded == replace(space, name="mine")


def test_crossover_takes_genes_from_the_parents():
    space, rng = SearchSpace.from_dict(MCU), random.Random(1)
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        c = space.crossover(a, b, rng)
        assert c.image_size in (a.image_size, b.image_size) and c.embed_dim in (a.embed_dim, b.embed_dim)
        assert c.depth in (a.depth, b.depth)
        ga, gb, gc = space.block_choices(a), space.block_choices(b), space.block_choices(c)
        for i, block in enumerate(gc):
            for gene in ("heads", "mlp_ratio", "lowrank_ratio"):
                assert block[gene] in [g[i][gene] for g in (ga, gb) if i < len(g)]


def test_mutation_changes_the_spec_and_depth_changes_keep_the_leading_blocks():
    space, rng = SearchSpace.from_dict(MCU), random.Random(2)
    unchanged = 0
    for _ in range(300):
        a = space.sample(rng)
        m = space.mutate(a, rng, prob=0.2)
        unchanged += m == a
    assert unchanged <= 3
    a = space.sample(random.Random(3))
    kept = [space.mutate(a, random.Random(s), prob=0.0) for s in range(3)]  # prob 0: nothing can change
    assert all(k == a for k in kept)


def test_largest_and_smallest_are_the_extremes():
    space, rng = SearchSpace.from_dict(MCU), random.Random(4)
    big, small = space.largest(), space.smallest()
    assert (big.image_size, big.patch_size, big.embed_dim, big.depth) == (28, 4, 64, 3)
    assert all(b.heads == 3 and b.mlp_hidden == 128 and not b.ranks and b.merge_r == 0 for b in big.blocks)
    assert (small.image_size, small.patch_size, small.embed_dim, small.depth) == (24, 6, 48, 2)
    assert all(b.heads == 2 and b.mlp_hidden == 48 and b.ranks and b.merge_r == 0 for b in small.blocks)
    for _ in range(200):
        s = space.sample(rng)
        assert small.num_patches <= s.num_patches <= big.num_patches
        assert small.embed_dim <= s.embed_dim <= big.embed_dim and small.depth <= s.depth <= big.depth
    assert (space.max_embed, space.max_heads, space.max_mlp_hidden, space.max_depth, space.max_image_size) == \
        (64, 3, 128, 3, 28)


def test_sampling_is_deterministic_uniform_and_merges_tokens():
    space = SearchSpace.from_dict(MCU)
    first = [space.sample(random.Random(7)) for _ in range(2)]
    assert first[0] == first[1]
    rng = random.Random(8)
    specs = [space.sample(rng) for _ in range(400)]
    pairs = {(s.image_size, s.patch_size) for s in specs}
    assert pairs == {(28, 4), (28, 7), (24, 4), (24, 6)}
    assert any(b.merge_r for s in specs for b in s.blocks) and any(b.ranks for s in specs for b in s.blocks)


def test_names_are_stable_across_processes_and_identify_the_architecture():
    space = SearchSpace.from_dict(MCU)
    rng = random.Random(9)
    by_name = {}
    for _ in range(300):
        s = space.sample(rng)
        assert by_name.setdefault(s.name, s) == s
    code = ("import random; from edgevit.nas.space import SearchSpace; import json, sys; "
            f"s = SearchSpace.from_dict({MCU!r}); print(s.largest().name, s.sample(random.Random(5)).name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.split()
    assert out == [space.largest().name, space.sample(random.Random(5)).name]


def test_mlp_hidden_for_rounds_to_multiples_of_8():
    assert [mlp_hidden_for(48, r) for r in (1.0, 1.5, 2.0, 3.0)] == [48, 72, 96, 144]
    assert mlp_hidden_for(4, 0.5) == 8 and mlp_hidden_for(100, 1.0) == 104 and mlp_hidden_for(60, 1.0) == 64
    for dim in range(1, 200, 7):
        for ratio in (0.3, 1.0, 1.7, 4.0):
            h = mlp_hidden_for(dim, ratio)
            assert h % 8 == 0 and h >= 8 and (h == 8 or abs(h - dim * ratio) <= 4.5)


def test_lowrank_ranks_match_the_lowrank_pass():
    torch = pytest.importorskip("torch")
    from edgevit.model.vit import build_model
    from edgevit.passes.lowrank import lowrank

    torch.manual_seed(0)
    for embed, heads, hidden, ratio in ((48, 2, 72, 0.5), (64, 4, 64, 0.5), (32, 1, 128, 0.25), (16, 2, 24, 0.75)):
        spec = ViTSpec.uniform(depth=1, heads=heads, head_dim=16, mlp_hidden=hidden, image_size=8, in_channels=1,
                               patch_size=4, embed_dim=embed, num_classes=3)
        out, _ = lowrank(build_model(spec, seed=0), None, ratio=ratio)
        assert out.spec.blocks[0].ranks == lowrank_ranks(embed, heads, 16, hidden, ratio)
    assert lowrank_ranks(48, 2, 16, 72, 1.0) == {}
    assert lowrank_ranks(64, 4, 16, 64, 0.5) == {"qkv": 32}  # square proj/fc1/fc2 at rank n/2 save nothing


BAD = [  # (field, edit of MCU, expected words in the message)
    ("colour", {"colour": 3}, "allowed"),
    ("embed_dims", {"embed_dims": []}, "non-empty"),
    ("depths", {"depths": [0, 2]}, "positive integers"),
    ("heads", {"heads": [2, -1]}, "positive integers"),
    ("heads", {"heads": 2}, "list"),
    ("head_dim", {"head_dim": 0}, "positive integer"),
    ("patch_sizes", {"patch_sizes": [4, 5]}, "divides none"),
    ("image_sizes", {"image_sizes": [28, 24, 25]}, "divisible by none"),
    ("mlp_ratios", {"mlp_ratios": [1.0, -2]}, "positive numbers"),
    ("lowrank_ratios", {"lowrank_ratios": [1.5]}, "(0, 1]"),
    ("lowrank_ratios", {"lowrank_ratios": [0.0, 1.0]}, "(0, 1]"),
    ("merge_rs", {"merge_rs": [0, 30]}, "never be valid"),
    ("merge_rs", {"merge_rs": [2, 4]}, "must include 0"),
    ("merge_rs", {"merge_rs": [0, -2]}, ">= 0"),
    ("pool", {"pool": "max"}, "one of"),
    ("in_channels", {"in_channels": None}, "missing"),
    ("num_classes", {"num_classes": 2.5}, "positive integer"),
]


@pytest.mark.parametrize("field,edit,words", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_fields_are_named_with_the_file(tmp_path, field, edit, words):
    d = {k: v for k, v in {**MCU, **edit}.items() if v is not None}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(SpecError) as e:
        SearchSpace.load(path)
    assert str(path) in str(e.value) and field in str(e.value) and words in str(e.value)


def test_data_mismatches_are_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(MCU))
    with pytest.raises(SpecError, match=r"image_sizes.*\[24, 28\] larger than the data's 16x16"):
        SearchSpace.load(path, image_shape=(1, 16, 16), num_classes=10)
    with pytest.raises(SpecError, match="in_channels: the file says 1 but the data has 3"):
        SearchSpace.load(path, image_shape=(3, 28, 28), num_classes=10)
    with pytest.raises(SpecError, match="num_classes"):
        SearchSpace.load(path, image_shape=(1, 28, 28), num_classes=5)
    with pytest.raises(UserInputError, match="square"):
        SearchSpace.load(path, image_shape=(1, 28, 20), num_classes=10)
    with pytest.raises(UserInputError, match="not found"):
        SearchSpace.load(tmp_path / "none.yaml")
    path.write_text("image_sizes: [28\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        SearchSpace.load(path)
    with pytest.raises(SpecError, match="mapping"):
        SearchSpace.from_yaml("- 1\n- 2\n")


def test_check_names_the_field_outside_the_space():
    space = SearchSpace.from_dict(MCU)
    spec = space.sample(random.Random(10))
    with pytest.raises(SpecError, match="embed_dim = 56"):
        space.check(replace(spec, embed_dim=56))
    bad_block = replace(spec.blocks[0], heads=5)
    with pytest.raises(SpecError, match=r"blocks\[0\]\.heads = 5"):
        space.check(spec.with_blocks((bad_block,) + spec.blocks[1:]))
    bad_block = replace(spec.blocks[0], mlp_hidden=spec.blocks[0].mlp_hidden + 8)
    assert not space.contains(spec.with_blocks((bad_block,) + spec.blocks[1:]))
    with pytest.raises(SpecError, match="image_size = 16"):
        space.mutate(replace(spec, image_size=16, patch_size=4), random.Random(0))
    assert space.contains(replace(spec, name="renamed"))


@pytest.mark.parametrize("profile", ["mcu", "cpu", "fpga", "stm32f746-disco", "rpi4", "pynq-z2"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 16, 16), (3, 8, 8)])
def test_default_space_for_each_profile_kind(profile, shape):
    space = default_space(profile, shape, 10)
    assert space.in_channels == shape[0] and space.num_classes == 10
    assert space.max_image_size == shape[1] and all(s <= shape[1] for s in space.image_sizes)
    rng = random.Random(0)
    for _ in range(20):
        assert_inside(space, space.mutate(space.sample(rng), rng))
    if shape == (1, 28, 28) and space.name in ("mcu", "fpga"):
        assert space.image_sizes == (24, 28) and space.embed_dims == (48, 64, 80, 96) and space.head_dim == 16


def test_shipped_files_use_exactly_the_fields():
    for kind in ("mcu", "cpu", "fpga"):
        d = yaml.safe_load((SPACES_DIR / f"{kind}.yaml").read_text())
        assert d["name"] == kind
        size = max(d["image_sizes"])
        assert SearchSpace.from_dict(d, image_shape=(1, size, size), num_classes=10).name == kind
    assert default_space("cpu", (1, 28, 28), 10).max_embed == 192
    with pytest.raises(UserInputError, match="no image size"):
        default_space("mcu", (1, 5, 5), 10)


def test_sample_and_mutate_are_fast():
    space, rng = default_space("mcu", (1, 28, 28), 10), random.Random(0)
    start, n = time.perf_counter(), 2000
    for _ in range(n):
        space.mutate(space.sample(rng), rng)
    rate = n / (time.perf_counter() - start)
    assert rate >= 1000, f"{rate:.0f} sample+mutate per second"  # ~9000/s measured; lenient for a loaded CI box
