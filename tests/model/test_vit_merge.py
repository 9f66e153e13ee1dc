"""Token merging in the torch model: bipartite soft matching, size tracking, proportional attention."""

from __future__ import annotations

from dataclasses import replace

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.model.spec import ViTSpec
from edgevit.model.vit import bipartite_merge, build_like, build_model, merge_order
from tests.model.merge_strategies import merged_vit_specs


def test_merge_hand_example_weights_by_size_and_keeps_the_class_token_first():
    # N = 5: A = positions 0, 2, 4; B = 1, 3. Keys: token 2 is parallel to token 3, token 4 to token 1
    # but less so; token 0 (class token) is parallel to token 1 and must not merge.
    keys = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.0, 2.0], [1.0, 0.5]]])
    x = torch.arange(10, dtype=torch.float32).reshape(1, 5, 2)
    size = torch.tensor([[1.0, 1.0, 3.0, 1.0, 1.0]])
    out, s = bipartite_merge(x, keys, size, r=1, protect=1)
    # token 2 (size 3) merges into token 3 (size 1): (3 * [4, 5] + [6, 7]) / 4
    expected = torch.tensor([[[0.0, 1.0], [8.0, 9.0], [2.0, 3.0], [4.5, 5.5]]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(s, torch.tensor([[1.0, 1.0, 1.0, 4.0]]))
    out2, s2 = bipartite_merge(x, keys, size, r=2, protect=1)
    # then token 4 into token 1: ([2, 3] + [8, 9]) / 2
    torch.testing.assert_close(out2, torch.tensor([[[0.0, 1.0], [5.0, 6.0], [4.5, 5.5]]]))
    torch.testing.assert_close(s2, torch.tensor([[1.0, 2.0, 4.0]]))


def test_ties_go_to_the_lowest_index():
    keys = torch.ones(1, 6, 3)  # every similarity is 1
    src, dst, kept = merge_order(keys, r=2, protect=0)
    assert src.tolist() == [[0, 1]] and dst.tolist() == [[0, 0]] and kept.tolist() == [[2]]


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(2, 12), d=st.integers(1, 5), protect=st.integers(0, 2),
       seed=st.integers(0, 2**16), data=st.data())
def test_merging_conserves_size_and_size_weighted_sum(b, n, d, protect, seed, data):
    r = data.draw(st.integers(0, (n - protect) // 2))
    g = torch.Generator().manual_seed(seed)
    x, keys = torch.randn(b, n, d, generator=g), torch.randn(b, n, 3, generator=g)
    size = torch.randint(1, 5, (b, n), generator=g).float()
    out, s = bipartite_merge(x, keys, size, r, protect)
    assert out.shape == (b, n - r, d) and s.shape == (b, n - r)
    torch.testing.assert_close(s.sum(1), size.sum(1))
    torch.testing.assert_close((out * s[..., None]).sum(1), (x * size[..., None]).sum(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:, :protect], x[:, :protect])  # class (and distillation) tokens untouched
    torch.testing.assert_close(s[:, :protect], size[:, :protect])


def test_distillation_token_is_never_a_destination_and_stays_row_1():
    # N = 6: A = 0, 2, 4; B = 1, 3, 5. Token 2 is parallel to token 1 (the distillation token) but
    # must go to its next best, token 5 (cos 0.98); token 4 merges into token 3 (cos 1).
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.2, 1.0]]])
    x = torch.arange(12, dtype=torch.float32).reshape(1, 6, 2)
    out, s = bipartite_merge(x, keys, None, r=2, protect=2)
    expected = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [(6.0 + 8.0) / 2, (7.0 + 9.0) / 2], [(10.0 + 4.0) / 2, (11.0 + 5.0) / 2]]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(s, torch.tensor([[1.0, 1.0, 2.0, 2.0]]))
    src, dst, kept = merge_order(keys, r=2, protect=2)
    assert 0 not in dst.tolist()[0] and kept.tolist() == [[0]]


def test_r_zero_is_the_identity(tiny_spec):
    model = build_model(tiny_spec, seed=0).eval()
    zero = build_like(model, tiny_spec.with_blocks([replace(b, merge_r=0) for b in tiny_spec.blocks]))
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), zero(x))


def test_proportional_attention_with_unit_sizes_changes_nothing():
    spec = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=8, image_size=4, in_channels=1, patch_size=1,
                           embed_dim=8, num_classes=2)
    attn = build_model(spec, seed=0).blocks[0].attn
    x = torch.randn(3, 17, 8)
    with torch.no_grad():
        plain, _ = attn(x)
        ones, _ = attn(x, torch.ones(3, 17))
        big, _ = attn(x, torch.full((3, 17), 2.0))  # a uniform size is a constant shift of every score
        skewed, _ = attn(x, torch.cat([torch.full((3, 1), 50.0), torch.ones(3, 16)], 1))
    torch.testing.assert_close(plain, ones)
    torch.testing.assert_close(plain, big)
    assert (plain - skewed).abs().max() > 1e-3  # a size-50 key attracts attention


@settings(max_examples=15, deadline=None)
@given(spec=merged_vit_specs(), seed=st.integers(0, 2**16))
def test_merged_models_have_the_spec_token_counts(spec, seed):
    model = build_model(spec, seed=seed).eval()
    seen = []
    hooks = [blk.register_forward_hook(lambda m, i, o: seen.append(o[0].shape[1])) for blk in model.blocks]
    with torch.no_grad():
        y = model(torch.randn(2, spec.in_channels, spec.image_size, spec.image_size))
    for h in hooks:
        h.remove()
    assert y.shape == (2, spec.num_classes) and torch.isfinite(y).all()
    assert seen == spec.tokens_per_block()[1:]
    assert ViTSpec.from_yaml(spec.to_yaml()) == spec
