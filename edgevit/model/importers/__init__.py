"""Importers: models trained elsewhere (PyTorch state_dicts, ONNX files) turned into edgevit models.

Every importer returns an `ImportResult`: the eval-mode float32 `VisionTransformer`, where its
preprocessing came from (None when nothing said it: the CLI warns and records that), the notes a
user should read (what was folded, zero-filled or ignored) and a machine-readable report.

- `torch_state.import_state_dict` / `import_hf_directory`: timm and Hugging Face ViT/DeiT checkpoints.
- `onnx_import.import_onnx`: ONNX graphs, checked against onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgevit.model.vit import VisionTransformer


@dataclass
class ImportResult:
    """What an importer made of a source file or directory.

    model: eval mode, float32. source: the file/dir imported. format: "onnx", "timm",
    "huggingface" or "edgevit". preprocess_source: where mean/std came from (e.g.
    "preprocessor_config.json"), None when nothing said it. notes: what the importer did that a
    user should know. report: machine-readable details (layout, spec, ignored keys, agreement...).
    """

    model: "VisionTransformer"
    source: str
    format: str
    preprocess_source: str | None
    notes: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
