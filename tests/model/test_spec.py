import pytest
from hypothesis import given, settings

from edgevit.errors import SpecError
from edgevit.model.spec import BlockSpec, ViTSpec
from tests.conftest import vit_specs


@settings(max_examples=60, deadline=None)
@given(vit_specs())
def test_yaml_round_trip_is_exact(spec):
    text = spec.to_yaml()
    again = ViTSpec.from_yaml(text)
    assert again == spec
    assert again.to_yaml() == text


def test_canonical_texts_survive(tmp_path):
    for path in ["models/fmnist-tiny/spec.yaml", "models/fmnist-small/spec.yaml"]:
        text = open(path).read()
        assert ViTSpec.from_yaml(text).to_yaml() == text


def test_shorthand_expands_to_uniform_blocks():
    s = ViTSpec.from_yaml("image_size: 28\nin_channels: 1\npatch_size: 4\nembed_dim: 64\nnum_classes: 10\n"
                          "depth: 3\nheads: 4\nmlp_ratio: 2\n")
    assert s.depth == 3 and s.is_uniform
    assert s.blocks[0] == BlockSpec(heads=4, head_dim=16, mlp_hidden=128)
    assert s.tokens_per_block() == [50, 50, 50, 50]


def test_per_block_spec_is_written_per_block():
    s = ViTSpec(image_size=8, in_channels=1, patch_size=2, embed_dim=8, num_classes=3,
                blocks=(BlockSpec(2, 4, 16, ranks={"fc1": 3}), BlockSpec(1, 4, 8, merge_r=2)))
    d = s.to_dict()
    assert "blocks" in d and "depth" not in d
    assert d["blocks"][0]["ranks"] == {"fc1": 3} and d["blocks"][1]["merge_r"] == 2
    assert s.tokens_per_block() == [17, 17, 15]


@pytest.mark.parametrize("yaml_text, needle", [
    ("image_size: 28\nin_channels: 1\npatch_size: 5\nembed_dim: 8\nnum_classes: 2\ndepth: 1\nheads: 2\n", "patch_size 5"),
    ("image_size: 28\nin_channels: 1\npatch_size: 4\nembed_dim: 8\nnum_classes: 2\ndepth: 1\nheads: 3\n", "not divisible"),
    ("image_size: 28\nin_channels: 1\npatch_size: 4\nembed_dim: -8\nnum_classes: 2\ndepth: 1\nheads: 2\n", "embed_dim"),
    ("image_size: 28\nin_channels: 1\npatch_size: 4\nembed_dim: 8\nnum_classes: 2\nblocks:\n- {heads: 2, head_dim: 4}\n",
     "blocks[0].mlp_hidden: missing"),
    ("image_size: 28\nin_channels: 1\npatch_size: 4\nembed_dim: 8\nnum_classes: 2\nblocks:\n"
     "- {heads: 2, head_dim: 4, mlp_hidden: 8, ranks: {qkvv: 2}}\n", "unknown linear 'qkvv'"),
    ("image_size: 28\nin_channels: 1\npatch_size: 4\nembed_dim: 8\nnum_classes: 2\nblocks:\n"
     "- {heads: 2, head_dim: 4, mlp_hidden: 8, merge_r: 40}\n", "merge_r"),
    ("image_size: 28\nin_channels: 1\npatch_size: 4\nembed_dim: 8\nnum_class: 2\ndepth: 1\nheads: 2\n", "unknown field"),
    ("image_size: [28\n", "not valid YAML"),
    ("image_size: 28\nin_channels: 1\npatch_size: 4\nembed_dim: 8\nnum_classes: 2\npool: max\ndepth: 1\nheads: 2\n", "pool"),
])
def test_bad_specs_name_the_field(yaml_text, needle):
    with pytest.raises(SpecError) as e:
        ViTSpec.from_yaml(yaml_text, source="bad.yaml")
    assert needle in str(e.value)
    assert str(e.value).startswith("bad.yaml")


def test_load_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        ViTSpec.load(tmp_path / "nope.yaml")
