"""The DeiT distillation token in the spec and the torch model: YAML, validation, parameters,
DeiT's inference head, checkpoints and ONNX export (checked with onnxruntime)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from edgevit.errors import SpecError
from edgevit.model.checkpoint import load_checkpoint, save_checkpoint
from edgevit.model.counts import count_macs, count_params, count_parts
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from tests.conftest import vit_specs
from tests.lower.int8_helpers import randomise

BASE = dict(image_size=8, in_channels=3, patch_size=2, embed_dim=12, num_classes=4, name="deit-t")


def deit_spec(pool: str = "cls_dist", **kw) -> ViTSpec:
    """A small distilled spec: 2 blocks, 16 patches + class + distillation tokens."""
    return ViTSpec.uniform(depth=2, heads=3, head_dim=4, mlp_hidden=24, pool=pool, distill_token=True,
                           **{**BASE, **kw})


# ---------------------------------------------------------------- spec

def test_yaml_writes_distill_token_only_when_true() -> None:
    spec = deit_spec()
    text = spec.to_yaml()
    assert "distill_token: true" in text and "pool: cls_dist" in text
    assert ViTSpec.from_yaml(text) == spec and ViTSpec.from_yaml(text).to_yaml() == text
    plain = replace(spec, pool="cls", distill_token=False)
    assert "distill_token" not in plain.to_yaml()
    assert ViTSpec.from_yaml(plain.to_yaml()).distill_token is False


@settings(max_examples=60, deadline=None)
@given(spec=vit_specs())
def test_random_specs_round_trip_and_count_prefix_tokens(spec) -> None:
    assert ViTSpec.from_yaml(spec.to_yaml()) == spec
    assert spec.num_prefix == (spec.pool != "mean") + spec.distill_token
    assert spec.tokens_per_block()[0] == spec.num_patches + spec.num_prefix
    assert spec.distill_token == (spec.pool == "cls_dist") or spec.pool == "cls"


@pytest.mark.parametrize("fields, message", [
    (dict(pool="cls_dist"), r"pool 'cls_dist' averages the class and distillation heads; it needs distill_token: true"),
    (dict(pool="mean", distill_token=True), r"distill_token: true needs pool 'cls' or 'cls_dist'"),
    (dict(distill_token="yes"), r"distill_token must be true or false \(got 'yes'\)"),
    (dict(distill_token=1), r"distill_token must be true or false \(got 1\)"),
    (dict(pool="max"), r"pool must be one of \('cls', 'mean', 'cls_dist'\)"),
])
def test_invalid_distillation_fields_name_the_field(fields, message) -> None:
    d = {**BASE, "depth": 1, "heads": 2, "head_dim": 4, "mlp_hidden": 8, **fields}
    with pytest.raises(SpecError, match=r"^spec\.yaml: deit-t: " + message):
        ViTSpec.from_dict(d, source="spec.yaml")


def test_merge_limits_count_both_prefix_tokens() -> None:
    spec = deit_spec()  # 18 tokens: 16 mergeable
    assert spec.with_blocks([replace(spec.blocks[0], merge_r=8), spec.blocks[1]]).tokens_per_block() == [18, 10, 10]
    with pytest.raises(SpecError, match=r"blocks\[0\]\.merge_r = 9 exceeds half of the 16 mergeable tokens"):
        spec.with_blocks([replace(spec.blocks[0], merge_r=9), spec.blocks[1]])


# ---------------------------------------------------------------- model

def test_parameters_and_state_dict_keys() -> None:
    model = build_model(deit_spec(), seed=0)
    sd = model.state_dict()
    assert sd["dist_token"].shape == (1, 1, 12) and sd["pos_embed"].shape == (1, 18, 12)
    assert sd["head_dist.weight"].shape == (4, 12) and sd["head_dist.bias"].shape == (4,)
    assert not torch.equal(sd["dist_token"], sd["cls_token"])  # both initialised (trunc normal)
    cls_only = build_model(deit_spec(pool="cls"), seed=0)
    assert cls_only.dist_token is not None and cls_only.head_dist is None
    assert "head_dist.weight" not in cls_only.state_dict()
    plain = build_model(replace(deit_spec(pool="cls"), distill_token=False), seed=0)
    assert plain.dist_token is None and plain.head_dist is None


def hand_written_deit(sd: dict[str, torch.Tensor], spec: ViTSpec, x: torch.Tensor) -> torch.Tensor:
    """DeiT inference from a state_dict with plain torch functions: patch conv, [cls, dist, patches]
    + positions, pre-norm blocks, final norm; logits = (head(cls) + head_dist(dist)) / 2
    (pool "cls_dist") or head(cls) (pool "cls")."""
    eps, d = spec.norm_eps, spec.embed_dim
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=spec.patch_size)
    t = t.flatten(2).transpose(1, 2)
    b = t.shape[0]
    t = torch.cat([sd["cls_token"].expand(b, 1, d), sd["dist_token"].expand(b, 1, d), t], dim=1) + sd["pos_embed"]
    for i, blk in enumerate(spec.blocks):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        q, k, v = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, -1, blk.heads, blk.head_dim).transpose(1, 2) for z in (q, k, v))  # [B, H, N, hd]
        out = F.softmax(q @ k.transpose(-2, -1) / blk.head_dim ** 0.5, dim=-1) @ v
        heads = [out[:, j] for j in range(blk.heads)]
        t = t + F.linear(torch.cat(heads, dim=-1), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(t, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        h = F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
        t = t + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    n = F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], eps)
    logits = F.linear(n[:, 0], sd["head.weight"], sd["head.bias"])
    if spec.pool == "cls_dist":
        logits = (logits + F.linear(n[:, 1], sd["head_dist.weight"], sd["head_dist.bias"])) / 2
    return logits


@pytest.mark.parametrize("pool", ["cls_dist", "cls"])
def test_forward_is_deits_inference(pool) -> None:
    spec = deit_spec(pool=pool)
    model = randomise(build_model(spec, seed=1), 1)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = model(x), hand_written_deit(model.state_dict(), spec, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_distillation_head_and_token_matter() -> None:
    """pool cls_dist reads head_dist; pool cls ignores it but still attends to the distillation token."""
    model = randomise(build_model(deit_spec(), seed=3), 3)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = model(x)
        model.head_dist.bias.add_(1.0)
        torch.testing.assert_close(model(x), before + 0.5)  # the average of the two heads
        cls_only = build_model(deit_spec(pool="cls"))
        cls_only.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head_dist")})
        cls_only.eval()
        y = cls_only(x)
        cls_only.dist_token.add_(torch.randn(1, 1, 12, generator=torch.Generator().manual_seed(5)))
        assert not torch.allclose(cls_only(x), y)  # (a constant shift would vanish in the LayerNorms)


@settings(max_examples=25, deadline=None)
@given(spec=vit_specs().filter(lambda s: s.distill_token))
def test_counts_of_distilled_models_match_the_module(spec) -> None:
    model = build_model(spec)
    assert count_params(spec) == model.num_params()
    heads = 2 if spec.pool == "cls_dist" else 1
    assert count_parts(spec)[-1].macs == heads * spec.embed_dim * spec.num_classes
    assert count_macs(spec) > 0


# ---------------------------------------------------------------- checkpoints and ONNX

def test_checkpoint_round_trip(tmp_path) -> None:
    model = randomise(build_model(deit_spec(), seed=5), 5)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt"))
    assert loaded.spec == model.spec and loaded.spec.distill_token
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("pool", ["cls_dist", "cls"])
def test_onnx_export_agrees_with_onnxruntime(tmp_path, pool) -> None:
    import onnxruntime as ort

    from edgevit.model.onnx_export import export_onnx

    model = randomise(build_model(deit_spec(pool=pool), seed=6), 6)
    path = export_onnx(model, tmp_path / "deit.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert ViTSpec.from_yaml(meta["edgevit.spec"]) == model.spec
    assert json.loads(meta["edgevit.preprocess"]) == model.preprocess.to_dict()
    x = np.random.default_rng(7).standard_normal((6, 3, 8, 8)).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
