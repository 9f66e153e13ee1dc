"""ONNX export of any edgevit model (float), for onnxruntime baselines and other tools."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch

from edgevit.atomic_write import write_file_atomically
from edgevit.model.vit import VisionTransformer

ORT_MAX_IR_VERSION = 10  # onnx 1.2x writes IR 14; onnxruntime 1.31 loads <= 13
MIN_OPSET, MAX_OPSET = 9, 20  # the TorchScript exporter: `expand` needs 8+, its newest opset is 20


def export_onnx(model: VisionTransformer, path: str | Path, opset: int = 17) -> Path:
    """Write `model` to `path` as ONNX: input `image` float32 [B, C, H, W] (normalised), output `logits` [B, K].

    The spec and preprocessing are stored as metadata_props; the write is atomic (edgevit/atomic_write.py).
    UserInputError naming `path` when it is a directory or cannot be written (before the export runs).
    """
    path = Path(path)
    spec = model.spec
    dummy = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size)
    model = model.eval()

    def write(tmp: Path) -> None:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is the one ORT-friendly today
            torch.onnx.export(
                model, (dummy,), str(tmp), opset_version=opset, dynamo=False,
                input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            )
        proto = onnx.load(str(tmp), format="protobuf")
        proto.ir_version = min(proto.ir_version, ORT_MAX_IR_VERSION)
        for key, value in (("edgevit.spec", spec.to_yaml()),
                           ("edgevit.preprocess", json.dumps(model.preprocess.to_dict()))):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp), format="protobuf")

    return write_file_atomically(path, write)  # temp sibling + rename; a killed export's leftovers removed next time
