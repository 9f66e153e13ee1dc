"""Analytic MAC / parameter counts against counting the real module with forward hooks."""

from dataclasses import replace

import torch
from hypothesis import given, settings
from torch import nn

from edgevit.model.counts import count_macs, count_params, count_parts
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import Attention, TokenMerge, VisionTransformer
from tests.conftest import vit_specs
from tests.model.merge_strategies import merged_vit_specs


def hooked_macs(model: VisionTransformer) -> int:
    """MACs seen by hooks: every Linear / Conv2d from its real shapes, the two attention products and
    token merging's similarity matrix (mergeable A tokens x B tokens x head_dim)."""
    total = 0

    def linear_hook(m, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features  # per image

    def conv_hook(m, inp, out):
        nonlocal total
        k = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        total += out.numel() // out.shape[0] * k

    def attn_hook(m, inp, out):
        nonlocal total
        n = inp[0].shape[1]
        total += 2 * n * n * m.heads * m.head_dim

    def merge_hook(m, inp, out):
        nonlocal total
        n, hd = inp[0].shape[1], inp[1].shape[-1]
        total += ((n + 1) // 2 - (m.protect + 1) // 2) * (n // 2 - m.protect // 2) * hd  # unprotected A x B

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
        elif isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, Attention):
            handles.append(mod.register_forward_hook(attn_hook))
        elif isinstance(mod, TokenMerge):
            handles.append(mod.register_forward_hook(merge_hook))
    spec = model.spec
    with torch.no_grad():
        model(torch.zeros(2, spec.in_channels, spec.image_size, spec.image_size))
    for h in handles:
        h.remove()
    return total  # every hook adds per-image work


@settings(max_examples=40, deadline=None)
@given(vit_specs())
def test_macs_and_params_match_the_module(spec):
    model = VisionTransformer(spec)
    assert count_macs(spec) == hooked_macs(model)
    assert count_params(spec) == model.num_params()


@settings(max_examples=25, deadline=None)
@given(merged_vit_specs())
def test_macs_of_merged_models_match_the_module(spec):
    model = VisionTransformer(spec)
    assert count_macs(spec) == hooked_macs(model)
    assert count_params(spec) == model.num_params()



def test_zoo_counts_and_parts():
    spec = ViTSpec.load("models/fmnist-tiny/spec.yaml")
    parts = count_parts(spec)
    assert [p.name for p in parts] == ["embed", "block0", "block1", "block2", "block3", "head"]
    assert count_params(spec) == VisionTransformer(spec).num_params() == 139018
    assert count_macs(spec) == hooked_macs(VisionTransformer(spec))


def test_zoo_merged_counts_shrink_every_later_block():
    spec = ViTSpec.load("models/fmnist-tiny/spec.yaml")
    merged = spec.with_blocks([replace(b, merge_r=8) for b in spec.blocks])
    assert merged.tokens_per_block() == [50, 42, 34, 26, 18]
    assert count_macs(merged) == hooked_macs(VisionTransformer(merged))
    plain, cut = count_parts(spec), count_parts(merged)
    assert [p.params for p in plain] == [p.params for p in cut]  # merging adds no parameters
    assert all(c.macs < p.macs for p, c in zip(plain[1:-1], cut[1:-1]))
    assert count_macs(spec) / count_macs(merged) > 1.3
