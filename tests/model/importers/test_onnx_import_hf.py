"""ONNX import of Hugging Face `transformers` ViT / DeiT (small random configs, no download), exported with
the legacy torch exporter, eager and sdpa attention: agrees with onnxruntime and with the PyTorch model."""

import warnings

import pytest
import torch
from transformers import (DeiTConfig, DeiTForImageClassification, DeiTForImageClassificationWithTeacher, ViTConfig,
                          ViTForImageClassification)

from edgevit.model.importers.onnx_import import import_onnx

CONFIG = dict(image_size=16, patch_size=4, num_channels=3, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
              intermediate_size=40, num_labels=5)
MODELS = {"vit": (ViTConfig, ViTForImageClassification), "deit": (DeiTConfig, DeiTForImageClassification),
          "deit_teacher": (DeiTConfig, DeiTForImageClassificationWithTeacher)}
EXPECTED = {"vit": ("cls", False), "deit": ("cls", True), "deit_teacher": ("cls_dist", True)}


def hf_model(kind: str, attn: str, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised HF model with every parameter perturbed (so norms are not 1/0)."""
    config_cls, model_cls = MODELS[kind]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**CONFIG, attn_implementation=attn)).eval()
    assert model.config._attn_implementation == attn
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def export_hf(model: torch.nn.Module, path, opset: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 16, 16),), str(path), opset_version=opset, dynamo=False,
                          input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    return path


def max_relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest per-image max|got - want| / max|want| (the oracle's measure)."""
    return float(((got - want).abs().amax(dim=1) / want.abs().amax(dim=1)).max())


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("attn,opset", [("eager", 13), ("sdpa", 14), ("eager", 20)])  # LN decomposed below 17
def test_hf_model_imports_and_agrees(tmp_path, kind, attn, opset):
    model = hf_model(kind, attn, seed=opset)
    result = import_onnx(export_hf(model, tmp_path / f"{kind}.onnx", opset))
    spec = result.model.spec
    assert (spec.pool, spec.distill_token) == EXPECTED[kind]
    assert (spec.image_size, spec.patch_size, spec.embed_dim, spec.num_classes, spec.depth) == (16, 4, 24, 5, 2)
    assert all((b.heads, b.head_dim, b.mlp_hidden) == (3, 8, 40) for b in spec.blocks)
    assert spec.norm_eps == 1e-12  # HF's layer_norm_eps, not edgevit's default
    assert result.preprocess_source is None  # nothing in the file says the mean/std
    assert result.report["agreement"]["inputs"] == 100 and result.report["agreement"]["max_rel"] <= 1e-4
    images = torch.randn(100, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = model(pixel_values=images).logits
        got = result.model(images)
    assert max_relative(got, want) <= 1e-4
