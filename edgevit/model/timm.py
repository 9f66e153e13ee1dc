"""Load timm-format `VisionTransformer` state_dicts without importing timm (Python API).

The conversion lives in `edgevit.model.importers.timm_layout` (supported variants, refusals);
`edgevit.model.importers.torch_state.import_state_dict` is the file importer the CLI uses and also
reads Hugging Face checkpoints. This module keeps the direct calls: a mapping or a file in, a model out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from edgevit.data.normalize import Normalization
from edgevit.model.checkpoint import model_from_state_dict
from edgevit.model.importers.timm_layout import convert_timm_state
from edgevit.model.importers.torch_state import read_state_dict
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import VisionTransformer

__all__ = ["infer_timm_spec", "load_timm_state_dict", "read_state_dict"]


def infer_timm_spec(state: Mapping[str, torch.Tensor], heads: int, source: str = "state_dict") -> ViTSpec:
    """The ViTSpec of a timm-format state_dict, from its tensor shapes; `heads` attention heads in every block."""
    return convert_timm_state(state, heads=heads, source=source).spec


def load_timm_state_dict(
    state: Mapping[str, torch.Tensor] | str | Path,
    spec: ViTSpec | None = None,
    heads: int | None = None,
    preprocess: Normalization | None = None,
) -> VisionTransformer:
    """Build an eval-mode VisionTransformer from a timm-format state_dict (mapping or file).

    Give `spec` to check the weights against a known architecture, or `heads` to infer it
    (with spec only, the head count is taken from it). Mismatches raise CheckpointError naming
    the first bad key and both shapes.
    """
    source = str(state) if isinstance(state, (str, Path)) else "timm state_dict"
    if isinstance(state, (str, Path)):
        state = read_state_dict(state)
    if heads is None and spec is not None:
        heads = tuple(b.heads for b in spec.blocks)
    conv = convert_timm_state(state, heads=heads, source=source, heads_option="heads=N or a spec",
                              norm_eps=spec.norm_eps if spec is not None else 1e-6)
    return model_from_state_dict(spec or conv.spec, conv.state, preprocess, source)
