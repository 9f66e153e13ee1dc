"""Config files for the checkpoint importers: user files, timm Hub and Hugging Face configs, preprocessor configs."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgevit.errors import CheckpointError
from edgevit.model.importers.hf_config import read_model_config, read_preprocessor_config
from edgevit.model.importers.torch_state import import_hf_directory, import_state_dict
from tests.model.importers.timm_reference import TimmViT, assert_logits_close, randomize


@pytest.fixture
def timm_file(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(randomize(TimmViT(), seed=9).state_dict(), path)
    return path


def test_user_config_gives_heads_eps_and_preprocessing(timm_file, tmp_path):
    cfg = tmp_path / "model.yaml"
    cfg.write_text("heads: 4\nnorm_eps: 1.0e-5\nimage_size: 16\nmean: [0.5, 0.4, 0.3]\nstd: [0.2, 0.2, 0.25]\n")
    result = import_state_dict(timm_file, config=cfg)
    assert result.model.spec.norm_eps == 1e-5 and result.model.spec.blocks[0].heads == 4
    assert result.preprocess_source == str(cfg)
    assert result.model.preprocess.mean == (0.5, 0.4, 0.3) and result.report["config"] == str(cfg)
    assert not any("eps" in n for n in result.notes)


@pytest.mark.parametrize("text, message", [
    ("head: 4\n", r"unknown config field\(s\) \['head'\]"),
    ("heads: 4\nmean: [0.5, 0.5, 0.5]\n", "give both mean and std"),
    ("heads: 4\nmean: [0.5]\nstd: [0.5]\n", r"mean/std give 1 channel\(s\) but the model takes 3"),
    ("heads: 0\n", "heads must be a positive integer"),
    ("heads: 4\nimage_size: [16, 32]\n", r"image_size \[16, 32\] is not square"),
    ("heads: 4\nhidden_act: relu\n", "hidden_act 'relu' is not the exact"),
    ("[1, 2]\n", "expected a mapping of config fields"),
])
def test_bad_user_configs_are_refused(timm_file, tmp_path, text, message):
    cfg = tmp_path / "model.yaml"
    cfg.write_text(text)
    with pytest.raises(CheckpointError, match=message):
        import_state_dict(timm_file, config=cfg)


def test_timm_hub_directory(tmp_path):
    ref = randomize(TimmViT(), seed=10)
    hub = tmp_path / "timm-hub"
    hub.mkdir()
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(hub / "model.safetensors"))
    (hub / "config.json").write_text(json.dumps({
        "architecture": "vit_small_custom", "num_classes": 7, "global_pool": "token",
        "model_args": {"num_heads": 4, "img_size": 16},
        "pretrained_cfg": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": [3, 16, 16]},
    }))
    result = import_hf_directory(hub)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert_logits_close(result.model(x), ref(x))
    assert result.format == "timm" and result.model.spec.norm_eps == 1e-6
    assert result.preprocess_source == f"{hub / 'config.json'} (pretrained_cfg)"
    assert result.model.preprocess.std == (0.229, 0.224, 0.225)


def test_bare_file_beside_a_config_says_which_config_to_pass(tmp_path):
    torch.save(randomize(TimmViT()).state_dict(), tmp_path / "w.pth")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"pass --heads N \(Python: heads=N\) or --config .*config\.json"):
        import_state_dict(tmp_path / "w.pth")


def test_hf_config_fields(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "vit", "num_attention_heads": 3, "layer_norm_eps": 1e-12,
                               "image_size": 224, "num_channels": 3, "hidden_act": "gelu",
                               "architectures": ["ViTForImageClassification"]}))
    hints = read_model_config(cfg)
    assert (hints.kind, hints.heads, hints.norm_eps, hints.image_size, hints.model_type) == \
        ("huggingface", 3, 1e-12, 224, "vit")
    assert hints.architectures == ("ViTForImageClassification",) and hints.preprocess is None
    cfg.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_model_config(cfg)


def test_preprocessor_rescale_is_folded_exactly(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    # x * (1/127.5) - 1 == (x/255 - 0.5) / 0.5
    path.write_text(json.dumps({"do_rescale": True, "rescale_factor": 1 / 127.5, "image_mean": 1.0,
                                "image_std": 1.0, "size": {"shortest_edge": 224}}))
    norm, info = read_preprocessor_config(path, channels=3)
    assert norm.mean == pytest.approx((0.5,) * 3) and norm.std == pytest.approx((0.5,) * 3)
    assert info["input_size"] is None
    pixels = np.arange(0, 256, dtype=np.uint8).reshape(1, 1, 16, 16).repeat(3, axis=1)
    np.testing.assert_allclose(norm.apply(pixels), pixels / 127.5 - 1.0, atol=1e-6)
    path.write_text(json.dumps({"do_rescale": False, "image_mean": [100.0], "image_std": [50.0]}))
    norm, _ = read_preprocessor_config(path, channels=1)
    np.testing.assert_allclose(norm.apply(pixels[:, :1]), (pixels[:, :1] - 100.0) / 50.0, rtol=1e-6)
    path.write_text(json.dumps({"do_normalize": False, "crop_size": {"height": 32, "width": 32},
                                "do_center_crop": True}))
    norm, info = read_preprocessor_config(path, channels=1)
    assert norm.mean == (0.0,) and norm.std == (1.0,) and info["input_size"] == 32
    path.write_text(json.dumps({"image_mean": [0.5, 0.5], "image_std": [0.5, 0.5]}))
    with pytest.raises(CheckpointError, match=r"image_mean has 2 values but the model takes 3 channel\(s\)"):
        read_preprocessor_config(path, channels=3)
    path.write_text(json.dumps({"image_mean": [0.5], "image_std": [0.0]}))
    with pytest.raises(CheckpointError, match="image_mean/image_std: .*std must be > 0"):
        read_preprocessor_config(path, channels=1)
