"""timm-layout checkpoints: exact variants agree with the timm-semantics reference, the others are refused by cause."""

import json

import pytest
import torch
from safetensors.torch import save_file

from edgevit.errors import CheckpointError
from edgevit.model.checkpoint import save_checkpoint
from edgevit.model.importers.torch_state import import_state_dict
from edgevit.model.vit import build_model
from tests.model.importers.timm_reference import TimmViT, assert_logits_close, randomize


def imported_logits(ref: TimmViT, tmp_path, suffix: str = ".pth", **kw):
    """Save `ref`'s state_dict to a file, import it, and return (result, imported logits, reference logits)."""
    path = tmp_path / f"timm{suffix}"
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"model": state}, path)
    result = import_state_dict(path, **kw)
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return result, result.model(x), ref(x)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("variant, note", [
    ({}, None),
    ({"global_pool": "avg", "class_token": False}, None),
    ({"qkv_bias": False}, "no qkv bias"),
    ({"init_values": 0.1}, "LayerScale ls1.gamma folded into attn.proj"),
    ({"no_embed_class": True}, "no_embed_class"),
    ({"patch_bias": False}, "patch embedding has no bias"),
])
def test_timm_variants_import_exactly(variant, note, suffix, tmp_path):
    ref = randomize(TimmViT(**variant), seed=3)
    result, got, want = imported_logits(ref, tmp_path, suffix, heads=4)
    assert_logits_close(got, want)
    assert result.format == "timm" and result.preprocess_source is None
    assert result.report["layout"] == "timm"
    spec = result.model.spec
    assert (spec.embed_dim, spec.depth, spec.blocks[0].heads, spec.image_size, spec.norm_eps) == (32, 2, 4, 16, 1e-6)
    assert spec.pool == ("mean" if variant.get("global_pool") == "avg" else "cls")
    if note:
        assert any(note in n for n in result.notes), result.notes


def test_layer_scale_notes_summarise_all_blocks(tmp_path):
    ref = randomize(TimmViT(init_values=1e-2, depth=3), seed=4)
    result, got, want = imported_logits(ref, tmp_path, heads=4)
    assert_logits_close(got, want)
    assert "blocks 0, 1, 2: LayerScale ls2.gamma folded into mlp.fc2 (weight rows and bias scaled)" in result.notes


def test_distilled_deit_averages_both_heads(tmp_path):
    ref = randomize(TimmViT(distilled=True), seed=5)
    result, got, want = imported_logits(ref, tmp_path, heads=4)
    assert_logits_close(got, want)
    spec = result.model.spec
    assert spec.pool == "cls_dist" and spec.distill_token and spec.num_prefix == 2
    assert any("averaged" in n for n in result.notes)


@pytest.mark.parametrize("variant, message", [
    ({"pre_norm": True}, r"'norm_pre\.weight' means a LayerNorm before the blocks \(pre_norm / norm_pre\)"),
    ({"reg_tokens": 4}, r"'reg_token' means register tokens"),
    ({"qk_norm": True}, r"'blocks\.0\.attn\.q_norm\.weight' means q/k normalisation \(qk_norm\)"),
    ({"global_pool": "avg"}, r"a class token with average pooling over the patch tokens \(fc_norm\)"),
    ({"global_pool": "avg", "fc_norm": False}, r"a class token with average pooling"),
    ({"class_token": False}, r"no class token \(cls_token\) but a final 'norm' before pooling"),
    ({"class_token": False, "global_pool": "avg", "fc_norm": False}, r"no class token \(cls_token\) but a final"),
])
def test_timm_variants_refused_naming_the_cause(variant, message, tmp_path):
    ref = randomize(TimmViT(**variant))
    if variant.get("fc_norm") is False and variant.get("class_token", True):
        # keys alone look like token pooling: only a config saying global_pool=avg reveals it
        (tmp_path / "cfg.yaml").write_text("global_pool: avg\nheads: 4\n")
        kw = {"config": tmp_path / "cfg.yaml"}
    else:
        kw = {"heads": 4}
    with pytest.raises(CheckpointError, match=message):
        imported_logits(ref, tmp_path, **kw)


def test_missing_heads_says_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError, match=r"head count .* pass --heads N"):
        imported_logits(randomize(TimmViT()), tmp_path)
    with pytest.raises(CheckpointError, match=r"attn\.qkv has 96 outputs: not 3 x 5 heads"):
        imported_logits(randomize(TimmViT()), tmp_path, heads=5)


def test_unknown_and_missing_keys_are_named(tmp_path):
    state = randomize(TimmViT()).state_dict()
    torch.save(dict(state, **{"blocks.1.attn.extra.weight": torch.ones(3)}), tmp_path / "extra.pth")
    for kw in ({"heads": 4}, {}):  # the real cause comes before asking for the head count
        with pytest.raises(CheckpointError, match=r"unexpected key 'blocks\.1\.attn\.extra\.weight' \(shape \(3,\)\)"):
            import_state_dict(tmp_path / "extra.pth", **kw)
    torch.save({k: v for k, v in state.items() if not k.startswith("head.")}, tmp_path / "headless.pth")
    with pytest.raises(CheckpointError, match=r"missing key 'head\.weight' \(the classifier"):
        import_state_dict(tmp_path / "headless.pth", heads=4)
    torch.save({k: v for k, v in state.items() if k != "blocks.1.mlp.fc1.bias"}, tmp_path / "hole.pth")
    with pytest.raises(CheckpointError, match=r"missing key 'blocks\.1\.mlp\.fc1\.bias'"):
        import_state_dict(tmp_path / "hole.pth", heads=4)
    torch.save({"conv.weight": torch.ones(2)}, tmp_path / "cnn.pth")
    with pytest.raises(CheckpointError, match="neither the timm key layout .* keys start conv.weight"):
        import_state_dict(tmp_path / "cnn.pth", heads=4)
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a PyTorch state_dict file"):
        import_state_dict(tmp_path / "model.onnx")


def test_ddp_prefix_half_precision_and_config_checks(tmp_path):
    ref = randomize(TimmViT(), seed=7)
    state = {"module." + k: v.half() for k, v in ref.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "ddp.pth")
    result = import_state_dict(tmp_path / "ddp.pth", heads=4)
    assert any("float16: converted to float32" in n for n in result.notes)
    ref.load_state_dict({k[len("module."):]: v.float() for k, v in state.items()})
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert_logits_close(result.model(x), ref(x))
    (tmp_path / "big.json").write_text(json.dumps({"image_size": 32, "heads": 4}))
    with pytest.raises(CheckpointError, match="image_size 32, but the position embeddings cover a 4 x 4 grid"):
        import_state_dict(tmp_path / "ddp.pth", config=tmp_path / "big.json")
    (tmp_path / "pool.json").write_text(json.dumps({"global_pool": "max", "heads": 4}))
    with pytest.raises(CheckpointError, match="global_pool 'max' is not supported"):
        import_state_dict(tmp_path / "ddp.pth", config=tmp_path / "pool.json")


def test_edgevit_checkpoint_file_loads_as_is(tmp_path):
    from edgevit.model.spec import ViTSpec

    spec = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=8, image_size=8, in_channels=1,
                           patch_size=4, embed_dim=8, num_classes=3, pool="mean")
    model = build_model(spec, seed=0)
    save_checkpoint(model, tmp_path / "m.safetensors")
    result = import_state_dict(tmp_path / "m.safetensors")
    assert result.format == "edgevit" and result.model.spec == spec
    assert result.preprocess_source and "edgevit checkpoint" in result.preprocess_source
