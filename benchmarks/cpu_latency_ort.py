"""onnxruntime side of benchmarks/cpu_latency.py: batch-1 ONNX models, static QDQ int8, timing in a child.

- `batch1_onnx`: `edgevit export-onnx` writes a dynamic batch dimension; a user benchmarking batch 1
  fixes it to 1 (what onnxruntime's `make_dynamic_shape_fixed` tool does) so the graph optimiser
  can fold the shape arithmetic, and sets ir_version <= 10 (onnxruntime loads at most 13).
- `quantize_qdq`: onnxruntime's own static quantization of that model (settings: QDQ_SETTINGS),
  after `quant_pre_process` (symbolic shape inference + graph optimisation, as its docs advise),
  calibrated on float32 images given by the caller (the ones edgevit calibrates on).
- `measure`: one session in a fresh child process (`python cpu_latency_ort.py --worker ...`, which
  imports only numpy and onnxruntime): warm-up, `runs` timed `session.run` calls on the first
  vector (perf_counter around each call), then every vector once for the outputs; the child
  reports its peak RSS (VmHWM, see `_rss_bytes`) right after the timed runs (peak RSS of the whole process, as the bench
  program reports its own; vectors are memory-mapped so only the first counts) and its RSS just
  after the imports (the Python + numpy + onnxruntime baseline, before any session exists).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ORT_MAX_IR_VERSION = 10
INPUT, OUTPUT = "image", "logits"  # the names edgevit export-onnx gives
QDQ_SETTINGS = {
    "quant_format": "QDQ",
    "activation_type": "QInt8",   # S8S8: onnxruntime's documented default/first choice for QDQ on x86-64
    "weight_type": "QInt8",
    "per_channel": True,          # per output channel weights, as edgevit's quant(w=8,a=8)
    "reduce_range": False,        # 7-bit weights only help CPUs without VNNI; this benchmark records the flags
    "calibrate_method": "MinMax",
    "op_types_to_quantize": ["Conv", "MatMul", "Gemm"],  # the GEMM work; elementwise ops stay float
    "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True},
    "pre_process": "onnxruntime.quantization.quant_pre_process (shape inference + optimisation)",
}
WORKER_TIMEOUT_S = 1800


def batch1_onnx(src: Path, dst: Path) -> Path:
    """Copy the ONNX model `src` to `dst` with batch dimension 1 on every graph input/output and
    ir_version <= ORT_MAX_IR_VERSION."""
    import onnx

    model = onnx.load(str(src))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    model.ir_version = min(model.ir_version, ORT_MAX_IR_VERSION)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


class _Reader:
    """onnxruntime CalibrationDataReader over float32 images [N, C, H, W], one image per call."""

    def __init__(self, images: np.ndarray):
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.i = 0

    def get_next(self):
        """{"image": [1, C, H, W]} or None at the end."""
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {INPUT: self.images[self.i - 1:self.i]}

    def rewind(self) -> None:
        """Start over (newer onnxruntime calls it between calibration passes)."""
        self.i = 0


def quantize_qdq(f32_path: Path, dst: Path, calib_images: np.ndarray) -> Path:
    """onnxruntime static QDQ int8 of the batch-1 float model `f32_path` (QDQ_SETTINGS), calibrated
    on `calib_images` float32 [N, C, H, W] (already normalised like the model's input); writes `dst`."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calib_images)
    pre = dst.with_name(dst.stem + ".pre.onnx")
    quant_pre_process(str(f32_path), str(pre))
    s = QDQ_SETTINGS
    quantize_static(str(pre), str(dst), reader, quant_format=getattr(QuantFormat, s["quant_format"]),
                    activation_type=getattr(QuantType, s["activation_type"]),
                    weight_type=getattr(QuantType, s["weight_type"]), per_channel=s["per_channel"],
                    reduce_range=s["reduce_range"], calibrate_method=getattr(CalibrationMethod, s["calibrate_method"]),
                    op_types_to_quantize=s["op_types_to_quantize"] and list(s["op_types_to_quantize"]), extra_options=dict(s["extra_options"]))
    _cap_ir_version(dst)
    pre.unlink(missing_ok=True)
    return dst


def _cap_ir_version(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    if model.ir_version > ORT_MAX_IR_VERSION:
        model.ir_version = ORT_MAX_IR_VERSION
        onnx.save(model, str(path))


def thread_env(threads: int) -> dict[str, str]:
    """os.environ with every BLAS/OpenMP thread count pinned to `threads`."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    return env


def measure(model: Path, inputs: Path, outputs: Path, threads: int, runs: int, warmup: int,
            timeout: float = WORKER_TIMEOUT_S) -> dict:
    """Time `model` in a child process on the float32 vectors in `inputs` (.npy [n, C, H, W]) and
    write its outputs for every vector to `outputs` (.npy [n, K]). Returns the child's JSON:
    latency_ms_median, latency_ms_p90, latency_ms_min, runs, warmup, threads, peak_rss_bytes,
    baseline_rss_bytes, onnxruntime. RuntimeError with the child's stderr when it fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", str(model), "--inputs", str(inputs),
           "--outputs", str(outputs), "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=thread_env(threads),
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"onnxruntime worker exited {r.returncode}: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def top1_agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of vectors whose argmax over outputs [n, ...] equals the reference's [n, ...]."""
    n = reference.shape[0]
    a = np.argmax(outputs.reshape(n, -1), axis=1)
    b = np.argmax(reference.reshape(n, -1), axis=1)
    return float(np.mean(a == b))


def percentiles_ms(seconds: list[float]) -> dict:
    """{latency_ms_median, latency_ms_p90, latency_ms_min} of per-run wall times in seconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"latency_ms_median": float(np.median(ms)), "latency_ms_p90": float(np.percentile(ms, 90)),
            "latency_ms_min": float(ms.min())}


def _rss_bytes() -> int:
    """This process's peak RSS so far: VmHWM of /proc/self/status. Not ru_maxrss: Linux carries
    ru_maxrss across fork + exec, so a child of a big Python process would report its parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def worker(argv=None) -> int:
    """The child: one onnxruntime session, timed; prints one JSON line (see `measure`)."""
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    for name in ("--model", "--inputs", "--outputs"):
        p.add_argument(name, required=True)
    for name in ("--threads", "--runs", "--warmup"):
        p.add_argument(name, type=int, required=True)
    a = p.parse_args(argv)
    import onnxruntime as ort

    baseline = _rss_bytes()
    x = np.load(a.inputs, mmap_mode="r")  # only the pages read count towards RSS
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    first = {INPUT: np.ascontiguousarray(x[:1], dtype=np.float32)}
    for _ in range(a.warmup):
        session.run(None, first)
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        session.run(None, first)
        times.append(time.perf_counter() - t0)
    peak = _rss_bytes()  # before the other vectors are read
    outs = [session.run(None, {INPUT: np.ascontiguousarray(x[i:i + 1], dtype=np.float32)})[0] for i in range(len(x))]
    np.save(a.outputs, np.concatenate(outs))
    result = {**percentiles_ms(times), "runs": a.runs, "warmup": a.warmup, "threads": a.threads,
              "peak_rss_bytes": peak, "baseline_rss_bytes": baseline, "onnxruntime": ort.__version__}
    print(json.dumps(result))
    return 0


if __name__ == "__main__" and "--worker" in sys.argv:
    sys.exit(worker())
