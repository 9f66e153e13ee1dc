"""NAS cost estimates per second: the zoo specs and samples of the default MCU search space.

Each estimate is what `edgevit search` pays per candidate: lower the spec with `lower_int8` on
placeholder weights (edgevit/nas/placeholder.py) and `Target.estimate` it (memory plan, code and
latency model), uncached (`Estimator.compute`). Rates are CPU-time and wall-time estimates per
second, best of `--rounds` rounds. Target (issue #13): >= 100 estimates/s for zoo-size specs.
Run it alone: another job on a 2-core machine slows every estimate.

    .venv/bin/python benchmarks/nas_estimate_speed.py [--profile stm32f746-disco] [--samples 60]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

from edgevit.model.spec import ViTSpec
from edgevit.nas.estimate import Estimator
from edgevit.nas.space import default_space

ROOT = Path(__file__).resolve().parents[1]
TARGET_PER_S = 100


def best_rate(estimate, specs: list[ViTSpec], rounds: int) -> dict[str, float]:
    """{cpu_per_s, wall_per_s} of the best of `rounds` rounds of estimate(spec) over `specs`."""
    best = (0.0, 0.0)
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        for spec in specs:
            estimate(spec)
        best = max(best, (len(specs) / (time.process_time() - cpu), len(specs) / (time.perf_counter() - wall)))
    return {"cpu_per_s": round(best[0], 1), "wall_per_s": round(best[1], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="stm32f746-disco")
    ap.add_argument("--samples", type=int, default=60, help="search-space samples to estimate")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    est = Estimator(args.profile)
    rows = []
    for name in ("fmnist-tiny", "fmnist-small"):
        spec = ViTSpec.load(ROOT / "models" / name / "spec.yaml")
        est.compute(spec)  # imports, LUTs, the latency calibration
        rate = best_rate(est.compute, [spec] * 15, args.rounds)
        rows.append({"specs": name, **rate, "target_per_s": TARGET_PER_S, "met": rate["cpu_per_s"] >= TARGET_PER_S})
        print(f"{name}: {rate['cpu_per_s']:.0f}/s CPU, {rate['wall_per_s']:.0f}/s wall", file=sys.stderr)
    space = default_space(est.profile, (1, 28, 28), 10)
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(args.samples)]
    rate = best_rate(est.compute, samples, 1)
    rows.append({"specs": f"{args.samples} samples of the default MCU space (seed 0)", **rate, "target_per_s": None,
                 "met": None})
    print(f"space samples: {rate['cpu_per_s']:.0f}/s CPU", file=sys.stderr)
    print(json.dumps({"benchmark": "nas_estimate_speed", "profile": args.profile, "machine": platform.processor()
                      or platform.machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
