"""ONNX import of timm-style models (written in `onnx_timm_style.py`) and the refusals: each refused
graph names the node and its op type in the message."""

import pytest
import torch

from edgevit.model.importers.onnx_graph import OnnxPatternError
from edgevit.model.importers.onnx_import import import_onnx
from edgevit.model.importers.onnx_oracle import ImportMismatchError
from edgevit.errors import CheckpointError
from tests.model.importers.onnx_timm_style import TimmStyleViT, export, randomize


def max_relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest per-image max|got - want| / max|want| (the oracle's measure)."""
    return float(((got - want).abs().amax(dim=1) / want.abs().amax(dim=1)).max())


@pytest.mark.parametrize("options,opset", [
    ({}, 17),                                        # fused qkv, q * scale then q @ k^T
    ({"style": "sdpa"}, 14),                         # F.scaled_dot_product_attention: sqrt(scale) on q and k
    ({"style": "bmm"}, 20),                          # [B*H, N, d] batching, scale after QK^T (Div)
    ({"patch_mode": "linear", "pool": "avg"}, 17),   # patches by Reshape/Transpose + MatMul, fc_norm after mean
    ({"qkv_bias": False, "layer_scale": True}, 18),  # zero qkv bias, LayerScale folded
    ({"no_embed_class": True}, 16),                  # positions added before the class token is concatenated
    ({"style": "chunk"}, 13),                        # q, k, v sliced off the qkv channels (Split or Slice)
])
def test_timm_style_model_imports(tmp_path, options, opset):
    model = randomize(TimmStyleViT(**options), seed=opset)
    result = import_onnx(export(model, tmp_path / "timm.onnx", opset=opset))
    spec = result.model.spec
    assert spec.pool == ("mean" if options.get("pool") == "avg" else "cls")
    assert (spec.image_size, spec.patch_size, spec.embed_dim, spec.num_classes, spec.depth) == (16, 4, 24, 7, 2)
    assert all((b.heads, b.head_dim, b.mlp_hidden) == (3, 8, 48) for b in spec.blocks)
    assert result.report["agreement"]["max_rel"] <= 1e-4
    images = torch.randn(100, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert max_relative(result.model(images), model(images)) <= 1e-4
    notes = " ".join(result.notes)
    assert ("zero bias" in notes) == (options.get("qkv_bias") is False)
    assert ("LayerScale" in notes) == bool(options.get("layer_scale"))
    assert ("equivalent Conv" in notes) == (options.get("patch_mode") == "linear")
    assert ("zero positions (exact)" in notes) == bool(options.get("no_embed_class"))


def test_extra_op_in_a_block_is_refused(tmp_path):
    path = export(randomize(TimmStyleViT(extra_op=True)), tmp_path / "m.onnx")
    with pytest.raises(OnnxPatternError, match=r"node '/blocks/blocks\.0/attn/Tanh' \(op Tanh\): blocks\[0\] attention: "
                                               r"expected the heads merged back .* output projection"):
        import_onnx(path)


def test_relu_mlp_is_refused(tmp_path):
    path = export(randomize(TimmStyleViT(act="relu")), tmp_path / "m.onnx")
    with pytest.raises(OnnxPatternError, match=r"blocks\[0\] mlp: the activation computed by "
                                               r"node '/blocks/blocks\.0/mlp/mlp\.1/Relu' \(op Relu\) is not GELU"):
        import_onnx(path)


def test_batchnorm_is_refused(tmp_path):
    path = export(randomize(TimmStyleViT(norm="bn")), tmp_path / "m.onnx")
    with pytest.raises(OnnxPatternError, match=r"node '/blocks/blocks\.0/norm1/bn/BatchNormalization' "
                                               r"\(op BatchNormalization\): expected blocks\[0\] norm1: a LayerNormalization"):
        import_onnx(path)


def test_dynamic_image_size_without_image_size_is_refused(tmp_path):
    model = randomize(TimmStyleViT())
    path = export(model, tmp_path / "m.onnx", dynamic_size=True)
    with pytest.raises(CheckpointError, match="input 'pixels' has a dynamic height/width; pass image_size=N "
                                              r"\(CLI: --image-size N\)"):
        import_onnx(path)
    assert import_onnx(path, image_size=16, check_inputs=10).model.spec.image_size == 16


def test_tanh_gelu_is_left_to_the_oracle(tmp_path):
    """tanh GELU is imported as exact GELU only when onnxruntime agrees within 1e-4; else refused, saying why."""
    small = TimmStyleViT(act="gelu_tanh").eval()
    with torch.no_grad():  # small activations: there the two GELUs agree to ~1e-6
        for module in small.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(0.2)
    result = import_onnx(export(small, tmp_path / "small.onnx"), check_inputs=20)
    assert any("tanh-approximated GELU" in n for n in result.notes)
    large = randomize(TimmStyleViT(act="gelu_tanh"), std=0.3)
    with pytest.raises(ImportMismatchError, match="max relative difference .* tanh-approximated GELU imported as"):
        import_onnx(export(large, tmp_path / "large.onnx"), check_inputs=20)
