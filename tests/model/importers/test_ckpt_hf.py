"""Hugging Face ViT / DeiT checkpoints (small random configs, saved locally).

Directories, bare files, both key generations (transformers 4.x and 5.x names)."""

import json

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    DeiTConfig, DeiTForImageClassification, DeiTForImageClassificationWithTeacher, ViTConfig,
    ViTForImageClassification,
)

from edgevit.errors import CheckpointError
from edgevit.model.importers.torch_state import import_hf_directory, import_state_dict
from tests.model.importers.timm_reference import assert_logits_close, randomize

# transformers 5 names the PIL (no torchvision) processor *Pil; 4.x has only ViTImageProcessor
ViTImageProcessorPil = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
# transformers 4.x layer names -> 5.x names (order matters: attention.output.dense before output.dense)
V4_TO_V5 = (("encoder.layer.", "layers."), ("attention.attention.query", "attention.q_proj"),
            ("attention.attention.key", "attention.k_proj"), ("attention.attention.value", "attention.v_proj"),
            ("attention.output.dense", "attention.o_proj"), ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2"))


def key_generation(state: dict, generation: str) -> dict:
    """The same tensors under transformers 4.x or 5.x layer names, whatever the installed version uses."""
    out = {}
    for key, value in state.items():
        if "layer" in key:
            pairs = V4_TO_V5 if generation == "5.x" else [(new, old) for old, new in reversed(V4_TO_V5)]
            for old, new in pairs:
                key = key.replace(old, new)
        out[key] = value
    return out


SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, image_size=16,
             patch_size=4, num_channels=3, num_labels=7)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def hf_model(cls=ViTForImageClassification, config_cls=ViTConfig, seed=0, **overrides):
    """A random-init Hugging Face classifier with large enough random weights."""
    torch.manual_seed(seed)
    return randomize(cls(config_cls(**(SMALL | overrides))), seed=seed)


def hf_logits(model, x):
    with torch.no_grad():
        return model(pixel_values=x).logits


def saved(model, tmp_path, with_processor=True):
    """save_pretrained (transformers 4.x key names on disk) plus a preprocessor_config.json."""
    out = tmp_path / "hf"
    model.save_pretrained(out)
    if with_processor:
        ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=MEAN, image_std=STD).save_pretrained(out)
    return out


X = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def test_vit_directory_imports_with_preprocessing(tmp_path):
    model = hf_model()
    out = saved(model, tmp_path)
    assert any(".attention.attention.query." in k for k in load_file(str(out / "model.safetensors")))
    result = import_hf_directory(out)
    with torch.no_grad():
        assert_logits_close(result.model(X), hf_logits(model, X))
    spec = result.model.spec
    assert result.format == "huggingface" and result.report["layout"] == "huggingface-4.x"
    assert (spec.embed_dim, spec.depth, spec.blocks[0].heads, spec.blocks[0].mlp_hidden) == (32, 2, 4, 48)
    assert spec.norm_eps == 1e-12 and spec.pool == "cls" and spec.num_classes == 7
    assert result.preprocess_source == str(out / "preprocessor_config.json")
    np.testing.assert_allclose(result.model.preprocess.mean, MEAN, rtol=1e-12)
    np.testing.assert_allclose(result.model.preprocess.std, STD, rtol=1e-12)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    processed = ViTImageProcessorPil.from_pretrained(out)(image, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(result.model.preprocess.apply(image.transpose(2, 0, 1)), processed, atol=1e-5)


def test_bare_files_both_key_generations(tmp_path):
    model = hf_model(seed=1)
    out = saved(model, tmp_path, with_processor=False)
    want = hf_logits(model, X)
    bare = import_state_dict(out / "model.safetensors", config=out / "config.json")
    assert bare.preprocess_source is None and bare.model.spec.norm_eps == 1e-12
    legacy = key_generation(model.state_dict(), "4.x")
    assert legacy.keys() == load_file(str(out / "model.safetensors")).keys()  # what save_pretrained writes
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    v5 = key_generation(model.state_dict(), "5.x")  # vit.layers.N.attention.q_proj ...
    assert any(".attention.q_proj." in k for k in v5) and v5.keys() != legacy.keys()
    torch.save(v5, tmp_path / "v5.bin")
    old = import_state_dict(tmp_path / "pytorch_model.bin", heads=4)
    new = import_state_dict(tmp_path / "v5.bin", heads=4)
    assert old.report["layout"] == "huggingface-4.x" and new.report["layout"] == "huggingface-5.x"
    assert any("eps 1e-12: the huggingface default" in n for n in old.notes)
    with torch.no_grad():
        for result in (bare, old, new):
            assert_logits_close(result.model(X), want)
    with pytest.raises(CheckpointError, match=r"head count .* pass --heads N"):
        import_state_dict(tmp_path / "v5.bin")
    with pytest.raises(CheckpointError, match=r"heads=3 was given but .*config\.json says 4"):
        import_state_dict(out / "model.safetensors", heads=3, config=out / "config.json")


def test_no_qkv_bias_and_ignored_pooler(tmp_path):
    model = hf_model(seed=2, qkv_bias=False)
    state = key_generation(model.state_dict(), "5.x")
    state["vit.pooler.dense.weight"], state["vit.pooler.dense.bias"] = torch.ones(32, 32), torch.ones(32)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    result = import_state_dict(tmp_path / "w.safetensors", heads=4)
    with torch.no_grad():
        assert_logits_close(result.model(X), hf_logits(model, X))
    assert any("pooler" in n and "ignored" in n for n in result.notes)
    assert any("no qkv bias" in n for n in result.notes)


def test_deit_with_teacher_averages_heads(tmp_path):
    model = hf_model(DeiTForImageClassificationWithTeacher, DeiTConfig, seed=3)
    result = import_hf_directory(saved(model, tmp_path))
    with torch.no_grad():
        assert_logits_close(result.model(X), hf_logits(model, X))
    spec = result.model.spec
    assert spec.pool == "cls_dist" and spec.distill_token and spec.norm_eps == 1e-12


def test_deit_single_classifier_keeps_the_distillation_token(tmp_path):
    model = hf_model(DeiTForImageClassification, DeiTConfig, seed=4)
    torch.save(key_generation(model.state_dict(), "5.x"), tmp_path / "deit.bin")
    result = import_state_dict(tmp_path / "deit.bin", heads=4)
    with torch.no_grad():
        assert_logits_close(result.model(X), hf_logits(model, X))
    assert result.model.spec.pool == "cls" and result.model.spec.distill_token


def test_hf_refusals_name_the_cause(tmp_path):
    out = saved(hf_model(seed=5, hidden_act="gelu_new"), tmp_path, with_processor=False)
    with pytest.raises(CheckpointError, match=r"hidden_act 'gelu_new' is not the exact \(erf\) GELU"):
        import_hf_directory(out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(config | {"hidden_act": "gelu", "model_type": "dinov2"}))
    with pytest.raises(CheckpointError, match="model_type 'dinov2' is not a ViT/DeiT"):
        import_hf_directory(out)
    (out / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        import_hf_directory(out)
    state = hf_model(seed=6).state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier.")}, tmp_path / "body.bin")
    with pytest.raises(CheckpointError, match=r"missing key 'head\.weight' \(the classifier"):
        import_state_dict(tmp_path / "body.bin", heads=4)
    state = key_generation(state, "5.x")
    torch.save(dict(state, **{"vit.layers.0.attention.rope.freq": torch.ones(2)}), tmp_path / "odd.bin")
    with pytest.raises(CheckpointError, match=r"unexpected key 'vit\.layers\.0\.attention\.rope\.freq'"):
        import_state_dict(tmp_path / "odd.bin", heads=4)


def test_sharded_directory_and_processor_size_note(tmp_path):
    model = hf_model(seed=7)
    out = tmp_path / "sharded"
    model.save_pretrained(out, max_shard_size="20KB")
    assert (out / "model.safetensors.index.json").is_file()
    ViTImageProcessorPil(size={"height": 24, "width": 24}).save_pretrained(out)
    result = import_hf_directory(out)
    with torch.no_grad():
        assert_logits_close(result.model(X), hf_logits(model, X))
    assert result.report["preprocessor"]["input_size"] == 24
    assert any("24 x 24 images but the model takes 16 x 16" in n for n in result.notes)
    np.testing.assert_allclose(result.model.preprocess.mean, [0.5] * 3)
