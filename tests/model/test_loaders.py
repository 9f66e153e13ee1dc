"""Checkpoints, timm-format state_dicts and ONNX export."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgevit.data.normalize import Normalization
from edgevit.errors import CheckpointError
from edgevit.model.checkpoint import load_checkpoint, save_checkpoint
from edgevit.model.onnx_export import export_onnx
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.model.timm import infer_timm_spec, load_timm_state_dict
from edgevit.model.vit import build_model


def timm_state_dict(spec: ViTSpec, seed: int = 0) -> dict:
    """A synthetic state_dict with timm's key names and layout, random values."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    d, c, p = spec.embed_dim, spec.in_channels, spec.patch_size
    sd = {"patch_embed.proj.weight": r(d, c, p, p), "patch_embed.proj.bias": r(d),
          "pos_embed": r(1, spec.num_patches + spec.num_prefix, d)}
    if spec.pool == "cls":
        sd["cls_token"] = r(1, 1, d)
    for i, b in enumerate(spec.blocks):
        a = b.attn_dim
        sd.update({f"blocks.{i}.norm1.weight": 1 + r(d), f"blocks.{i}.norm1.bias": r(d),
                   f"blocks.{i}.attn.qkv.weight": r(3 * a, d), f"blocks.{i}.attn.qkv.bias": r(3 * a),
                   f"blocks.{i}.attn.proj.weight": r(d, a), f"blocks.{i}.attn.proj.bias": r(d),
                   f"blocks.{i}.norm2.weight": 1 + r(d), f"blocks.{i}.norm2.bias": r(d),
                   f"blocks.{i}.mlp.fc1.weight": r(b.mlp_hidden, d), f"blocks.{i}.mlp.fc1.bias": r(b.mlp_hidden),
                   f"blocks.{i}.mlp.fc2.weight": r(d, b.mlp_hidden), f"blocks.{i}.mlp.fc2.bias": r(d)})
    norm = "norm" if spec.pool == "cls" else "fc_norm"
    sd.update({f"{norm}.weight": 1 + r(d), f"{norm}.bias": r(d),
               "head.weight": r(spec.num_classes, d), "head.bias": r(spec.num_classes)})
    return sd


def timm_reference_forward(sd: dict, spec: ViTSpec, heads: int, x: torch.Tensor) -> torch.Tensor:
    """timm's ViT forward written out with functional ops (no edgevit modules)."""
    F = torch.nn.functional
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=spec.patch_size)
    t = t.flatten(2).transpose(1, 2)
    if "cls_token" in sd:
        t = torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], 1)
    t = t + sd["pos_embed"]
    for i in range(spec.depth):
        k = f"blocks.{i}."
        h = F.layer_norm(t, (spec.embed_dim,), sd[k + "norm1.weight"], sd[k + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, sd[k + "attn.qkv.weight"], sd[k + "attn.qkv.bias"])
        b, n, _ = qkv.shape
        q, kk, v = qkv.reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, kk, v).transpose(1, 2).reshape(b, n, -1)
        t = t + F.linear(o, sd[k + "attn.proj.weight"], sd[k + "attn.proj.bias"])
        h = F.layer_norm(t, (spec.embed_dim,), sd[k + "norm2.weight"], sd[k + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[k + "mlp.fc1.weight"], sd[k + "mlp.fc1.bias"])),
                     sd[k + "mlp.fc2.weight"], sd[k + "mlp.fc2.bias"])
        t = t + h
    if "cls_token" in sd:
        pooled = F.layer_norm(t, (spec.embed_dim,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)[:, 0]
    else:
        pooled = F.layer_norm(t.mean(1), (spec.embed_dim,), sd["fc_norm.weight"], sd["fc_norm.bias"], eps=1e-6)
    return F.linear(pooled, sd["head.weight"], sd["head.bias"])


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_timm_state_dict_maps_onto_an_equivalent_model(pool, tmp_path):
    spec = ViTSpec.uniform(depth=2, heads=2, head_dim=8, mlp_hidden=24, image_size=12, in_channels=3,
                           patch_size=4, embed_dim=16, num_classes=5, pool=pool)
    sd = timm_state_dict(spec)
    x = torch.randn(3, 3, 12, 12)
    expected = timm_reference_forward(sd, spec, 2, x)
    assert infer_timm_spec(sd, heads=2) == spec
    for source in (sd, tmp_path / "timm.pth"):
        torch.save({"model": sd}, tmp_path / "timm.pth")
        model = load_timm_state_dict(source, heads=2)
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert load_timm_state_dict(sd, spec=spec).spec == spec


def test_timm_mismatches_are_rejected_with_key_and_shapes():
    spec = ViTSpec.uniform(depth=1, heads=2, head_dim=8, mlp_hidden=24, image_size=12, in_channels=1,
                           patch_size=4, embed_dim=16, num_classes=5)
    sd = timm_state_dict(spec)
    other = spec.with_blocks([BlockSpec(heads=2, head_dim=8, mlp_hidden=32)])
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.fc1\.weight.*\(24, 16\).*\(32, 16\)"):
        load_timm_state_dict(sd, spec=other)
    with pytest.raises(CheckpointError, match="head count"):
        load_timm_state_dict(sd)
    bad = dict(sd, **{"reg_token": torch.ones(1, 4, 16)})  # LayerScale now folds (tests/model/importers)
    with pytest.raises(CheckpointError, match="register tokens"):
        load_timm_state_dict(bad, heads=2)
    missing = {k: v for k, v in sd.items() if k != "blocks.0.attn.proj.bias"}
    with pytest.raises(CheckpointError, match="missing key 'blocks.0.attn.proj.bias'"):
        load_timm_state_dict(missing, spec=spec)


@pytest.mark.parametrize("single_file", [False, True])
def test_checkpoint_round_trip(tmp_path, single_file):
    spec = ViTSpec(image_size=8, in_channels=1, patch_size=2, embed_dim=8, num_classes=3,
                   blocks=(BlockSpec(2, 4, 16, ranks={"qkv": 3}), BlockSpec(1, 4, 8)), pool="mean")
    model = build_model(spec, Normalization((0.5,), (0.25,)), seed=1)
    path = tmp_path / ("m.safetensors" if single_file else "ckpt")
    save_checkpoint(model, path, info={"note": "x"})
    again = load_checkpoint(path)
    assert again.spec == spec and again.preprocess == model.preprocess
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), model.eval()(x))
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*"))


def test_checkpoint_that_does_not_match_its_spec(tmp_path):
    spec = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1,
                           patch_size=2, embed_dim=8, num_classes=3)
    save_checkpoint(build_model(spec), tmp_path / "c")
    wider = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=12, image_size=8, in_channels=1,
                            patch_size=2, embed_dim=8, num_classes=3)
    wider.save(tmp_path / "c" / "spec.yaml")
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.fc1\.weight.*\(16, 8\).*\(12, 8\)"):
        load_checkpoint(tmp_path / "c")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")


def test_onnx_export_matches_torch(tmp_path):
    spec = ViTSpec(image_size=8, in_channels=1, patch_size=2, embed_dim=8, num_classes=3,
                   blocks=(BlockSpec(2, 4, 16, ranks={"fc2": 3}), BlockSpec(1, 4, 8)))
    model = build_model(spec, seed=0).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    (got,) = sess.run(None, {"image": x})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
