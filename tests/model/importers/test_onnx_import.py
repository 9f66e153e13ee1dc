"""ONNX import of edgevit's own exports: export -> import is the identity; metadata, opsets, the oracle."""

import json

import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.data.normalize import Normalization
from edgevit.errors import CheckpointError
from edgevit.model.importers.onnx_import import import_onnx
from edgevit.model.importers.onnx_oracle import ImportMismatchError, compare_with_onnxruntime
from edgevit.model.onnx_export import export_onnx
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.model.vit import build_model
from tests.conftest import vit_specs


def random_model(spec: ViTSpec, seed: int = 0, preprocess: Normalization | None = None):
    """A model for `spec` with every parameter perturbed (LayerNorms and biases not trivially 1/0)."""
    model = build_model(spec, preprocess, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def assert_identity(imported, original) -> None:
    """Same spec, same keys, every tensor bit-for-bit equal."""
    assert imported.spec == original.spec
    got, want = imported.state_dict(), original.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


def block(heads=2, head_dim=4, hidden=12, **ranks):
    return BlockSpec(heads, head_dim, hidden, ranks=ranks)


SPECS = {
    "cls": ViTSpec(image_size=8, in_channels=3, patch_size=2, embed_dim=8, num_classes=4, blocks=(block(), block(1, 6, 9))),
    "mean": ViTSpec(image_size=8, in_channels=1, patch_size=4, embed_dim=6, num_classes=3, pool="mean",
                    blocks=(block(3, 2, 10),) * 2, norm_eps=1e-5),
    "distilled_cls": ViTSpec(image_size=6, in_channels=3, patch_size=3, embed_dim=8, num_classes=5, pool="cls",
                             distill_token=True, blocks=(block(),)),
    "cls_dist": ViTSpec(image_size=6, in_channels=3, patch_size=3, embed_dim=8, num_classes=5, pool="cls_dist",
                        distill_token=True, blocks=(block(), block(2, 3, 7))),
    "low_rank": ViTSpec(image_size=8, in_channels=1, patch_size=2, embed_dim=8, num_classes=3,
                        blocks=(block(qkv=3, proj=2, fc1=5, fc2=4), block(fc2=3))),
}


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_edgevit_export_import_is_identity(tmp_path, kind):
    preprocess = Normalization(mean=(0.25,) * SPECS[kind].in_channels, std=(0.5,) * SPECS[kind].in_channels)
    model = random_model(SPECS[kind], preprocess=preprocess)
    result = import_onnx(export_onnx(model, tmp_path / "m.onnx"))
    assert_identity(result.model, model)
    assert result.format == "onnx" and result.source == str(tmp_path / "m.onnx")
    assert result.model.preprocess == preprocess and result.preprocess_source == "onnx metadata"
    agreement = result.report["agreement"]
    assert agreement["inputs"] == 100 and agreement["max_rel"] <= 1e-4
    assert any("onnxruntime agrees on 100 random inputs" in n for n in result.notes)
    if kind == "low_rank":
        assert any("low-rank" in n for n in result.notes)
    if kind == "cls_dist":
        assert any("cls_dist" in n for n in result.notes)


@pytest.mark.filterwarnings("ignore:Exporting to ONNX opset version 21")
@pytest.mark.parametrize("opset", [13, 14, 15, 16, 17, 18, 19, 20, 21])
def test_identity_at_every_supported_opset(tmp_path, opset):
    model = random_model(SPECS["low_rank"], seed=opset)
    path = export_onnx(model, tmp_path / "m.onnx", opset=opset)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    result = import_onnx(path, check_inputs=20)
    assert_identity(result.model, model)
    decomposed = any("decomposed LayerNorm" in n for n in result.notes)
    assert decomposed == (opset < 17) == ("LayerNormalization" not in ops)
    assert result.report["patterns"]["gelu"] == ["gelu"]
    assert ("Gelu" in ops) == (opset >= 20)  # torch emits the fused Gelu from opset 20 on


@pytest.mark.filterwarnings("ignore:Exporting to ONNX opset version 21")
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=vit_specs(), opset=st.sampled_from([13, 16, 17, 18, 20, 21]), seed=st.integers(0, 50))
def test_identity_for_random_specs(tmp_path_factory, spec, opset, seed):
    model = random_model(spec, seed=seed)
    path = export_onnx(model, tmp_path_factory.mktemp("rt") / "m.onnx", opset=opset)
    assert_identity(import_onnx(path, check_inputs=8).model, model)


def test_without_metadata_preprocess_is_unknown(tmp_path):
    model = random_model(SPECS["cls"])
    path = export_onnx(model, tmp_path / "bare.onnx")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    result = import_onnx(path, check_inputs=4)
    assert result.preprocess_source is None
    assert result.model.preprocess == Normalization(mean=(0.0,) * 3, std=(1.0,) * 3)
    assert result.model.spec.name == "bare"
    assert result.model.spec == ViTSpec(**{**SPECS["cls"].__dict__, "name": "bare"})


def test_metadata_spec_must_match_the_graph(tmp_path):
    model = random_model(SPECS["cls"])
    path = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        if prop.key == "edgevit.spec":
            prop.value = SPECS["cls"].with_blocks([block(), block(2, 3, 9)]).to_yaml()
    onnx.save(proto, str(path))
    with pytest.raises(CheckpointError, match="different spec than its edgevit.spec metadata.*blocks"):
        import_onnx(path, check_inputs=0)


def test_opset_outside_13_to_21_is_refused(tmp_path):
    path = export_onnx(random_model(SPECS["cls"]), tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    proto.opset_import[0].version = 12
    onnx.save(proto, str(path))
    with pytest.raises(CheckpointError, match="opset 12 is not supported.*between 13 and 21"):
        import_onnx(path)


def test_dynamic_image_size_needs_image_size(tmp_path):
    model = random_model(SPECS["mean"])
    path = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    for axis in (2, 3):
        proto.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = "side"
    onnx.save(proto, str(path))
    with pytest.raises(CheckpointError, match="input 'image' has a dynamic height/width; pass image_size=N"):
        import_onnx(path)
    assert_identity(import_onnx(path, image_size=8, check_inputs=10).model, model)
    with pytest.raises(CheckpointError, match="image_size=12 was given but input 'image' is fixed at 8 x 8"):
        import_onnx(export_onnx(model, tmp_path / "fixed.onnx"), image_size=12)


def test_a_node_outside_every_pattern_is_refused(tmp_path):
    path = export_onnx(random_model(SPECS["cls"]), tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    softmax = next(n for n in proto.graph.node if n.op_type == "Softmax")
    proto.graph.node.append(onnx.helper.make_node("Neg", [softmax.output[0]], ["peek"], name="peek_at_attention"))
    proto.graph.output.append(onnx.helper.make_tensor_value_info("peek", onnx.TensorProto.FLOAT, None))
    onnx.save(proto, str(path))
    with pytest.raises(CheckpointError, match=r"node 'peek_at_attention' \(op Neg\) \(reading '.*Softmax.*'\) "
                                              "is not part of any pattern"):
        import_onnx(path)


def test_unreadable_file(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        import_onnx(tmp_path / "x.onnx")
    with pytest.raises(CheckpointError, match="ONNX file not found"):
        import_onnx(tmp_path / "missing.onnx")


def test_oracle_refuses_a_model_that_disagrees(tmp_path):
    model = random_model(SPECS["cls"])
    path = export_onnx(model, tmp_path / "m.onnx")
    with torch.no_grad():
        model.blocks[1].mlp.fc2.bias.add_(torch.linspace(-0.05, 0.05, 8))  # a uniform shift would vanish in the norm
    with pytest.raises(ImportMismatchError, match=r"disagrees with onnxruntime: max abs difference .* over 30 random"):
        compare_with_onnxruntime(onnx.load(str(path)), model, "image", "logits", (3, 8, 8), inputs=30, source=str(path))
    assert issubclass(ImportMismatchError, CheckpointError) and ImportMismatchError.exit_code == 2


def test_oracle_with_a_fixed_batch_size(tmp_path):
    model = random_model(SPECS["cls"])
    path = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    agreement = compare_with_onnxruntime(proto, model, "image", "logits", (3, 8, 8), inputs=10, batch=4)
    assert agreement.batch == 4 and agreement.inputs == 12 and agreement.max_rel <= 1e-4


def test_report_is_json(tmp_path):
    result = import_onnx(export_onnx(random_model(SPECS["cls_dist"]), tmp_path / "m.onnx"), check_inputs=5)
    report = json.loads(json.dumps(result.report))
    assert report["format"] == "onnx" and report["opset"] == 17 and report["input"]["shape"] == ["batch", 3, 6, 6]
    assert report["spec"]["pool"] == "cls_dist" and report["patterns"]["head_tokens"] == [0, 1]


@pytest.mark.slow
def test_deit_tiny_import_time(tmp_path):
    """DeiT-Tiny-sized (224, patch 16, dim 192, depth 12, 3 heads), the oracle on 100 inputs included.

    The target is < 30 s here. The machine is shared, so the check is on the CPU time the import
    used (all threads): a CPU-bound job alone on the machine takes at most that long in wall time.
    """
    spec = ViTSpec.uniform(depth=12, heads=3, head_dim=64, mlp_hidden=768, image_size=224, in_channels=3,
                           patch_size=16, embed_dim=192, num_classes=1000, name="deit-tiny")
    model = random_model(spec)
    path = export_onnx(model, tmp_path / "deit_tiny.onnx")
    result = import_onnx(path)
    seconds = result.report["seconds"]
    print(f"DeiT-Tiny ONNX import: {seconds['total']:.1f} s wall, {seconds['cpu']:.1f} s CPU "
          f"(matching {seconds['match']:.1f} s), agreement {result.report['agreement']}")
    assert_identity(result.model, model)
    assert result.report["agreement"]["inputs"] == 100 and result.report["agreement"]["max_rel"] <= 1e-4
    assert seconds["cpu"] < 30, f"importing a DeiT-Tiny-sized ONNX used {seconds['cpu']:.1f} s of CPU (target < 30 s)"


def test_a_name_that_is_not_utf8_is_a_damaged_file_not_a_crash(tmp_path):
    # the CLI fuzzer's finding: protobuf returns such a name as bytes, which crashed the probe
    path = export_onnx(random_model(SPECS["cls"]), tmp_path / "m.onnx")
    data = bytearray(path.read_bytes())
    at = data.find(b"/blocks.0/")
    data[at + 1] = 0xAE
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a readable ONNX model .*not valid UTF-8"):
        import_onnx(path)
