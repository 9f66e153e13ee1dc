"""Calibrate the CPU latency model (edgevit/targets/cpu/latency.py) on this machine, in one command:

    python -m edgevit.targets.cpu.calibration.calibrate [--profile host] [--train 12] [--validate 3]
                                     [--threads 1,2] [--jobs 2] [--out PATH] [--docs PATH]

1. A fixed set of specs: `--train` random specs of the default cpu NAS space (28x28 single-channel
   and 32x32 RGB data, seeded; every block made equal to the first, so each builds a few distinct
   kernels; head widths 32, 16, 64 in turn), the space's smallest and largest specs and three
   token-heavy ones (145 to 257 tokens) for the fit; for the
   held-out validation the zoo models (models/fmnist-tiny, models/fmnist-small) and `--validate`
   other random specs. Each spec as a float32 Program (the float lowering of the zoo checkpoint, or
   of a seeded random model) and as an int8 Program (the int8 lowering of its placeholder
   quantized model: the kernels, shapes and plan `edgevit compile --passes quant(w=8,a=8)` gives).
2. Every Program is built as `edgevit compile --profile <profile>` builds it (`CpuTarget.build`)
   and made with the artifact's Makefile, `--jobs` at a time; then, one at a time, each is timed by
   its bench program with every `--threads` count (measure.py).
3. Per (dtype, threads): non-negative least squares of the measured ns on the Programs' work
   features (latency.program_features over the memory plan's steps), each sample weighted by
   1 / its latency (relative error), columns scaled to unit norm.
4. Writes calibration/host.json: the host CPU, its clock, the edgevit commit, the bench used, the
   coefficients, the fit and held-out errors and every sample; then rewrites the "Latency model"
   error table in docs/cpu-backend.md from that file (between the LATENCY-TABLE markers).

Takes ~5-8 min on a busy 2-core machine (TVM's LLVM build of each Program dominates). Re-run it
whenever the kernels change: the coefficients describe the kernels of the commit it records.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.backend.nnls import relative_nnls

from edgevit.targets.cpu import latency

ROOT = Path(__file__).resolve().parents[4]  # the repository (edgevit/targets/cpu/calibration/ -> ..)
ZOO = ("fmnist-tiny", "fmnist-small")
DOCS = ROOT / "docs" / "cpu-backend.md"
DATA_SHAPES = ((1, 28, 28), (3, 32, 32))  # Fashion-MNIST-like and CIFAR-like inputs, 10 classes
# Fixed specs with many tokens (the NAS space at 28x28 has at most 50), so that attention's N^2 terms
# are pinned down for larger inputs (head widths 16 and 64 besides the space's 32): three for the fit, a DeiT-Tiny-shaped one (2 of its 12 blocks) held out.
TOKEN_HEAVY = (
    ("train", {"name": "tokens-257", "image_size": 64, "in_channels": 3, "patch_size": 4, "embed_dim": 96,
               "pool": "cls", "num_classes": 10, "depth": 2, "heads": 6, "head_dim": 16, "mlp_hidden": 192}),
    ("train", {"name": "tokens-145", "image_size": 96, "in_channels": 3, "patch_size": 8, "embed_dim": 128,
               "pool": "cls", "num_classes": 10, "depth": 2, "heads": 2, "head_dim": 64, "mlp_hidden": 256}),
    ("train", {"name": "tokens-197", "image_size": 112, "in_channels": 3, "patch_size": 8, "embed_dim": 192,
               "pool": "cls", "num_classes": 100, "depth": 1, "heads": 3, "head_dim": 64, "mlp_hidden": 768}),
    ("validation", {"name": "deit-tiny-2blocks", "image_size": 224, "in_channels": 3, "patch_size": 16,
                    "embed_dim": 192, "pool": "cls", "num_classes": 1000, "depth": 2, "heads": 3, "head_dim": 64,
                    "mlp_hidden": 768}),
)
HEAD_DIMS = (32, 16, 64)  # head widths given to the random training specs in turn
MARK_START, MARK_END = "<!-- LATENCY-TABLE:START (calibrate.py writes this) -->", "<!-- LATENCY-TABLE:END -->"


def log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- what is measured

def spec_set(seed: int, train: int, validate: int) -> list[tuple[str, str, Any]]:
    """[(role "train" | "validation", zoo model directory name or "", ViTSpec)]: the fixed specs (module doc)."""
    from edgevit.model.spec import ViTSpec
    from edgevit.nas.space import default_space

    out: list[tuple[str, str, Any]] = []
    spaces = [default_space("cpu", shape, 10) for shape in DATA_SHAPES]
    out += [("train", "", spaces[0].smallest()), ("train", "", spaces[0].largest())]
    rng = random.Random(f"cpu-latency/{seed}/train")
    out += [("train", "", uniform(spaces[1 if i % 4 == 3 else 0].sample(rng), HEAD_DIMS[i % len(HEAD_DIMS)]))
            for i in range(train)]
    out += [(role, "", ViTSpec.from_dict(d)) for role, d in TOKEN_HEAVY]
    out += [("validation", name, ViTSpec.from_yaml((ROOT / "models" / name / "spec.yaml").read_text()))
            for name in ZOO if (ROOT / "models" / name / "spec.yaml").is_file()]
    rng = random.Random(f"cpu-latency/{seed}/validation")
    out += [("validation", "", spaces[i % len(spaces)].sample(rng)) for i in range(validate)]
    return out


def uniform(spec, head_dim: int | None = None):
    """`spec` with every block equal to its first but for token merging (kept per block, so as
    many tokens remain) and, when given and valid, attention heads of `head_dim`: the same kind of
    work with a few distinct kernel shapes, so its build is several times faster than a NAS spec's
    (whose blocks differ; the model is additive over kernels, so the fit loses nothing), and head
    widths other than the space's one (or softmax and attention MACs could not be told apart)."""
    from edgevit.errors import SpecError
    from edgevit.model.spec import ViTSpec

    d = spec.to_dict()
    if "blocks" not in d:
        return spec
    first = {k: v for k, v in d["blocks"][0].items() if k != "merge_r"}
    d["blocks"] = [{**first, **({"merge_r": b["merge_r"]} if "merge_r" in b else {})} for b in d["blocks"]]
    d["name"] = f"{spec.name}-uniform"
    if head_dim is not None and head_dim != first["head_dim"]:
        try:
            return ViTSpec.from_dict({**d, "name": f"{d['name']}-hd{head_dim}",
                                      "blocks": [{**b, "head_dim": head_dim} for b in d["blocks"]]})
        except SpecError:
            pass
    return ViTSpec.from_dict(d)


def programs_of(zoo: str, spec, seed: int) -> dict[str, Any]:
    """{"float32": Program, "int8": Program} of `spec` (module doc, step 1)."""
    import torch

    from edgevit.lower import lower
    from edgevit.lower.from_quantized import lower_int8
    from edgevit.nas.placeholder import placeholder_qmodel

    if zoo:
        from edgevit.model.checkpoint import load_checkpoint

        model = load_checkpoint(ROOT / "models" / zoo)
    else:
        from edgevit.model.vit import VisionTransformer

        torch.manual_seed(seed)
        model = VisionTransformer(spec).eval()
    return {"float32": lower(model), "int8": lower_int8(placeholder_qmodel(spec))}


# ---------------------------------------------------------------- fitting

def fit_coefficients(features: list[dict[str, float]], measured_ns: list[float]) -> dict[str, float]:
    """Non-negative ns per unit of every latency.FEATURES such that each sample's features x
    coefficients approximate its measured ns, minimising relative residuals."""
    a = np.array([[f[name] for name in latency.FEATURES] for f in features], np.float64)
    x = relative_nnls(a, measured_ns)
    return {name: float(v) for name, v in zip(latency.FEATURES, x)}


def predicted_ms(coefs: dict[str, float], features: dict[str, float]) -> float:
    """ms that `coefs` predict for `features` (no scaling: the calibration machine)."""
    return sum(coefs[f] * features[f] for f in latency.FEATURES) / 1e6


def errors(samples: list[dict]) -> dict[str, Any]:
    """{count, mean_abs_rel_error, max_abs_rel_error} of samples carrying `rel_error`."""
    errs = [abs(s["rel_error"]) for s in samples]
    return {"count": len(errs), "mean_abs_rel_error": float(np.mean(errs)) if errs else None,
            "max_abs_rel_error": float(np.max(errs)) if errs else None}


def fit_models(samples: list[dict]) -> dict[str, dict]:
    """{model_key: {coefficients, fit, validation}} from measured samples; adds predicted_ms and
    rel_error to every sample (in place)."""
    models = {}
    for key in sorted({latency.model_key(s["dtype"], s["threads"]) for s in samples}):
        mine = [s for s in samples if latency.model_key(s["dtype"], s["threads"]) == key]
        train = [s for s in mine if s["role"] == "train"]
        coefs = fit_coefficients([s["features"] for s in train], [s["measured_ms"] * 1e6 for s in train])
        for s in mine:
            s["predicted_ms"] = predicted_ms(coefs, s["features"])
            s["rel_error"] = s["predicted_ms"] / s["measured_ms"] - 1.0
        models[key] = {"coefficients": coefs, "fit": errors(train),
                       "validation": errors([s for s in mine if s["role"] == "validation"])}
    return models


# ---------------------------------------------------------------- the record

def host_description() -> dict[str, Any]:
    """This machine: CPU model name, clock (MHz from /proc/cpuinfo), its SIMD flags, logical CPUs."""
    import os

    cpu, mhz, flags = platform.processor() or platform.machine(), None, []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "model name" and cpu in ("", platform.machine(), platform.processor()):
                cpu = value.strip()
            elif name == "cpu mhz" and mhz is None:
                mhz = float(value)
            elif name in ("flags", "features") and not flags:
                flags = sorted(f for f in value.split() if f.startswith(("avx", "sse4", "fma", "asimd", "neon")))
    except OSError:
        pass
    return {"cpu": cpu, "mhz": mhz, "simd_flags": flags, "logical_cpus": os.cpu_count(),
            "machine": platform.machine()}


def edgevit_commit() -> str:
    """`git rev-parse HEAD` of the repository, with "+dirty" when tracked files are modified."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def pct(value: float | None) -> str:
    """A relative error as a percentage with one decimal ("-" for None: no such programs)."""
    return "-" if value is None else f"{100 * value:.1f}%"


def docs_table(record: dict[str, Any]) -> str:
    """The markdown block (between MARK_START and MARK_END) stating the calibration's errors."""
    rows = []
    for key, m in sorted(record["models"].items()):
        dtype, threads = key.split("/")
        v, f = m["validation"], m["fit"]
        rows.append(f"| {dtype} | {threads} | {f['count']} | {pct(f['mean_abs_rel_error'])} | {v['count']} | "
                    f"{pct(v['mean_abs_rel_error'])} | {pct(v['max_abs_rel_error'])} |")
    host = record["host"]
    return "\n".join([
        MARK_START,
        f"Calibrated on `{host['cpu']}` ({host['mhz']} MHz, profile `{record['profile']}`), edgevit "
        f"`{record['edgevit_commit'][:12]}`, {record['created']}, timed by the {record['bench']}. "
        "Relative error of the predicted vs measured single-inference latency:",
        "",
        "| dtype | threads | fit programs | fit mean error | held-out programs | held-out mean error | "
        "held-out max error |",
        "|---|---|---|---|---|---|---|",
        *rows,
        MARK_END])


def update_docs(record: dict[str, Any], path: Path = DOCS) -> bool:
    """Replace the block between the markers in `path` with docs_table(record); False when the file
    or its markers are missing (nothing written)."""
    if not path.is_file():
        return False
    text = path.read_text()
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start < 0 or end < start:
        return False
    path.write_text(text[:start] + docs_table(record) + text[end + len(MARK_END):])
    return True


def build_job(job: dict[str, Any]) -> dict[str, Any]:
    """Phase 1 for one Program (run in a worker process): lower `job` (role, zoo, spec dict, seed,
    dtype, profile, directory), count its features and build its bench; the sample without timing."""
    import torch

    from edgevit.backend.planner import plan_program
    from edgevit.model.spec import ViTSpec
    from edgevit.profiles.profile import load_profile
    from edgevit.targets.cpu.calibration.measure import build_bench
    from edgevit.targets.cpu.target import ARENA

    torch.set_num_threads(1)
    spec = ViTSpec.from_dict(job["spec"])
    program = programs_of(job["zoo"], spec, job["seed"])[job["dtype"]]
    t0 = time.monotonic()
    try:
        bench = build_bench(program, load_profile(job["profile"]), Path(job["directory"]))
    except Exception as e:  # a worker's exception loses its type's context: say which Program failed
        raise RuntimeError(f"building the {job['dtype']} Program of {job['zoo'] or spec.name} "
                           f"({job['spec']}) failed: {type(e).__name__}: {e}") from None
    return {"name": job["zoo"] or spec.name, "role": job["role"], "dtype": job["dtype"], "spec": job["spec"],
            "macs": program.macs(), "features": latency.program_features(program, plan_program(program, ARENA).steps),
            "build_s": round(time.monotonic() - t0, 1), "bench": bench}


def calibrate(profile_name: str, seed: int, train: int, validate: int, threads: list[int], rounds: int,
              workdir: Path, jobs: int = 2) -> dict[str, Any]:
    """Build every Program of the spec set in `jobs` processes, then time them one by one on a
    quiet machine and fit (module doc); the calibration record."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from edgevit.profiles.profile import load_profile
    from edgevit.targets.cpu.calibration.measure import time_bench
    from edgevit.targets.cpu.isa import llvm_target

    profile = load_profile(profile_name)
    target = llvm_target(profile)  # UserInputError here for a profile this machine cannot run
    host = host_description()
    todo = [{"role": role, "zoo": zoo, "spec": spec.to_dict(), "seed": seed + i, "dtype": dtype,
             "profile": profile_name, "directory": str(workdir / f"p{i:03d}-{dtype}")}
            for i, (role, zoo, spec) in enumerate(spec_set(seed, train, validate)) for dtype in ("float32", "int8")]
    t0 = time.monotonic()
    built, failed = [], []
    with ProcessPoolExecutor(max(1, jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(build_job, job): job for job in todo}
        for future in as_completed(futures):
            job = futures[future]
            try:
                b = future.result()
            except Exception as e:  # recorded and reported: the fit uses what built
                failed.append({"name": job["zoo"] or job["spec"]["name"], "dtype": job["dtype"], "error": str(e)[-2000:]})
                log(f"[{time.monotonic() - t0:5.0f} s] FAILED {failed[-1]['dtype']} {failed[-1]['name']}: "
                    f"{str(e).splitlines()[0][:300]}")
                continue
            built.append(b)
            log(f"[{time.monotonic() - t0:5.0f} s] built {len(built):3d}/{len(todo)} {b['dtype']:7s} "
                f"{b['macs']:>12,} MACs in {b['build_s']:5.1f} s  {b['name']}")
    order = {(j["zoo"] or j["spec"]["name"], j["dtype"]): i for i, j in enumerate(todo)}
    built.sort(key=lambda b: order[(b["name"], b["dtype"])])
    if not built:
        raise RuntimeError(f"no Program built; the first error: {failed[0]['error'] if failed else '-'}")
    samples = []
    for b in built:
        bench = b.pop("bench")
        for n in threads:
            if n != 1 and not bench.library:
                log(f"skipping {n} threads: the artifacts have no library bench program")
                continue
            ms = time_bench(bench, n, rounds)
            samples.append({**b, "threads": n, "measured_ms": ms})
            log(f"[{time.monotonic() - t0:5.0f} s] timed {b['role']:10s} {b['dtype']:7s} t{n} {ms:9.3f} ms  "
                f"{b['name']}")
        which = bench.which
    models = fit_models(samples)
    clock = host["mhz"] * 1e6 if host["mhz"] else float(profile.clock_hz)
    return {"format": latency.FORMAT, "version": latency.VERSION, "profile": profile.name,
            "created": datetime.date.today().isoformat(), "edgevit_commit": edgevit_commit(), "host": host,
            "llvm_target": target, "machine": latency.machine_of_target(target, clock).to_dict(), "bench": which,
            "seed": seed, "features": list(latency.FEATURES), "models": models, "failed": failed,
            "seconds": round(time.monotonic() - t0, 1), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    """The command line (module doc)."""
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="host", help="a native cpu profile of this machine (default: host)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=12, help="random NAS-space specs for the fit")
    ap.add_argument("--validate", type=int, default=3, help="held-out random specs (besides the zoo models)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (>1 needs the library bench)")
    ap.add_argument("--jobs", type=int, default=2, help="processes building the Programs (timing is serial)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds per Program (the fastest median counts)")
    ap.add_argument("--out", type=Path, default=latency.CALIBRATION_FILE)
    ap.add_argument("--docs", type=Path, default=DOCS, help="markdown file whose error table is rewritten")
    ap.add_argument("--commit", default=None, help="the edgevit commit to record when this is not a git checkout "
                                                   "(default: git rev-parse HEAD, +dirty with local changes)")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="edgevit-cpu-calib-") as tmp:
        record = calibrate(args.profile, args.seed, args.train, args.validate, threads, args.rounds, Path(tmp),
                           args.jobs)
    if args.commit:
        record["edgevit_commit"] = args.commit
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for f in record["failed"]:
        log(f"WARNING: the {f['dtype']} Program of {f['name']} did not build and is not in the fit")
    for key, m in record["models"].items():
        log(f"{key}: fit mean {pct(m['fit']['mean_abs_rel_error'])}, held-out mean "
            f"{pct(m['validation']['mean_abs_rel_error'])} max {pct(m['validation']['max_abs_rel_error'])}")
    log(f"wrote {args.out}" + (f"; updated {args.docs}" if update_docs(record, args.docs) else
                               f"; {args.docs} has no LATENCY-TABLE markers: not updated"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
