"""ViTSpec, the torch model built from it, counts, checkpoints and loaders."""

from edgevit.model.counts import count_macs, count_params, count_parts
from edgevit.model.spec import BlockSpec, ViTSpec

__all__ = ["BlockSpec", "ViTSpec", "count_macs", "count_params", "count_parts"]
