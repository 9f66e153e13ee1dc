"""The quant pass: observers, re-parameterisation, int8 agreement on the zoo model, mixed budgets, CLI."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevit.data import ArrayDataset, load_dataset
from edgevit.errors import UserInputError
from edgevit.lower.from_model import lower_float
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.model.vit import build_model
from edgevit.passes.calibrate import TensorStats, collect_stats
from edgevit.passes.observers import observe, quant_mse
from edgevit.passes.quantize import int8_logits, int8_program, quantize
from edgevit.passes.reparam import ln_linear_pairs, reparam_layernorms

ZOO_TINY = Path("models/fmnist-tiny")
EDGEVIT = shutil.which("edgevit") or str(Path(sys.executable).parent / "edgevit")
needs_zoo = pytest.mark.skipif(not (ZOO_TINY / "model.safetensors").exists(), reason="zoo model not trained")


def stats_of(values: np.ndarray) -> TensorStats:
    s = TensorStats("x", values.size)
    s.update(values.astype(np.float32).reshape(1, -1, 1))
    return s


def mse_of(values: np.ndarray, q) -> float:
    rng = np.array([[q.scale * (-128 - q.zero_point), q.scale * (127 - q.zero_point)]])
    return float(quant_mse(values.astype(np.float64), np.ones(values.size), rng, "int8", False)[0])


def test_percentile_clips_outliers_and_minmax_does_not():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 200_000), [80.0, -60.0]])
    mm, pc = observe(stats_of(x), "minmax"), observe(stats_of(x), "percentile", percentile=99.99)
    assert mm.scale * 255 >= 139.0  # covers [-60, 80]
    assert pc.scale * 255 < 12.0  # ~ +-4.5 sigma
    inliers = x[np.abs(x) < 5]
    assert mse_of(inliers, pc) < 0.01 * mse_of(inliers, mm)  # the bulk keeps its resolution


def test_mse_observer_beats_minmax_on_heavy_tails():
    rng = np.random.default_rng(1)
    for x in (rng.standard_t(df=3, size=200_000), rng.laplace(size=200_000)):
        mm, ms = observe(stats_of(x), "minmax"), observe(stats_of(x), "mse")
        pc = observe(stats_of(x), "percentile")
        assert ms.scale < mm.scale
        assert mse_of(x, ms) < 0.8 * mse_of(x, mm) and mse_of(x, ms) < mse_of(x, pc)
    sym = observe(stats_of(x), "mse", symmetric=True)
    assert sym.zero_point == 0


def random_lowrank_model(seed=0):
    """A small model with randomised LayerNorm affines and one low-rank linear after a LayerNorm."""
    blocks = (BlockSpec(heads=2, head_dim=4, mlp_hidden=16, ranks={"qkv": 3}), BlockSpec(heads=2, head_dim=4,
                                                                                        mlp_hidden=16))
    spec = ViTSpec(image_size=8, in_channels=1, patch_size=2, embed_dim=8, num_classes=3, blocks=blocks, name="r")
    model = build_model(spec, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def test_reparam_preserves_the_float_function():
    model = random_lowrank_model()
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 8, 8), dtype=np.uint8)
    x = model.preprocess.apply_torch(torch.from_numpy(images))
    with torch.no_grad():
        before = model(x)
    stats = collect_stats(lower_float(model, fuse_gelu=False), images, model.preprocess)
    ln_before = {t: stats[t].ch_max - stats[t].ch_min for _, _, t in ln_linear_pairs(model)}
    reparam_layernorms(model, stats, alpha=1.0)
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5)
    new = collect_stats(lower_float(model, fuse_gelu=False), images, model.preprocess)
    for t, width in ln_before.items():
        w = new[t].ch_max - new[t].ch_min
        assert w.std() / w.mean() < 1e-3 < width.std() / width.mean()  # channel ranges equalised
        assert np.allclose(new[t].ch_max + new[t].ch_min, 0, atol=1e-4)  # and centred


def synthetic_data(n=64, seed=0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, n),
                        classes=["a", "b", "c"], name="synthetic")


def test_quantize_does_not_mutate_and_w4_keeps_the_head_at_8_bits():
    model = random_lowrank_model(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qm, report = quantize(model, synthetic_data(), w=4, calib=32)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert qm.config.bits_of("head.weight") == 8
    assert qm.config.bits_of("blocks.0.attn.qkv.a.weight") == 4 and qm.config.bits_of("blocks.1.mlp.fc2.weight") == 4
    assert qm.config.act("t0.qkv").zero_point == 0 and qm.config.act("patches") == qm.config.act("tokens")
    assert report.weight_bytes_after == int8_program(qm).weight_bytes()
    assert report.weight_bytes_before == 4 * model.num_params()  # fp32


def test_mixed_respects_the_budget_and_rejects_infeasible_ones():
    model, data = random_lowrank_model(2), synthetic_data(seed=2)
    full = int8_program(quantize(model, data, w=8, calib=32)[0]).weight_bytes()
    low = int8_program(quantize(model, data, w=4, calib=32)[0]).weight_bytes()
    budget = (full + low) / 2
    qm, _ = quantize(model, data, w="mixed", flash_kb=budget / 1024, calib=32)
    got = int8_program(qm).weight_bytes()
    assert got <= budget and 0 < sum(b == 4 for b in qm.config.weight_bits.values())
    with pytest.raises(UserInputError, match="minimum achievable"):
        quantize(model, data, w="mixed", flash_kb=0.1, calib=32)
    with pytest.raises(UserInputError, match="flash_kb"):
        quantize(model, data, w="mixed", calib=32)


@needs_zoo
def test_zoo_tiny_int8_program_agrees_with_float():
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.model.evaluate import predict

    model = load_checkpoint(ZOO_TINY)
    splits = load_dataset("fashion-mnist")
    test = splits.test.take(1000)
    qm, _ = quantize(model, splits.train)
    program = int8_program(qm)
    assert program.meta["lowering"] == "int8"
    agree = (int8_logits(qm, test.images, program).argmax(1) == predict(model, test)).mean()
    assert agree >= 0.98


def run_cli(*args):
    return subprocess.run([EDGEVIT, *map(str, args)], capture_output=True, text=True, timeout=600)


@needs_zoo
def test_cli_eval_with_passes():
    r = run_cli("eval", ZOO_TINY, "--data", "fashion-mnist", "--passes", "quant(w=8,a=8)", "--compare", "--json",
                "--limit", "200")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"top1", "macs", "params", "weight_bytes", "fp32_top1", "agreement"}
    assert out["images"] == 200 and out["agreement"] >= 0.95 and out["params"] == 139018
    assert out["weight_bytes"] < 139018 * 2  # int8 weights, not fp32
    bad = run_cli("eval", ZOO_TINY, "--passes", "quant(w=3)", "--limit", "10")
    assert bad.returncode == 2 and "quant: w must be one of 4, 8, mixed (got 3)" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_gptq_beats_plain_rounding_and_stays_on_the_lowering_grid():
    from edgevit.lower.from_quantized import quantize_weight
    from edgevit.passes.gptq import gptq_rows, row_scales

    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 32)) @ rng.normal(size=(32, 32))  # correlated inputs
    w = rng.normal(size=(16, 32)).astype(np.float32)
    h = x.T @ x / len(x)
    s = row_scales(w, 4)
    rtn = np.clip(np.floor(w / s[:, None] + 0.5), -7, 7) * s[:, None]
    g = gptq_rows(w, h, s, 4)
    out_err = lambda q: float(np.mean(((w - q) @ x.T) ** 2))  # noqa: E731
    assert out_err(g) < 0.7 * out_err(rtn)
    codes, scales = quantize_weight(g, 4)
    assert np.allclose(codes * scales[:, None], g, rtol=1e-6, atol=1e-7)  # the lowering finds the same codes
