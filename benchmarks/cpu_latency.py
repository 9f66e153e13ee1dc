"""CPU latency: edgevit's static C library (float32, int8) vs onnxruntime (float32, static QDQ int8), one table.

Same machine, one run, batch 1, for each model (models/fmnist-tiny, models/fmnist-small and a
DeiT-Tiny-shaped model: 224x224x3, patch 16, dim 192, depth 12, 3 heads, MLP 768, 1000 classes,
random weights from torch.manual_seed(0), checkpoint cached under runs/cpu_latency_cache) and each
thread count (1 and 2):

- edgevit: `edgevit compile MODEL --profile host [--passes "quant(w=8,a=8)"] --threads MAX` once per
  model and precision (wall time of the command = compile time, no tuning), then for each T
  `edgevit run DIR --runner host --json --bench-runs N --threads T`: the artifact's bench program (warm-up, N runs, median / p90, its
  own peak RSS) and its check program (every bundled vector against the reference interpreter:
  int8 bit-exact, float32 within 1e-4 relative).
- onnxruntime: the model from `edgevit export-onnx`, batch fixed to 1; int8 is onnxruntime's own
  static QDQ quantization of it (settings in cpu_latency_ort.QDQ_SETTINGS) calibrated on the images
  edgevit's quant pass calibrates on (`calibration_subset` of the train split, --calib-size of
  them); one session per measurement in a child process (intra_op_num_threads=T,
  inter_op_num_threads=1, sequential), warm-up then N timed `session.run` calls; top-1 agreement
  of its outputs on the same test vectors with the float32 reference interpreter outputs
  (the float artifact's vectors/expected.npy).
- Interleaving: the timed runs of each (model, threads) are split into --rounds rounds (default 5);
  every round times all four cells one after the other (edgevit f32, onnxruntime f32, edgevit int8,
  onnxruntime int8), and a cell's median / p90 is the median over rounds of its round figures. On a
  shared (virtual) machine whose speed drifts for seconds at a time, both sides see the same phases.
- Data: Fashion-MNIST for the zoo models; `synthetic:3x224x224:1000` (edgevit/data/synthetic.py:
  seeded random images) for the DeiT-Tiny-shaped model, on both sides.

Prints the host (CPU model, ISA flags), versions, the table and the issue's targets with PASS/FAIL;
writes everything as JSON to --out. Exit 0 when every measurement ran (targets may still FAIL),
1 when any failed (its cell says why). Progress on stderr.

    .venv/bin/python benchmarks/cpu_latency.py [--runs 200] [--quick] [--models fmnist-tiny,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_latency_ort as ortb  # noqa: E402
from cpu_latency_report import compute_targets, print_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "cpu_latency_cache"
INT8 = "quant(w=8,a=8)"
PROFILE = "host"
DEIT = "deit-tiny-shaped"
MODELS = ("fmnist-tiny", "fmnist-small", DEIT)
DEIT_SPEC = {"name": DEIT, "image_size": 224, "in_channels": 3, "patch_size": 16, "embed_dim": 192,
             "num_classes": 1000, "pool": "cls", "depth": 12, "heads": 3, "head_dim": 64, "mlp_hidden": 768}
DEIT_DATA = "synthetic:3x224x224:1000"
DEIT_SEED = 0
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
COMPILE_LIMIT_S = {"zoo": 60.0, DEIT: 300.0}
QUICK = {"runs": 20, "warmup": 3, "vectors": 8, "calib_size": 32, "rounds": 2}


def log(message: str) -> None:
    """Progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (--quick overrides runs, warm-up, vectors and calibration size)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per measurement (median, p90); >= 1")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved rounds per (model, threads): each round times every cell with runs/rounds runs, "
                        "edgevit and onnxruntime alternating, so slow phases of a shared machine hit both sides")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs first (onnxruntime side; edgevit's bench "
                                                          "program does its own warm-up)")
    p.add_argument("--vectors", type=int, default=50, help="test vectors bundled and checked per artifact")
    p.add_argument("--calib-size", type=int, default=256, help="calibration images (edgevit quant and onnxruntime)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {', '.join(f'{k}={v}' for k, v in QUICK.items())} (numbers not representative)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "cpu_latency.json", help="JSON result file")
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "cpu_latency_work",
                   help="artifacts and ONNX models (replaced on every run)")
    p.add_argument("--keep", action="store_true", help="keep the artifacts and ONNX models in --workdir")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error(f"--threads: comma-separated integers, got {args.threads!r}")
    if unknown or not args.models:
        p.error(f"--models: choose among {', '.join(MODELS)} (got {unknown or 'nothing'})")
    if not args.threads or min(args.threads) < 1:
        p.error("--threads: thread counts must be >= 1")
    if min(args.runs, args.vectors, args.calib_size, args.rounds) < 1 or args.warmup < 0:
        p.error("--runs, --rounds, --vectors and --calib-size must be >= 1, --warmup >= 0")
    args.rounds = min(args.rounds, args.runs)
    return args


# ---------------------------------------------------------------- host and models

def host_info() -> dict:
    """CPU model name, core count, ISA features (all, and the SIMD ones edgevit's targets know), versions."""
    from edgevit.targets.cpu.isa import ARM_MATTR, X86_MATTR, host_isa

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = host_isa()
    known = set(X86_MATTR) | set(ARM_MATTR)
    return {"cpu": name, "arch": isa.arch, "cores": os.cpu_count(), "simd_flags": sorted(isa.features & known),
            "flags": sorted(isa.features), "python": platform.python_version(), "versions": _versions(),
            "edgevit_commit": _git_commit()}


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for dist in ("torch", "onnxruntime", "apache-tvm", "onnx", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def _git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True)
        return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "") if head.returncode == 0 else None
    except OSError:
        return None


def deit_checkpoint(cache: Path = CACHE) -> Path:
    """The DeiT-Tiny-shaped checkpoint (random weights, seed DEIT_SEED, ImageNet normalisation), built
    with edgevit's own model and checkpoint code the first time and reused while its spec is unchanged."""
    import torch

    from edgevit.data.normalize import Normalization
    from edgevit.model.checkpoint import save_checkpoint
    from edgevit.model.spec import ViTSpec, spec_from_dict
    from edgevit.model.vit import VisionTransformer

    spec = spec_from_dict(DEIT_SPEC, DEIT)
    path = cache / f"{DEIT}-seed{DEIT_SEED}"
    if (path / "spec.yaml").is_file() and (path / "model.safetensors").is_file() \
            and ViTSpec.load(path / "spec.yaml") == spec:
        return path
    log(f"building the {DEIT} checkpoint (random weights, seed {DEIT_SEED}) in {path}")
    torch.manual_seed(DEIT_SEED)
    model = VisionTransformer(spec, Normalization(*IMAGENET))
    save_checkpoint(model, path, info={"weights": f"random: timm-like init after torch.manual_seed({DEIT_SEED})",
                                       "made_by": "benchmarks/cpu_latency.py"})
    return path


def model_source(name: str) -> tuple[Path, str]:
    """(checkpoint path, --data) of a benchmark model."""
    if name == DEIT:
        return deit_checkpoint(), DEIT_DATA
    return ROOT / "models" / name, "fashion-mnist"


def dataset_images(ckpt: Path, data: str, calib_size: int, vectors: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration images, test inputs), float32 [N, C, H, W] normalised like the model's input: the
    `calib_size` images edgevit's quant pass calibrates on (`calibration_subset` of the train split,
    default seed) and the first `vectors` test images (what `edgevit compile` bundles)."""
    from edgevit.data import calibration_subset
    from edgevit.data.resize import load_for_spec
    from edgevit.model.checkpoint import load_checkpoint

    net = load_checkpoint(ckpt)
    splits = load_for_spec(data, net.spec, None, str(ckpt))
    calib = calibration_subset(splits.train, calib_size).images
    return net.preprocess.apply(calib), net.preprocess.apply(splits.test.images[:vectors])


# ---------------------------------------------------------------- measurements

def edgevit_cmd(args: list, threads: int, json_out: bool = True, timeout: float = 3600) -> tuple[dict, float]:
    """Run the edgevit console script with BLAS/OpenMP threads pinned; (its JSON stdout or {}, wall
    seconds). RuntimeError with the end of stderr when it fails (a run with mismatches, exit 1,
    still returns its JSON: the cell reports the mismatches)."""
    exe = shutil.which("edgevit") or str(Path(sys.executable).parent / "edgevit")
    cmd = [exe, *map(str, args)]
    log("  $ " + " ".join(cmd))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ortb.thread_env(threads), timeout=timeout)
    seconds = time.perf_counter() - t0
    out = {}
    if json_out:
        try:
            out = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            out = None
    if out is None or (r.returncode != 0 and "matches" not in out):
        raise RuntimeError(f"`{' '.join(cmd)}` exited {r.returncode}: {_tail(r.stderr)}")
    return out, seconds


def _tail(stderr: str, chars: int = 600) -> str:
    """The end of a command's stderr on one line, without Rich's box drawing."""
    text = " ".join(stderr.translate({ord(c): " " for c in "╭╮╰╯│─"}).split())
    return text[-chars:] or "(no output on stderr)"


def edgevit_compile(ckpt: Path, data: str, passes: str | None, threads: int, out: Path, args) -> dict:
    """`edgevit compile` one artifact (its thread pool's default: `threads`), timed: {seconds (wall
    time of the command), summary_seconds (compile_artifact's own), out} or {error}."""
    cmd = ["compile", ckpt, "--profile", PROFILE, "--out", out, "--force", "--json", "--data", data,
           "--vectors", args.vectors, "--threads", threads]
    if passes:
        cmd += ["--passes", passes, "--calib-size", args.calib_size]
    try:
        summary, seconds = edgevit_cmd(cmd, threads=2)  # the compile target is "on 2 cores"
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:1000]}
    return {"seconds": round(seconds, 2), "summary_seconds": summary.get("seconds"), "out": str(out)}


def edgevit_bench(compiled: dict, threads: int, args, runs: int) -> dict:
    """`edgevit run DIR --runner host --json --bench-runs N --threads T` on a compiled artifact: the
    bench program's figures and the check program's matches: {latency_ms_median, latency_ms_p90,
    peak_rss_bytes, threads, matches, count, match_rule, max_abs_error, compile_s} or {error}."""
    if "error" in compiled:
        return {"error": f"compile failed: {compiled['error']}"}
    cell: dict = {"compile_s": compiled["seconds"], "runs": runs}
    try:
        run, _ = edgevit_cmd(["run", compiled["out"], "--runner", "host", "--json", "--bench-runs", runs,
                              "--threads", threads], threads=threads)
    except Exception as e:  # one failed cell is reported, the others still run
        return {**cell, "error": f"{type(e).__name__}: {e}"[:1000]}
    for key in ("latency_ms_median", "latency_ms_p90", "latency_ms_min", "peak_rss_bytes", "threads", "matches",
                "count", "match_rule", "max_abs_error"):
        cell[key] = run.get(key)
    missing = [k for k in ("latency_ms_median", "peak_rss_bytes") if cell[k] is None]
    if missing:
        cell["error"] = f"`edgevit run --json` gave no {', '.join(missing)}"
    elif cell["threads"] != threads:
        cell["error"] = f"the bench ran with {cell['threads']} threads, not {threads}"
    return cell


def ort_cell(model: Path, inputs: Path, threads: int, args, runs: int, reference: np.ndarray | None,
             int8_reference: np.ndarray | None) -> dict:
    """One onnxruntime measurement (child process) plus top-1 agreement with the float32 reference
    (and, when given, with the int8 reference interpreter); {error} on failure."""
    outputs = inputs.with_name(f"{model.stem}-t{threads}-outputs.npy")
    try:
        cell = ortb.measure(model, inputs, outputs, threads, runs, args.warmup)
        got = np.load(outputs)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:1000]}
    cell["agreement"] = None if reference is None else ortb.top1_agreement(got, reference)
    if int8_reference is not None:
        cell["agreement_int8_reference"] = ortb.top1_agreement(got, int8_reference)
    return cell


def _expected(artifact: Path) -> np.ndarray | None:
    path = artifact / "vectors" / "expected.npy"
    return np.load(path) if path.is_file() else None


def measure_model(name: str, args, work: Path) -> list[dict]:
    """Rows (one per thread count) of one model: edgevit f32 / int8 and onnxruntime f32 / int8 cells.
    Each edgevit artifact is compiled once (thread pool default: the largest thread count) and
    benched with --threads T; every cell carries its artifact's compile time."""
    ckpt, data = model_source(name)
    log(f"{name}: {ckpt} (data {data})")
    work.mkdir(parents=True, exist_ok=True)
    calib, test = dataset_images(ckpt, data, args.calib_size, args.vectors)
    inputs = work / "inputs.npy"
    np.save(inputs, test)
    onnx: dict[str, Path | str] = {}
    try:
        edgevit_cmd(["export-onnx", ckpt, "--out", work / "exported.onnx"], threads=2, json_out=False)
        onnx["f32"] = ortb.batch1_onnx(work / "exported.onnx", work / "f32.onnx")
        log(f"  onnxruntime static QDQ quantization on {len(calib)} calibration images")
        onnx["int8"] = ortb.quantize_qdq(onnx["f32"], work / "int8.onnx", calib)
    except Exception as e:
        onnx.setdefault("f32", f"{type(e).__name__}: {e}"[:1000])
        onnx.setdefault("int8", onnx["f32"] if isinstance(onnx["f32"], str) else f"{type(e).__name__}: {e}"[:1000])
    compiled = {prec: edgevit_compile(ckpt, data, passes, max(args.threads), work / prec, args)
                for prec, passes in (("f32", None), ("int8", INT8))}
    ref_f32, ref_i8 = _expected(work / "f32"), _expected(work / "int8")
    art_inputs = work / "f32" / "vectors" / "inputs.npy"
    same_inputs = bool(np.array_equal(np.load(art_inputs), test)) if art_inputs.is_file() else None
    rows = []
    for threads in args.threads:
        row = {"model": name, "threads": threads, "data": data, "ort_inputs_equal_artifact": same_inputs}
        rounds: dict[str, list[dict]] = {cell: [] for cell in CELLS}
        for r, runs in enumerate(round_runs(args.runs, args.rounds)):
            for prec in ("f32", "int8"):
                rounds[f"edgevit_{prec}"].append(edgevit_bench(compiled[prec], threads, args, runs))
                model = onnx[prec]
                rounds[f"ort_{prec}"].append({"error": f"no onnx model: {model}"} if isinstance(model, str) else
                                             ort_cell(model, inputs, threads, args, runs, ref_f32,
                                                      ref_i8 if prec == "int8" else None))
            log(f"  {name} t={threads} round {r + 1}/{args.rounds}: " +
                ", ".join(f"{c} {rounds[c][-1].get('latency_ms_median')}" for c in CELLS))
        for cell in CELLS:
            row[cell] = merge_rounds(rounds[cell])
        add_ratios(row)
        log(f"  {name} t={threads}: " + ", ".join(f"{k} {row[k].get('latency_ms_median')}" for k in CELLS))
        rows.append(row)
    return rows


CELLS = ("edgevit_f32", "edgevit_int8", "ort_f32", "ort_int8")
ROUND_KEYS = ("latency_ms_median", "latency_ms_p90")


def round_runs(runs: int, rounds: int) -> list[int]:
    """Timed runs of each round: `runs` split as evenly as possible over `rounds` (sum == runs)."""
    return [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]


def merge_rounds(cells: list[dict]) -> dict:
    """One cell from its interleaved rounds: latency_ms_median / _p90 = the median over rounds of each
    round's figure, latency_ms_min the smallest, the rest (matches, RSS, ...) from the last round
    (the worst matches / agreement and the largest RSS when they differ); `rounds_ms` lists each round's
    median. {error} of the first failed round if any failed."""
    failed = [c for c in cells if "error" in c]
    if failed:
        return {**failed[0], "rounds_failed": len(failed)}
    merged = dict(cells[-1])
    for key in ROUND_KEYS:
        merged[key] = float(np.median([c[key] for c in cells]))
    merged["latency_ms_min"] = min(c["latency_ms_min"] for c in cells)
    for key, pick in (("matches", min), ("agreement", min), ("agreement_int8_reference", min),
                      ("peak_rss_bytes", max)):
        values = [c[key] for c in cells if c.get(key) is not None]
        if values:
            merged[key] = pick(values)
    merged["rounds_ms"] = [round(c["latency_ms_median"], 4) for c in cells]
    merged["runs"] = sum(int(c.get("runs") or 0) for c in cells)
    return merged


def add_ratios(row: dict) -> None:
    """row["ratios"]: f32_vs_ort_f32, int8_vs_ort_f32, int8_vs_ort_int8 (median latency; None if missing)."""
    def ms(cell: str):
        return row[cell].get("latency_ms_median") if "error" not in row[cell] else None

    def ratio(a: str, b: str):
        x, y = ms(a), ms(b)
        return round(x / y, 3) if x is not None and y else None

    row["ratios"] = {"f32_vs_ort_f32": ratio("edgevit_f32", "ort_f32"),
                     "int8_vs_ort_f32": ratio("edgevit_int8", "ort_f32"),
                     "int8_vs_ort_int8": ratio("edgevit_int8", "ort_int8")}


MARKER = ".cpu_latency_workdir"


def prepare_workdir(path: Path) -> None:
    """Empty `path` for this run: a directory this script made earlier (it holds MARKER) is replaced;
    any other non-empty directory is refused (SystemExit), so --workdir never deletes foreign files."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).is_file():
            raise SystemExit(f"--workdir {path} is not empty and was not made by cpu_latency.py; give an empty "
                             "or new directory")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()


def main(argv=None) -> int:
    """Run the benchmark, print host + table + targets, write the JSON; 0 unless a measurement failed."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(2)  # this process only normalises images and builds the DeiT checkpoint
    t0 = time.perf_counter()
    host = host_info()
    prepare_workdir(args.workdir)
    rows: list[dict] = []
    try:
        for name in args.models:
            rows += measure_model(name, args, args.workdir / name)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    doc = {"benchmark": "cpu_latency", "quick": args.quick, "profile": PROFILE, "host": host,
           "settings": {"models": args.models, "threads": args.threads, "runs": args.runs, "rounds": args.rounds,
                        "warmup": args.warmup,
                        "vectors": args.vectors, "calib_size": args.calib_size, "int8_passes": INT8,
                        "ort_int8": ortb.QDQ_SETTINGS, "deit_spec": DEIT_SPEC, "deit_data": DEIT_DATA,
                        "compile_limits_s": COMPILE_LIMIT_S},
           "rows": rows, "targets": compute_targets(rows, args.models, COMPILE_LIMIT_S, DEIT),
           "seconds": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print_report(doc, CELLS)
    print(f"\nJSON: {args.out}")
    failed = [f"{r['model']} t={r['threads']} {c}" for r in rows for c in CELLS if "error" in r[c]]
    if failed:
        log(f"cpu_latency: {len(failed)} measurement(s) failed: {'; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
