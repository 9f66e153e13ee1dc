"""Per-tensor activation quantization of an unfused float Program from calibration statistics.

Each tensor gets a role from the kernel that produces it, and the role decides the format:

| role     | tensors                                   | format                                      |
|----------|-------------------------------------------|---------------------------------------------|
| image    | the program input                         | the pixel grid itself: scale 1/(255 std),   |
|          |                                           | so uint8 pixels quantize losslessly         |
| residual | add / add_pos outputs (embed, res1, out)  | int8 asymmetric (observer) or int16 symm.   |
| qkv      | `t{i}.qkv` (attention input)              | int8 symmetric, zp 0 (the kernel needs it), |
|          |                                           | never clipped: the largest q.k products     |
|          |                                           | decide where attention looks (clipping them |
|          |                                           | by MSE cost 4x the output KL, measured)     |
| gelu     | GELU outputs (>= -0.17)                   | int8 asymmetric, lower end = observed min,  |
|          |                                           | upper end by MSE search                     |
| copy     | inputs of cls_concat, pool(cls / prefix), | the same TensorQuant as the tensor they are |
|          | reshape, token_merge (merged tokens)      | copied from / into (no requantization)      |
| logits   | the classifier output (head)              | int8 asymmetric, observed range + 5% each   |
|          |                                           | side: never clipped, a saturated top logit  |
|          |                                           | would tie with others in the argmax         |
| act      | everything else (LayerNorm, linears, ...) | int8 asymmetric (observer)                  |

The softmax probabilities live inside the attention kernel (fixed scale 1/255): nothing to choose.
Token sizes (token_merge's second output) are exact integers (int32 in the int8 Program): no entry.
"""

from __future__ import annotations

from edgevit.lower.program import Program
from edgevit.passes.calibrate import TensorStats
from edgevit.passes.observers import observe, observe_mse_hi, quant_from_range
from edgevit.lower.qconfig import TensorQuant

RESIDUAL_OPS = ("add", "add_pos")


def tensor_roles(program: Program) -> dict[str, str]:
    """tensor -> role ("image", "residual", "qkv", "gelu", "act", or "copy:<tensor>")."""
    roles = {t: "image" for t in program.inputs}
    for k in program.kernels:
        o = k.outputs[0]
        if k.op in RESIDUAL_OPS:
            roles[o] = "residual"
        elif k.op == "linear" and o.endswith(".qkv"):
            roles[o] = "qkv"
        elif k.op == "gelu":
            roles[o] = "gelu"
        elif k.op in ("reshape", "token_merge") or (k.op == "pool" and k.attrs.get("mode") in ("cls", "prefix")):
            roles[o] = f"copy:{k.inputs[0]}"
        else:
            roles[o] = "act"
        if k.op == "cls_concat":
            roles[k.inputs[0]] = f"copy:{o}"  # patches share the tokens' quantization (cls row included)
    src = program.outputs[0]
    while roles[src].startswith("copy:"):
        src = roles[src][5:]
    roles[src] = "logits"
    return roles


def image_quant(preprocess) -> TensorQuant:
    """The normalised image's quantization: one pixel step per code when every channel has the same std.

    real = (p/255 - mean)/std = scale (q - zp) with q = p - 128, scale = 1/(255 std), zp = 255 mean - 128
    (rounded). Channels with different stats fall back to the range of all channels.
    """
    mean, std = preprocess.mean, preprocess.std
    if len(set(std)) == 1 and len(set(mean)) == 1:
        scale = 1.0 / (255.0 * std[0])
        return TensorQuant(scale=scale, zero_point=int(min(127, max(-128, round(255.0 * mean[0]) - 128))))
    lo = min((0.0 - m) / s for m, s in zip(mean, std))
    hi = max((1.0 - m) / s for m, s in zip(mean, std))
    return quant_from_range(lo, hi)


def build_activations(program: Program, stats: dict[str, TensorStats], preprocess, observer: str,
                      residual: str = "int8", percentile: float = 99.99) -> dict[str, TensorQuant]:
    """TensorQuant for every tensor of `program` (unfused float Program) from calibration `stats`."""
    roles = tensor_roles(program)
    acts: dict[str, TensorQuant] = {}
    for t, role in roles.items():
        if role == "image":
            acts[t] = image_quant(preprocess)
        elif role == "residual" and residual == "int16":
            acts[t] = observe(stats[t], "minmax", symmetric=True, dtype="int16")
        elif role == "qkv":
            acts[t] = observe(stats[t], "minmax", symmetric=True)
        elif role == "gelu":
            acts[t] = quant_from_range(*observe_mse_hi(stats[t], dtype="int8"))
        elif role == "logits":
            acts[t] = logits_quant(stats[t])
        elif role in ("act", "residual"):
            acts[t] = observe(stats[t], observer, percentile=percentile)
    for t, role in roles.items():
        if role.startswith("copy:"):
            acts[t] = _resolve_copy(t, roles, acts)
    return acts


def logits_quant(stats: TensorStats, margin: float = 0.05) -> TensorQuant:
    """The observed logit range widened by `margin` on both sides, never clipped.

    The argmax of int8 logits is the prediction: a clipped (saturated) top logit ties with
    others, and ties go to the lowest class index, so the range errs on the wide side.
    """
    pad = margin * (stats.max - stats.min)
    return quant_from_range(stats.min - pad, stats.max + pad)


def _resolve_copy(t: str, roles: dict[str, str], acts: dict[str, TensorQuant]) -> TensorQuant:
    """Follow copy:<src> links to a tensor that has its own quantization."""
    seen = {t}
    while roles[t].startswith("copy:"):
        t = roles[t][5:]
        if t in seen:
            raise ValueError(f"cyclic quantization sharing at {t!r}")
        seen.add(t)
    return acts[t]
