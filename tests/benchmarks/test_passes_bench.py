"""Smoke test of benchmarks/passes.py's row logic on a small random model: rows carry the measured
MACs / top-1 against the baseline, the tome pick respects the accuracy bound, targets can fail."""

from __future__ import annotations

import numpy as np

from benchmarks.passes import baseline_row, check_targets, pick_tome, run_row
from edgevit.data import ArrayDataset
from edgevit.model.counts import count_macs
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from tests.lower.int8_helpers import randomise


def data(n: int, seed: int) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, n),
                        classes=["a", "b", "c"], name="syn")


def test_rows_measure_against_the_baseline_and_targets_can_fail() -> None:
    spec = ViTSpec.uniform(depth=2, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1,
                           patch_size=2, embed_dim=8, num_classes=3, name="b")
    model = randomise(build_model(spec, seed=0), 0)
    train, test = data(64, 0), data(40, 1)
    base = baseline_row(model, test)
    assert base["macs"] == count_macs(spec) and 0.0 <= base["top1"] <= 1.0
    tome, merged = run_row(model, "tome", "tome(r=2)", train, test, base)
    assert tome["macs"] < base["macs"] and tome["mac_cut"] > 1.0 and tome["spec"]["merge_r"] == [2, 2]
    assert tome["delta_pt"] == round(100 * (tome["top1"] - base["top1"]), 2) and tome["peak_bytes"] > 0
    assert tome["reproduce"] == "tome(r=[2,2])" and merged.spec.blocks[0].merge_r == 2
    quant, _ = run_row(merged, "combined", "quant(w=8,a=8,calib=16)", train, test, base, done="tome(r=2)")
    assert quant["macs"] < base["macs"] and quant["passes"] == "tome(r=2),quant(w=8,a=8,calib=16)"
    bad = dict(tome, delta_pt=-3.0)
    assert pick_tome([bad]) is None
    assert pick_tome([bad, dict(tome, delta_pt=-0.2, mac_cut=1.1)])["mac_cut"] == 1.1
    prune = {"table": "prune", "passes": "prune(heads=0.25,mlp=0.3,finetune=1)", "delta_pt": -1.5}
    result = check_targets("b", [base, tome, prune], pick_tome([dict(tome, delta_pt=-0.1, mac_cut=1.2)]), 1)
    assert result["tome"]["met"] is False and result["prune"]["met"] is False
