"""MCU memory plan of zoo-size ViTs: planned int8 arena vs its lower bound and the naive plan.

Rows: fmnist-tiny (its checkpoint), fmnist-small (its checkpoint, or the spec with random weights
while the checkpoint is being trained: shapes, not values, decide every figure here), and
larger-token specs (patch 2 on 28x28: 197 tokens). Each model is quantized quickly (min/max
observer on 16 random calibration images; no GPTQ / bias correction: memory does not depend on
the values) and planned for the stm32f746-disco profile.

Columns: kernels; int8 arena, lower bound (largest live set), naive plan (TFLite-Micro style, see
backend/naive.py), arena/naive (issue target <= 0.5), arena/lower bound (target <= 1.2); chains
(chunked steps); weight, code and flash bytes (targets/mcu/memory.py); float32 arena; plans per
second (int8 arena plan and the MCU memory figures, this machine, measured for >= 1 s, best of 3).

    .venv/bin/python benchmarks/mcu_memory.py [--profile stm32f746-disco]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgevit.data.dataset import ArrayDataset
from edgevit.lower import lower
from edgevit.model.checkpoint import load_checkpoint
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from edgevit.passes.quantize import quantize
from edgevit.profiles.profile import load_profile
from edgevit.targets.mcu.memory import memory_figures, plan_memory

ROOT = Path(__file__).resolve().parents[1]
ZOO = ("fmnist-tiny", "fmnist-small")
TOKENS_197 = {  # patch 2 on 28x28: 196 patches + the class token
    "tok197-d64": dict(depth=4, heads=4, head_dim=16, mlp_hidden=128, embed_dim=64),
    "tok197-d96": dict(depth=4, heads=3, head_dim=32, mlp_hidden=384, embed_dim=96),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def zoo_model(name: str):
    """(model, note): the checkpoint if present, else the spec with random weights."""
    d = ROOT / "models" / name
    if (d / "model.safetensors").is_file():
        return load_checkpoint(d), "checkpoint"
    return build_model(ViTSpec.load(d / "spec.yaml"), seed=0).eval(), "spec only, random weights (not trained yet)"


def token_model(name: str):
    """A 197-token spec with random weights."""
    spec = ViTSpec.uniform(image_size=28, in_channels=1, patch_size=2, num_classes=10, name=name, **TOKENS_197[name])
    return build_model(spec, seed=0).eval(), "spec, random weights"


def quick_int8(model):
    """An int8 Program of `model`: min/max calibration on 16 random images (fast; memory only)."""
    rng = np.random.default_rng(0)
    spec = model.spec
    images = rng.integers(0, 256, (16, spec.in_channels, spec.image_size, spec.image_size), dtype=np.uint8)
    calib = ArrayDataset(images, rng.integers(0, 10, 16), [str(i) for i in range(10)], "random")
    qmodel, _ = quantize(model, calib, calib=16, observer="minmax", repq=0, gptq=0, bias_corr=0)
    return lower(qmodel)


def plans_per_second(program, profile, seconds: float = 1.0) -> float:
    """Best of 3 rates of plan_memory + memory_figures over >= `seconds` each."""
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            memory_figures(program, plan_memory(program), profile)
            n += 1
        best = max(best, n / (time.perf_counter() - t0))
    return best


def row(name: str, model, note: str, profile) -> dict:
    """One table row for `model`."""
    program = quick_int8(model)
    plan = plan_memory(program)
    fig = memory_figures(program, plan, profile)
    fplan = plan_memory(lower(model))
    chains = [s for s in plan.steps if s.chunk_rows]
    return {"model": name, "source": note, "tokens": model.spec.num_patches + model.spec.num_prefix,
            "kernels": len(program.kernels), "arena_bytes": plan.arena_bytes,
            "lower_bound_bytes": plan.lower_bound_bytes, "naive_bytes": plan.naive_bytes,
            "arena_over_naive": round(plan.arena_bytes / plan.naive_bytes, 3),
            "arena_over_lower_bound": round(plan.arena_bytes / plan.lower_bound_bytes, 3),
            "chains": [[program.kernels[i].name for i in s.kernels] + [f"chunk {s.chunk_rows}/{s.rows}"]
                       for s in chains[:1]] + ([f"... {len(chains)} chains"] if len(chains) > 1 else []),
            "weight_bytes": fig["weight_bytes"], "code_bytes": fig["code_bytes"], "flash_bytes": fig["flash_bytes"],
            "float32_arena_bytes": fplan.arena_bytes, "float32_naive_bytes": fplan.naive_bytes,
            "plans_per_second": round(plans_per_second(program, profile), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="stm32f746-disco")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    models = [(n, *zoo_model(n)) for n in ZOO] + [(n, *token_model(n)) for n in TOKENS_197]
    rows = []
    for name, model, note in models:
        log(f"{name}: {note}")
        rows.append(row(name, model, note, profile))
    ok = {r["model"]: {"arena/naive<=0.5": r["arena_over_naive"] <= 0.5,
                       "arena/lower_bound<=1.2": r["arena_over_lower_bound"] <= 1.2,
                       ">=100 plans/s": r["plans_per_second"] >= 100} for r in rows}
    print(json.dumps({"profile": profile.name, "rows": rows, "targets": ok}, indent=1))


if __name__ == "__main__":
    main()
