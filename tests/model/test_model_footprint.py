"""model/footprint.py: the memory estimates are lower bounds close to what torch really keeps, and the
guards refuse before a model is built; checkpoint loading refuses non-finite weights by name."""

from __future__ import annotations

import math

import pytest
import torch

import edgevit.validate as validate
from edgevit.errors import CheckpointError, InfeasibleError
from edgevit.model.checkpoint import check_finite_weights, model_from_state_dict
from edgevit.model.counts import count_params
from edgevit.model.footprint import (activation_values_per_image, check_model_fits, check_training_fits,
                                     training_footprint)
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model

SPECS = [
    dict(depth=2, heads=2, head_dim=8, mlp_hidden=64, image_size=16, in_channels=1, patch_size=2, embed_dim=32,
         num_classes=3),
    dict(depth=1, heads=4, head_dim=16, mlp_hidden=256, image_size=28, in_channels=1, patch_size=4, embed_dim=128,
         num_classes=10),
    dict(depth=3, heads=3, head_dim=4, mlp_hidden=24, image_size=8, in_channels=3, patch_size=1, embed_dim=12,
         num_classes=2, pool="mean"),
]


def saved_activation_bytes(spec: ViTSpec, batch: int) -> int:
    """Bytes of the distinct tensors autograd saves for the backward pass of one training forward
    (parameters excluded)."""
    model = build_model(spec, None, seed=0).train()
    params = {p.data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            seen[t.data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(batch, spec.in_channels, spec.image_size, spec.image_size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).logsumexp(1).mean()
    return sum(seen.values())


@pytest.mark.parametrize("kw", SPECS)
def test_the_activation_estimate_is_a_close_lower_bound_of_what_autograd_keeps(kw) -> None:
    spec = ViTSpec.uniform(**kw)
    real = saved_activation_bytes(spec, batch=4)
    estimate = training_footprint(spec, 4).activations
    assert estimate == 4 * activation_values_per_image(spec) * 4
    assert estimate <= real <= 1.1 * estimate, (estimate, real)


@pytest.mark.parametrize("kw", SPECS)
def test_the_state_estimate_counts_every_parameter_four_times(kw) -> None:
    spec = ViTSpec.uniform(**kw)
    params = sum(p.numel() for p in build_model(spec, None, seed=0).parameters())
    need = training_footprint(spec, 1)
    assert need.params == count_params(spec) == params and need.state == 16 * params


def test_guards_refuse_before_any_module_is_built(monkeypatch) -> None:
    import edgevit.model.checkpoint as checkpoint

    spec = ViTSpec.uniform(depth=4, heads=4, head_dim=16, mlp_hidden=128, image_size=28, in_channels=1,
                           patch_size=4, embed_dim=100_000, num_classes=10, name="huge")
    monkeypatch.setattr(validate, "available_memory", lambda: (1 << 30, "MemAvailable in /proc/meminfo"))
    monkeypatch.setattr(checkpoint, "VisionTransformer", lambda *a: pytest.fail("built a module"))
    with pytest.raises(InfeasibleError, match=r"huge.yaml: a model of this spec needs at least .* \(\d[\d,]* B: "
                                              r"215,201,290 parameters x 8 B .*1 GiB available") as e:
        model_from_state_dict(spec, {}, None, "huge.yaml")
    assert e.value.exit_code == 3
    with pytest.raises(InfeasibleError, match=r"training this spec .* activations of a batch of 128 images"):
        check_training_fits(spec, 128, "huge.yaml")


def test_a_spec_that_fits_passes_the_guards(monkeypatch) -> None:
    spec = ViTSpec.uniform(**SPECS[0])
    monkeypatch.setattr(validate, "available_memory", lambda: (1 << 30, "MemAvailable in /proc/meminfo"))
    check_model_fits(spec, "s")
    assert check_training_fits(spec, 64, "s").total < 1 << 30


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_named(value) -> None:
    state = {"a.weight": torch.zeros(3, 4), "b.bias": torch.zeros(4), "steps": torch.tensor([1, 2])}
    check_finite_weights(state, "ok.safetensors")
    state["b.bias"][2] = value
    with pytest.raises(CheckpointError, match=rf"m.safetensors: tensor 'b.bias' holds 1 non-finite value\(s\) "
                                              rf"\(first: {value} at index \[2\]\)"):
        check_finite_weights(state, "m.safetensors")
