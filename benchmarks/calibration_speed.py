"""Calibration time of the DeiT-Tiny-shaped model under several thread settings, and the same scales in all.

The model is benchmarks/cpu_latency.py's DeiT-Tiny-shaped checkpoint (224x224x3, patch 16, dim 192,
depth 12, 3 heads, MLP 768, 1000 classes, random weights from torch.manual_seed(0)); the data
`synthetic:3x224x224:1000`. For each setting a child process (its environment: the setting's thread
variables, nothing inherited) applies edgevit's thread policy as `edgevit compile` does, then runs
the `quant(w=8,a=8)` pass through the pass pipeline on --calib images of the train split, and
reports the wall and CPU time of the pass (CPU = all threads of the process, so oversubscription
shows as CPU time above wall time on an idle machine), the output (logits) scale and a digest of
every activation scale and zero point. With --compile it also times whole `edgevit compile` runs
(host profile, --calib-size --calib, 8 vectors) under the first two settings, CPU time from
getrusage of the child.

The machine may be shared: the load average before and after each measurement is recorded, and
--repeat N keeps the fastest of N runs per setting. Prints a table and the issue's targets
(calibration < 40 s; identical scales under every setting) with PASS/FAIL; writes JSON to --out.

    .venv/bin/python benchmarks/calibration_speed.py [--calib 32] [--repeat 1] [--compile] [--out runs/calibration_speed.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `benchmarks.cpu_latency` is imported from the checkout
    sys.path.insert(0, str(ROOT))
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "EDGEVIT_THREADS")
SETTINGS = {  # name -> environment variables of the child
    "default": {},
    "OPENBLAS_NUM_THREADS=1": {"OPENBLAS_NUM_THREADS": "1"},
    "OPENBLAS_NUM_THREADS=2": {"OPENBLAS_NUM_THREADS": "2"},
    "EDGEVIT_THREADS=1": {"EDGEVIT_THREADS": "1"},
}
TARGET_S = 40.0
DATA = "synthetic:3x224x224:1000"


def log(message: str) -> None:
    """Progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without thread variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def measure_calibration(calib: int) -> dict:
    """(In the child) time the quant pass on the DeiT-Tiny-shaped model after applying the thread policy."""
    from benchmarks.cpu_latency import deit_checkpoint
    from edgevit.data.resize import load_for_spec
    from edgevit.lower.from_model import lower_float
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.passes.actconfig import tensor_roles
    from edgevit.passes.pipeline import run_pipeline
    from edgevit.threads import apply_thread_policy, blas_threads

    ckpt = deit_checkpoint()
    torch_threads = apply_thread_policy()
    model = load_checkpoint(ckpt)
    train = load_for_spec(DATA, model.spec, None, str(ckpt)).train
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    qmodel, _ = run_pipeline(model, f"quant(w=8,a=8,calib={calib})", train)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    acts = sorted((k, v.scale, v.zero_point) for k, v in qmodel.config.activations.items())
    roles = tensor_roles(lower_float(qmodel.model, fuse_gelu=False))
    logits = qmodel.config.activations[next(t for t, r in roles.items() if r == "logits")]
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2), "torch_threads": torch_threads,
            "blas_threads": blas_threads(), "output_scale": logits.scale, "output_zero_point": logits.zero_point,
            "scales_sha256": hashlib.sha256(json.dumps(acts).encode()).hexdigest()}


def run_child(setting: str, calib: int) -> dict:
    """One calibration measurement in a fresh process with the setting's environment."""
    proc = subprocess.run([sys.executable, __file__, "--child", "--calib", str(calib)], env=child_env(SETTINGS[setting]),
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_compile(setting: str, calib: int) -> dict:
    """Wall and CPU seconds of a whole `edgevit compile` (host profile) under the setting's environment."""
    from benchmarks.cpu_latency import deit_checkpoint

    ckpt = deit_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load0 = os.getloadavg()[0]
        w0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "edgevit", "compile", str(ckpt), "--profile", "host",
                               "--passes", "quant(w=8,a=8)", "--calib-size", str(calib), "--data", DATA,
                               "--vectors", "8", "--out", str(Path(tmp) / "a"), "--json"],
                              env=child_env(SETTINGS[setting]), capture_output=True, text=True, timeout=7200)
        wall = time.perf_counter() - w0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    """Run the measurements (see the module doc); exit 0 when every one ran, 1 otherwise."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calib", type=int, default=32, help="calibration images (default 32)")
    p.add_argument("--repeat", type=int, default=1, help="runs per setting; the fastest (wall) is kept")
    p.add_argument("--compile", action="store_true", help="also time whole compiles (default vs OPENBLAS_NUM_THREADS=1)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "calibration_speed.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(measure_calibration(a.calib)))
        return 0
    rows, failed = {}, False
    for setting in SETTINGS:
        runs = []
        for i in range(max(1, a.repeat)):
            log(f"calibrating ({setting}, run {i + 1})")
            runs.append(run_child(setting, a.calib))
        ok = [r for r in runs if "error" not in r]
        failed |= len(ok) < len(runs)
        rows[setting] = {**(min(ok, key=lambda r: r["wall_s"]) if ok else runs[0]), "runs": runs}
    compiles = {}
    if a.compile:
        for setting in list(SETTINGS)[:2]:
            log(f"compiling ({setting})")
            compiles[setting] = time_compile(setting, a.calib)
            failed |= "error" in compiles[setting]
    print(f"DeiT-Tiny-shaped model, quant(w=8,a=8) on {a.calib} images, {os.cpu_count()} logical CPUs")
    print(f"{'setting':<26} {'wall s':>8} {'CPU s':>8} {'load':>11} {'torch/BLAS':>10}  output scale")
    for setting, r in rows.items():
        if "error" in r:
            print(f"{setting:<26} error: {r['error']}")
            continue
        print(f"{setting:<26} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['load_before']:>5.1f}-{r['load_after']:<5.1f} "
              f"{r['torch_threads']:>5}/{r['blas_threads']:<4}  {r['output_scale']!r}")
    for setting, r in compiles.items():
        print(f"compile {setting:<18} " + (f"error: {r['error']}" if "error" in r else
                                         f"{r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['load_before']:>5.1f}-{r['load_after']:<5.1f}"))
    good = [r for r in rows.values() if "error" not in r]
    fastest_default = rows["default"].get("wall_s")
    targets = {"calibration_default_under_40s": fastest_default is not None and fastest_default < TARGET_S,
               "same_scales_every_setting": len(good) == len(rows) and len({r["scales_sha256"] for r in good}) == 1}
    for name, passed in targets.items():
        print(f"target {name}: {'PASS' if passed else 'FAIL'}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"calib": a.calib, "cpus": os.cpu_count(), "settings": rows, "compiles": compiles,
                                 "targets": targets}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
