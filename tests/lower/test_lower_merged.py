"""Lowering models with token merging (and pruning / low-rank shapes): float vs torch, int8 runs bit-exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgevit.lower import lower_float, lower_int8
from edgevit.lower.reference import quantize_input, run_program
from edgevit.model.counts import count_macs
from edgevit.model import vit
from edgevit.model.vit import build_like, build_model
from tests.lower.int8_helpers import minmax_qmodel, randomise
from tests.model.merge_strategies import merged_vit_specs

ZOO = Path(__file__).resolve().parents[2] / "models" / "fmnist-tiny"


def images(spec, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, spec.in_channels, spec.image_size,
                                                        spec.image_size)).astype(np.float32)


def assert_close_logits(got: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * max(float(np.abs(ref).max()), 1e-3))


TIE_MARGIN = 1e-4  # cosine-similarity gap below which float32 key noise may flip a merge decision


def merge_margin(keys: torch.Tensor, r: int, protect: int) -> float:
    """Smallest gap behind torch's merge decisions on keys [B, N, hd]: each merged A token's best vs
    second-best B similarity, and the r-th vs (r+1)-th best A score (inf if nothing is decided)."""
    metric = keys.double() / keys.double().norm(dim=-1, keepdim=True).clamp_min(1e-300)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)
    scores[:, :, :protect // 2] = -float("inf")  # a protected distillation token receives nothing
    scores[:, :(protect + 1) // 2] = -float("inf")
    top = scores.topk(min(2, scores.shape[-1]), dim=-1).values
    best = top[..., 0]
    order = best.sort(dim=-1, descending=True).values
    gaps = [float("inf")]
    if order.shape[1] > r:
        gaps.append(float((order[:, r - 1] - order[:, r]).min()))
    if top.shape[-1] == 2:
        src = best.sort(dim=-1, descending=True, stable=True).indices[:, :r]
        gaps.append(float((top[..., 0] - top[..., 1]).gather(1, src).min()))
    return min(g for g in gaps if g == g)  # NaN (inf - inf for protected rows) never decides


def torch_logits_and_margin(model, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The model's logits on x and the smallest merge-decision margin over all its merges."""
    margins, merge_order = [], vit.merge_order

    def recording(keys, r, protect):
        margins.append(merge_margin(keys, r, protect))
        return merge_order(keys, r, protect)

    vit.merge_order = recording
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(x)).numpy()
    finally:
        vit.merge_order = merge_order
    return logits, min(margins, default=float("inf"))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=merged_vit_specs(), seed=st.integers(0, 2**16), fuse=st.booleans(), chunk=st.sampled_from([None, 2]))
def test_merged_float_program_matches_torch(spec, seed, fuse, chunk):
    model = randomise(build_model(spec, seed=seed), seed)
    program = lower_float(model, fuse_gelu=fuse)
    assert program.macs() == count_macs(spec)
    merges = [k for k in program.kernels if k.op == "token_merge"]
    assert len(merges) == sum(1 for b in spec.blocks if b.merge_r)
    sized = [k for k in program.kernels if k.op == "attention" and len(k.inputs) == 2]
    first = next((i for i, b in enumerate(spec.blocks) if b.merge_r), spec.depth)
    assert len(sized) == max(0, spec.depth - first - 1)  # every attention after the first merge
    x = images(spec, 5, seed)
    ref, margin = torch_logits_and_margin(model, x)
    assume(margin > TIE_MARGIN)  # a near-tie is decided by float32 noise, differently in torch and NumPy
    assert_close_logits(run_program(program, {"image": x}, batch_size=chunk)["logits"], ref)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=merged_vit_specs(), seed=st.integers(0, 2**16), residual=st.sampled_from(["int8", "int16"]))
def test_merged_int8_program_validates_and_runs_bit_exactly_in_any_chunking(spec, seed, residual):
    model = randomise(build_model(spec, seed=seed), seed)
    x = images(spec, 24, seed)
    program = lower_int8(minmax_qmodel(model, x[:16], residual_dtype=residual))
    program.validate()
    for k in program.kernels:
        if k.op == "token_merge":
            assert program.tensors[k.outputs[0]].quant == program.tensors[k.inputs[0]].quant
            assert program.tensors[k.outputs[1]].dtype == "int32"
        if k.op == "attention" and len(k.inputs) == 2:
            assert program.consts[k.consts["log_size"]].dtype == np.int32
    xq = quantize_input(program, x)
    logits = run_program(program, xq)["logits"]
    np.testing.assert_array_equal(run_program(program, xq, batch_size=1)["logits"], logits)
    unfused = lower_int8(minmax_qmodel(model, x[:16], residual_dtype=residual), fuse_gelu=False)
    np.testing.assert_array_equal(run_program(unfused, xq)["logits"], logits)


needs_zoo = pytest.mark.skipif(not (ZOO / "model.safetensors").exists(), reason="zoo model not trained")


@needs_zoo
def test_zoo_merged_float_program_matches_torch_and_int8_agrees():
    from edgevit.data import load_dataset
    from edgevit.model.checkpoint import load_checkpoint

    model = load_checkpoint(ZOO)
    merged = build_like(model, model.spec.with_blocks([replace(b, merge_r=8) for b in model.spec.blocks]))
    test = load_dataset("fashion-mnist").test.take(200)
    x = model.preprocess.apply(test.images)
    program = lower_float(merged)
    with torch.no_grad():
        ref = merged(torch.from_numpy(x)).numpy()
    got = run_program(program, {"image": x})["logits"]
    assert_close_logits(got, ref)
    assert program.tensors["logits"].shape == (10,) and program.tensors["t3.merged"].shape == (18, 64)
    int8 = lower_int8(minmax_qmodel(merged, x[:64]))
    pred = run_program(int8, quantize_input(int8, x))["logits"].argmax(1)
    assert (pred == got.argmax(1)).mean() >= 0.9
