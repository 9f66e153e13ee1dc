"""The `quant` pass: post-training quantization of a float ViT to a QuantizedViT (int8 activations).

Steps (all deterministic; calibration images from `calibration_subset` of the data given):

1. RepQ-ViT-style re-parameterisation of every LayerNorm -> linear pair (`reparam`), from the
   per-channel ranges of the LayerNorm outputs (option `repq` = alpha, 0 disables; the default
   `auto` builds alpha 1 and alpha 0 and keeps the one with the lower KL to the float model on
   calibration images: re-parameterisation helps 8-bit weights but its column scaling can hurt
   4-bit rows).
2. Weights: 4-bit rows clipped to their error-optimal range and rounded with GPTQ error
   feedback (`gptq`); bias correction for every linear (`bias_corr`); the int8 lowering then
   quantizes weights symmetric per output channel (recovering the chosen grid exactly).
3. Activations: the unfused float Program runs on the calibration images with weights already
   rounded to their grid; every tensor gets a TensorQuant by role (`actconfig`) and observer.
4. `w=mixed`: per-layer 8/4 bits by measured sensitivity under `flash_kb` (`mixed`).

`w=4` keeps the classifier head at 8 bits: it is the one layer whose error lands directly on the
logits, it is tiny (embed_dim x classes), and the patch embedding is not a linear kernel (always 8-bit).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgevit.data import ArrayDataset, calibration_subset
from edgevit.errors import UserInputError
from edgevit.lower.from_model import lower_float
from edgevit.lower.qconfig import QuantConfig, QuantizedViT
from edgevit.model.counts import count_params
from edgevit.passes import mixed
from edgevit.passes.actconfig import build_activations
from edgevit.passes.calibrate import collect_stats, quantized_weights, run_tapped, simulate
from edgevit.passes.mixed import kl_divergence
from edgevit.passes.observers import OBSERVERS
from edgevit.passes.options import Option
from edgevit.passes.registry import PassReport, register_pass
from edgevit.passes.reparam import (clip_weights, correct_biases, linear_inputs, ln_linear_pairs, reparam_layernorms,
                                    weight_snapshot)

DEFAULT_OBSERVER = "mse"
W4_KEEP_8BIT = ("head.weight",)
SENSITIVITY_IMAGES = 128  # calibration images on which KL is measured (repq=auto, w=mixed)
AUTO_ALPHAS = (1.0, 0.0)  # repq=auto: RepQ-ViT re-parameterisation on or off, whichever measures better

OPTIONS = {
    "w": Option((int, str), 8, (4, 8, "mixed"), doc="weight bits: 8, 4 or mixed (per layer, needs flash_kb)"),
    "a": Option((int,), 8, (8,), doc="activation bits (8)"),
    "observer": Option((str,), DEFAULT_OBSERVER, OBSERVERS, doc="activation range observer"),
    "calib": Option((int,), 256, minimum=1, doc="calibration images (training split)"),
    "residual": Option((str,), "int8", ("int8", "int16"), doc="residual stream dtype"),
    "flash_kb": Option((float,), None, minimum=0.001, doc="weight-bytes budget in KiB (w=mixed)"),
    "percentile": Option((float,), 99.99, minimum=50.0, doc="percentile of the percentile observer"),
    "repq": Option((float, str), "auto", minimum=0.0, words=("auto",),
                   doc="LayerNorm re-parameterisation strength alpha (0: off; auto: measured, 1 or 0)"),
    "bias_corr": Option((int,), 1, (0, 1), doc="bias correction of weight rounding (1: on)"),
    "gptq": Option((int,), 1, (0, 1), doc="GPTQ error-feedback rounding of 4-bit weights (1: on)"),
}


def check_options(opts: dict[str, Any]) -> None:
    """Validate options given as Python values (the pipeline parser has already checked strings)."""
    for name, value in opts.items():
        OPTIONS[name].check("quant", name, value)
    if opts["w"] == "mixed" and opts["flash_kb"] is None:
        raise UserInputError("quant: w=mixed needs a weight budget, e.g. quant(w=mixed,flash_kb=48)")


@dataclass(frozen=True)
class Plan:
    """The options that shape one quantization build (besides weight bits and alpha)."""

    observer: str
    residual: str
    percentile: float
    bias_corr: int
    gptq: int
    opts: dict


def quantize(model, calib_data: ArrayDataset, *, w: int | str = 8, a: int = 8, observer: str = DEFAULT_OBSERVER,
             calib: int = 256, residual: str = "int8", flash_kb: float | None = None, percentile: float = 99.99,
             repq: float | str = "auto", bias_corr: int = 1, gptq: int = 1, eval_data: ArrayDataset | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[QuantizedViT, PassReport]:
    """Calibrate `model` on `calib` images of `calib_data` and return (QuantizedViT, PassReport).

    `repq="auto"` builds the model with and without LayerNorm re-parameterisation and keeps the
    one whose fake-quant outputs are closer (KL) to the float model's on calibration images.
    The input model is not modified. `eval_data` adds top-1 before (float) and after (int8).
    """
    opts = dict(w=w, a=a, observer=observer, calib=calib, residual=residual, flash_kb=flash_kb,
                percentile=percentile, repq=repq, bias_corr=bias_corr, gptq=gptq)
    check_options(opts)
    say = progress or (lambda msg: None)
    plan = Plan(observer, residual, percentile, bias_corr, gptq, opts)
    images = calibration_subset(calib_data, calib).images
    model = copy.deepcopy(model).eval()
    notes = [f"calibrated on {len(images)} images of {calib_data.name}"]
    names = [n for n, _, _ in linear_inputs(model)]
    if w == "mixed":
        say("measuring per-layer sensitivity")
        bits = choose_mixed(model, images, plan, flash_kb, notes)
    else:
        bits = {n: 4 for n in names if n not in W4_KEEP_8BIT} if w == 4 else {}
    alphas = AUTO_ALPHAS if repq == "auto" else (float(repq),)
    alpha, qmodel = pick_alpha(model, images, bits, plan, alphas, notes, say)
    qmodel = QuantizedViT(qmodel.model, dataclasses.replace(qmodel.config, options={**opts, "repq_alpha": alpha}))
    return qmodel, make_report(model, qmodel, opts, notes, eval_data)


def pick_alpha(model, images: np.ndarray, bits: dict[str, int], plan: Plan, alphas: tuple[float, ...],
               notes: list[str], say: Callable[[str], None]) -> tuple[float, QuantizedViT]:
    """Build the quantized model for each re-parameterisation strength; keep the lowest calibration KL."""
    sub = images[:SENSITIVITY_IMAGES]
    ref = run_tapped(lower_float(model), sub, model.preprocess) if len(alphas) > 1 else None
    best = None
    for alpha in alphas:
        say(f"calibrating (re-parameterisation alpha {alpha:g})")
        qm = build(model, images, alpha, bits, plan)
        kl = None if ref is None else kl_divergence(ref, simulate_qmodel(qm, sub))
        if kl is not None:
            notes.append(f"repq alpha {alpha:g}: calibration KL {kl:.5f}")
        if best is None or (kl is not None and kl < best[0]):
            best = (kl, alpha, qm)
    notes.append(f"LayerNorm re-parameterisation alpha {best[1]:g}" + (" (off)" if best[1] == 0 else ""))
    return best[1], best[2]


def build(model, images: np.ndarray, alpha: float, bits: dict[str, int], plan: Plan) -> QuantizedViT:
    """Re-parameterise (alpha > 0), clip / bias-correct weights for `bits`, calibrate activations."""
    base = reparam_copy(model, images, alpha)
    x_stats = linear_input_stats(base, images, gram=bool(plan.gptq) and 4 in bits.values())
    final = finish_weights(base, bits, x_stats, plan)
    return QuantizedViT(final, calibrate_config(final, images, bits, plan))


def reparam_copy(model, images: np.ndarray, alpha: float):
    """A copy of `model` with its LayerNorm outputs re-parameterised at strength `alpha` (0: a plain copy)."""
    base = copy.deepcopy(model)
    if alpha > 0:
        ln_names = {t for _, _, t in ln_linear_pairs(base)}
        stats = collect_stats(lower_float(base, fuse_gelu=False), images, base.preprocess, names=ln_names,
                              sample_cap=1)
        reparam_layernorms(base, stats, alpha)
    return base


def linear_input_stats(model, images: np.ndarray, gram: bool = False):
    """Per-channel statistics (no samples; Gram matrices if `gram`) of every linear's input tensor."""
    names = {x for _, _, x in linear_inputs(model)}
    return collect_stats(lower_float(model, fuse_gelu=False), images, model.preprocess, names=names, sample_cap=1,
                         gram=gram)


def finish_weights(base, bits: dict[str, int], x_stats, plan: Plan):
    """A copy of `base` with 4-bit rows clipped (and GPTQ-rounded) and biases corrected, for `bits`."""
    m = copy.deepcopy(base)
    original = weight_snapshot(m)
    clip_weights(m, lambda n: bits.get(n, 8), x_stats, gptq=bool(plan.gptq))
    if plan.bias_corr:
        correct_biases(m, lambda n: bits.get(n, 8), x_stats, original)
    return m


def calibrate_config(model, images: np.ndarray, bits: dict[str, int], plan: Plan) -> QuantConfig:
    """Activation statistics of `model` with its weights on their quantization grid -> QuantConfig."""
    program = lower_float(model, fuse_gelu=False)
    cfg = QuantConfig(activations={}, weight_bits=dict(bits), residual_dtype=plan.residual, options=dict(plan.opts))
    stats = collect_stats(program, images, model.preprocess, consts=quantized_weights(program, cfg))
    acts = build_activations(program, stats, model.preprocess, plan.observer, plan.residual, plan.percentile)
    return dataclasses.replace(cfg, activations=acts)


def simulate_qmodel(qmodel: QuantizedViT, images: np.ndarray) -> np.ndarray:
    """Fake-quant logits of a QuantizedViT (the fast NumPy proxy of its int8 Program)."""
    return simulate(lower_float(qmodel.model, fuse_gelu=False), qmodel.config, images, qmodel.preprocess)


def choose_mixed(model, images: np.ndarray, plan: Plan, flash_kb: float, notes: list[str]) -> dict[str, int]:
    """Per-layer bits (4 where the measured KL per byte saved is least) so the int8 Program fits flash_kb.

    Measured without re-parameterisation, on fake-quant models that differ only in the weights
    (and corrected biases) of the layer under test.
    """
    x_stats = linear_input_stats(model, images, gram=bool(plan.gptq))
    names = [n for n, _, _ in linear_inputs(model)]
    model8 = finish_weights(model, {}, x_stats, plan)
    model4 = finish_weights(model, {n: 4 for n in names}, x_stats, plan)
    cfg8 = calibrate_config(model8, images, {}, plan)
    sub = images[:SENSITIVITY_IMAGES]
    p8, p4 = lower_float(model8, fuse_gelu=False), lower_float(model4, fuse_gelu=False)
    ref_logits = run_tapped(lower_float(model), sub, model.preprocess)

    def run(bits: dict[str, int]) -> np.ndarray:
        consts = dict(p8.consts)
        for n in bits:
            for key in (n, n[: -len("weight")] + "bias"):
                if key in p4.consts:
                    consts[key] = p4.consts[key]
        return simulate(dataclasses.replace(p8, consts=consts), cfg8.with_weight_bits(bits), sub, model.preprocess)

    sens = mixed.sensitivities(names, run, ref_logits)
    shapes = {n: tuple(p8.consts[n].shape) for n in names}
    bytes8 = int8_program(QuantizedViT(model8, cfg8)).weight_bytes()
    bits = mixed.choose_bits(sens, mixed.layer_savings(shapes), bytes8, int(flash_kb * mixed.KB))
    notes.append(f"mixed: {len(bits)}/{len(names)} linears at 4 bits for a {flash_kb:g} KB budget "
                 f"(all 8-bit: {bytes8 / mixed.KB:.1f} KB)")
    return bits


# ---------------------------------------------------------------- int8 Program helpers

def int8_program(qmodel: QuantizedViT):
    """The int8 Program of `qmodel` (`edgevit.lower.lower_int8`, GELU fused)."""
    from edgevit.lower import lower_int8

    return lower_int8(qmodel)


def int8_logits(qmodel: QuantizedViT, images: np.ndarray, program=None) -> np.ndarray:
    """Real-valued logits [N, K] of the int8 Program on uint8 images (reference interpreter)."""
    from edgevit.lower.reference import predict

    program = program if program is not None else int8_program(qmodel)
    return dequantize_output(program, predict(program, images))


def dequantize_output(program, logits: np.ndarray) -> np.ndarray:
    """Integer program logits -> real values (scale * (q - zero_point)); float logits as they are."""
    info = program.tensors[program.outputs[0]]
    if info.dtype == "float32" or not info.quant:
        return np.asarray(logits, dtype=np.float32)
    q = np.asarray(logits, dtype=np.float64) - info.quant["zero_point"]
    return (q * info.quant["scale"]).astype(np.float32)


def make_report(model, qmodel: QuantizedViT, opts: dict[str, Any], notes: list[str],
                eval_data: ArrayDataset | None) -> PassReport:
    """PassReport of the quant pass (weight bytes of the fp32 model vs the int8 Program)."""
    fp = lower_float(model)
    program = int8_program(qmodel)
    params = count_params(model.spec)
    report = PassReport(name="quant", options=dict(opts), macs_before=fp.macs(), macs_after=fp.macs(),
                        params_before=params, params_after=params, weight_bytes_before=4 * fp.const_params(),
                        weight_bytes_after=program.weight_bytes(), notes=notes,
                        details={"weight_bits": {n: qmodel.config.bits_of(n) for n, _, _ in
                                                 linear_inputs(qmodel.model)}})
    if eval_data is not None and len(eval_data):
        from edgevit.model.evaluate import accuracy

        report.top1_before = round(accuracy(model, eval_data), 6)
        pred = int8_logits(qmodel, eval_data.images, program).argmax(1)
        report.top1_after = round(float((pred == eval_data.labels).mean()), 6)
    return report


def _quant_pass(model, calib_data, /, eval_data=None, progress=None, **opts):
    """Pipeline entry point of `quant` (its option `calib` is the image count, hence the positional data)."""
    return quantize(model, calib_data, eval_data=eval_data, progress=progress, **opts)


register_pass("quant", _quant_pass, OPTIONS, doc=__doc__.splitlines()[0])
