"""How much memory a ViTSpec needs on this machine, estimated from its shapes alone (nothing is
allocated), and the guards that refuse a spec that cannot fit before a model is built.

Estimates are lower bounds of what torch allocates, in float32 (4 bytes per value):

- a model: its parameters (`counts.count_params`), once for the module and once for the state
  being loaded into it (checkpoints, imports): 8 B per parameter;
- training: parameters, their gradients and AdamW's two moments (16 B per parameter) plus the
  activations autograd keeps for the backward pass of a batch: per block and image, for N tokens,
  width D, attention width A, MLP width M and h heads, N (4D + 4A + 2M) + h N^2 values (the two
  LayerNorm inputs and outputs, q/k/v, the attention output, the softmax probabilities and the
  MLP's hidden activations before and after GELU).

`check_model_fits(spec, what)` and `check_training_fits(spec, batch, what)` compare them with
`edgevit.validate.available_memory()` (MemAvailable, a cgroup limit, `ulimit -v`) and raise
InfeasibleError (exit 3) with the figures: a spec with `embed_dim: 100000` is refused in a second
instead of growing to tens of GB until the kernel kills it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevit.model.counts import count_params
from edgevit.model.spec import ViTSpec
from edgevit.validate import check_fits_memory

FLOAT_BYTES = 4
TRAIN_BYTES_PER_PARAM = 16   # weight, gradient, AdamW exp_avg and exp_avg_sq
LOAD_BYTES_PER_PARAM = 8     # the module's weights and the state dict loaded into it
SHRINK_ADVICE = ("Make the spec smaller (embed_dim, depth, heads x head_dim, mlp_hidden, image_size / patch_size)"
                 " or use a machine with more memory.")


@dataclass(frozen=True)
class TrainingFootprint:
    """Bytes needed to train a spec: `state` (parameters, gradients, AdamW moments) and
    `activations` (what autograd keeps for one batch of `batch` images)."""

    params: int
    batch: int
    state: int
    activations: int

    @property
    def total(self) -> int:
        """state + activations."""
        return self.state + self.activations

    def parts(self) -> str:
        """The figures that add up to `total`, for messages."""
        return (f"{self.params:,} parameters x {TRAIN_BYTES_PER_PARAM} B (weights, gradients, AdamW state) = "
                f"{self.state:,} B + activations of a batch of {self.batch} images = {self.activations:,} B")


def activation_values_per_image(spec: ViTSpec) -> int:
    """Float values autograd keeps per image for the backward pass (module doc), summed over blocks."""
    counts = spec.tokens_per_block()
    total = spec.num_patches * spec.in_channels * spec.patch_size ** 2 + counts[0] * spec.embed_dim  # embedding
    for block, n in zip(spec.blocks, counts):
        d, a, m = spec.embed_dim, block.attn_dim, block.mlp_hidden
        total += n * (4 * d + 4 * a + 2 * m) + block.heads * n * n
    return total


def training_footprint(spec: ViTSpec, batch: int) -> TrainingFootprint:
    """The TrainingFootprint of `spec` trained with batches of `batch` images (module doc)."""
    params = count_params(spec)
    return TrainingFootprint(params, batch, params * TRAIN_BYTES_PER_PARAM,
                             batch * activation_values_per_image(spec) * FLOAT_BYTES)


def check_model_fits(spec: ViTSpec, what: str) -> None:
    """InfeasibleError (exit 3) when building `spec` and loading weights into it cannot fit this
    machine's available memory; `what` names the model in the message (a file, a spec)."""
    params = count_params(spec)
    check_fits_memory(params * LOAD_BYTES_PER_PARAM, f"{what}: a model of this spec",
                      f"{params:,} parameters x {LOAD_BYTES_PER_PARAM} B (the model and the weights loaded into it)",
                      SHRINK_ADVICE)


def check_training_fits(spec: ViTSpec, batch: int, what: str) -> TrainingFootprint:
    """The TrainingFootprint of `spec` at `batch` images; InfeasibleError (exit 3) with its figures
    when it exceeds this machine's available memory (`what` names the spec in the message)."""
    need = training_footprint(spec, batch)
    check_fits_memory(need.total, f"{what}: training this spec", need.parts(),
                      SHRINK_ADVICE.replace(" or use", ", lower --batch-size, or use"))
    return need
