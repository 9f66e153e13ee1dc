"""CPU latency model: milliseconds of one `edgevit_run` of a Program, from its kernels' sizes, without
compiling anything (NAS calls it for every candidate).

Every kernel call of the memory plan's steps (a chained row-wise kernel is called once per chunk)
adds work features counted from its shapes (`kernel_features`):

| feature      | counted from                                                                     | scales with      |
|--------------|----------------------------------------------------------------------------------|------------------|
| runs         | 1 per Program (edgevit_run: input/output copies, the call)                       | clock            |
| calls        | kernel calls                                                                     | clock            |
| gemm_macs    | linear n*K*M, patch_embed P*C*p*p*D                                              | clock x MAC lanes |
| attn_macs    | attention's two matmuls 2*N*N*H*hd, token_merge's similarities                   | clock x MAC lanes |
| softmax      | attention scores H*N*N (exp, max, sum per score)                                  | clock x lanes    |
| gelu         | GELU values (fused into a linear or a gelu kernel)                                | clock x lanes    |
| elements     | row/elementwise values: linear/patch_embed outputs (bias, requantize), layernorm, | clock x lanes    |
|              | add, add_pos, cls_concat, pool inputs, token_merge tokens and keys               |                  |
| weight_bytes | constant bytes a call reads (weights stream from memory once per call)           | clock            |

    latency_ns = sum_f coefficient[dtype/threads][f] * features[f] * scale_f(profile)

The coefficients (ns per unit, >= 0) are fitted by non-negative least squares on measured end-to-
end latencies of compiled Programs on the calibration host (`calibration/calibrate.py` measures
zoo models and random NAS-space specs, float32 and int8, with the library's bench program, and
records the host CPU, the edgevit commit and the error on held-out Programs in
`calibration/host.json`). One coefficient set per Program dtype ("float32" or "int8", the dtype
of the Program's input) and thread count.

Profiles other than the calibration's (Arm boards: rpi4, cortex-a76) are an **uncalibrated
extrapolation** (`Machine`, `feature_scales`): per-call and memory terms scale by the clock ratio,
vector terms by clock x vector lanes (float32 lanes: AVX-512 16, AVX/AVX2 8, SSE/NEON 4) and MAC
terms by clock x MAC lanes (float32: the float lanes; int8: 4 per 32-bit lane with a dot-product
instruction, VNNI / sdot, else 2, widening multiply-accumulate). Core microarchitecture (issue
width, caches, memory bandwidth) is not modelled, so such estimates are optimistic for cores much
narrower than the calibration host; `Prediction.basis` and the estimate's figures say which
applies.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevit.backend.planner import step_calls
from edgevit.errors import UserInputError

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
CALIBRATION_FILE = CALIBRATION_DIR / "host.json"
FORMAT = "edgevit-cpu-latency-calibration"
VERSION = 1
FEATURES = ("runs", "calls", "gemm_macs", "attn_macs", "softmax", "gelu", "elements", "weight_bytes")
SCALING = {"runs": "clock", "calls": "clock", "gemm_macs": "macs", "attn_macs": "macs", "softmax": "vector",
           "gelu": "vector", "elements": "vector", "weight_bytes": "clock"}
ROW_WISE = ("linear", "layernorm", "add", "add_pos", "gelu")
CALIBRATED, EXTRAPOLATED = "calibrated", "extrapolated"


# ---------------------------------------------------------------- work features

def kernel_features(kernel, ins, outs, consts, rows: int | None) -> dict[str, float]:
    """{feature: amount} of one call of `kernel` on `rows` rows (None: all rows; only row-wise ops
    are chunked); ins/outs are the TensorInfos of its inputs/outputs, consts its constants' bytes."""
    op = kernel.op
    if op == "reshape":
        return {}
    full = ins[0].shape[0] if ins and ins[0].shape else 1
    n = rows if rows is not None and op in ROW_WISE else full
    width = outs[0].size // outs[0].shape[0] if outs and outs[0].shape else 1
    f = {"calls": 1.0, "weight_bytes": float(consts)}
    if op == "linear":
        k, m = ins[0].shape[1], outs[0].shape[1]
        f.update(gemm_macs=float(n * k * m), elements=float(n * m))
        if kernel.attrs.get("activation") == "gelu":
            f["gelu"] = float(n * m)
    elif op == "patch_embed":
        p, (tokens, d), c = int(kernel.attrs["patch"]), outs[0].shape, ins[0].shape[0]
        f.update(gemm_macs=float(tokens * d * c * p * p), elements=float(tokens * d + ins[0].size))
    elif op == "attention":
        h, hd = int(kernel.attrs["heads"]), int(kernel.attrs["head_dim"])
        f.update(attn_macs=float(2 * full * full * h * hd), softmax=float(h * full * full),
                 elements=float(full * h * hd))
    elif op == "token_merge":
        h, hd = int(kernel.attrs["heads"]), int(kernel.attrs["head_dim"])
        protect = int(kernel.attrs.get("protect", 0))  # class (A) and distillation (B) tokens are not compared
        pairs = ((full + 1) // 2 - (protect + 1) // 2) * (full // 2 - protect // 2) * hd
        f.update(attn_macs=float(pairs), elements=float(ins[0].size + full * h * hd))
    elif op == "layernorm":
        f["elements"] = float(2 * n * width)  # statistics pass, normalise pass
    elif op == "gelu":
        f.update(gelu=float(n * width), elements=float(n * width))
    elif op in ("add", "add_pos", "cls_concat"):
        f["elements"] = float(n * width)
    elif op == "pool":
        f["elements"] = float(ins[0].size if kernel.attrs.get("mode", "cls") == "mean" else outs[0].size)
    else:  # an op without its own terms: its inputs and outputs as elementwise work
        f["elements"] = float(sum(t.size for t in ins) + sum(t.size for t in outs))
    return f


def program_features(program, steps=None) -> dict[str, float]:
    """{feature: total} (every name of FEATURES) of one run of `program` executed as `steps`
    (planner Steps; default: every kernel called once on all its rows)."""
    total = dict.fromkeys(FEATURES, 0.0)
    total["runs"] = 1.0
    t = program.tensors
    kernels = program.kernels
    order = [((i,), [None]) for i in range(len(kernels))] if steps is None else \
        [(s.kernels, step_calls(s)) for s in steps]
    for indices, calls in order:
        for i in indices:
            k = kernels[i]
            ins, outs = [t[x] for x in k.inputs], [t[x] for x in k.outputs]
            consts = sum(program.consts[c].nbytes for c in k.consts.values() if c in program.consts)
            for rows in calls:
                for name, v in kernel_features(k, ins, outs, consts, rows).items():
                    total[name] += v
    return total


def program_dtype(program) -> str:
    """"int8" for Programs whose input is int8 (the quantized lowering), else "float32"."""
    return "int8" if program.tensors[program.inputs[0]].dtype == "int8" else "float32"


# ---------------------------------------------------------------- machines and scaling

@dataclass(frozen=True)
class Machine:
    """What the scaling of the calibrated coefficients reads from a cpu profile: architecture,
    clock (Hz), float32 vector lanes and whether int8 dot-product instructions exist."""

    arch: str
    clock_hz: float
    f32_lanes: int
    int8_dot: bool

    @property
    def int8_lanes(self) -> int:
        """int8 MACs per vector instruction: 4 per 32-bit lane with a dot-product instruction, else 2."""
        return self.f32_lanes * (4 if self.int8_dot else 2)

    def mac_lanes(self, dtype: str) -> int:
        """MACs per vector instruction for Programs of `dtype`."""
        return self.int8_lanes if dtype == "int8" else self.f32_lanes

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return {"arch": self.arch, "clock_hz": self.clock_hz, "f32_lanes": self.f32_lanes, "int8_dot": self.int8_dot}


def machine_from_features(arch: str, features, clock_hz: float) -> Machine:
    """The Machine of an `arch` ("x86_64" / "aarch64") with ISA `features` (profile spelling:
    avx2, avx512f, avx512_vnni, x86-64-v3, neon, dotprod, ...) at `clock_hz`."""
    from edgevit.targets.cpu.isa import ARM64

    isa = set(features)
    if arch == ARM64:
        return Machine(arch, float(clock_hz), 4, "dotprod" in isa)
    lanes = 16 if isa & {"avx512f", "x86-64-v4"} else 8 if isa & {"avx", "avx2", "x86-64-v3"} else 4
    return Machine(arch, float(clock_hz), lanes, bool(isa & {"avx512_vnni", "avx_vnni"}))


def machine_of(profile, clock_hz: float | None = None) -> Machine:
    """The Machine of a cpu profile's `isa` list at `clock_hz` (default: the profile's clock)."""
    from edgevit.targets.cpu.isa import profile_arch

    return machine_from_features(profile_arch(profile), profile.isa, float(clock_hz or profile.clock_hz))


def machine_of_target(target: dict, clock_hz: float) -> Machine:
    """The Machine of a TVM LLVM target dict (isa.llvm_target: mtriple, mcpu, mattr "+avx2",
    "+avx512vnni", "+dotprod", ...) at `clock_hz`: what a calibration's code really used."""
    from edgevit.targets.cpu.isa import ARM64, X86

    arch = X86 if str(target["mtriple"]).startswith("x86_64") else ARM64
    names = {"avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni"}
    features = [names.get(a.lstrip("+"), a.lstrip("+")) for a in target.get("mattr", ())] + [target.get("mcpu", "")]
    return machine_from_features(arch, features, clock_hz)


def feature_scales(calibrated: Machine, target: Machine, dtype: str) -> dict[str, float]:
    """{feature: factor} turning the calibration machine's ns into the target's (module doc):
    clock ratio for per-call and memory terms, x vector-lane ratio for vector terms, x MAC-lane
    ratio for MAC terms."""
    clock = calibrated.clock_hz / target.clock_hz
    by_kind = {"clock": clock, "vector": clock * calibrated.f32_lanes / target.f32_lanes,
               "macs": clock * calibrated.mac_lanes(dtype) / target.mac_lanes(dtype)}
    return {f: by_kind[SCALING[f]] for f in FEATURES}


# ---------------------------------------------------------------- the calibration record

@functools.lru_cache(maxsize=4)
def read_calibration(path: Path, mtime_ns: int) -> dict[str, Any]:
    """The calibration record at `path` (JSON), read once per file version (`mtime_ns`) and shared,
    so never mutated; UserInputError unless it is an edgevit cpu latency calibration."""
    record = json.loads(Path(path).read_text())
    if record.get("format") != FORMAT or record.get("version") != VERSION:
        raise UserInputError(f"{path}: not an edgevit cpu latency calibration (format {record.get('format')!r} "
                             f"version {record.get('version')!r}); re-create it with "
                             "`python -m edgevit.targets.cpu.calibration.calibrate`")
    return record


def load_calibration(path: Path | None = None) -> dict[str, Any] | None:
    """The record at `path` (default CALIBRATION_FILE), or None when the file does not exist."""
    path = Path(path) if path is not None else CALIBRATION_FILE
    return read_calibration(path, path.stat().st_mtime_ns) if path.is_file() else None


def model_key(dtype: str, threads: int) -> str:
    """The key of a coefficient set in the record's `models`: "<dtype>/<threads>"."""
    return f"{dtype}/{threads}"


@dataclass(frozen=True)
class Prediction:
    """A latency estimate: `ms` (None when there is none), `basis` (CALIBRATED on the calibration
    host's profile, EXTRAPOLATED for others, "" without an estimate) and a `note` for people."""

    ms: float | None
    basis: str
    note: str


def predict(program, profile, steps=None, threads: int = 1, path: Path | None = None) -> Prediction:
    """The latency of one `edgevit_run` of `program` (run as the plan's `steps`) on a cpu `profile`
    with `threads` threads, from the calibration at `path` (default CALIBRATION_FILE)."""
    record = load_calibration(path)
    if record is None:
        return Prediction(None, "", "no cpu latency calibration (python -m edgevit.targets.cpu.calibration.calibrate "
                                    "makes one)")
    dtype = program_dtype(program)
    model = record["models"].get(model_key(dtype, threads))
    if model is None:
        return Prediction(None, "", f"the cpu latency calibration has no {dtype} model for {threads} thread(s)")
    feats = program_features(program, steps)
    coefs = model["coefficients"]
    if profile.name == record["profile"]:
        scales, basis = dict.fromkeys(FEATURES, 1.0), CALIBRATED
        v = model["validation"]
        held_out = "no held-out programs" if v["mean_abs_rel_error"] is None else \
            f"held-out error mean {100 * v['mean_abs_rel_error']:.0f}%, max {100 * v['max_abs_rel_error']:.0f}%"
        note = f"calibrated on this profile's host ({record['host']['cpu']}); {held_out}"
    else:
        host = Machine(**record["machine"])
        target = machine_of(profile)
        scales, basis = feature_scales(host, target, dtype), EXTRAPOLATED
        note = (f"uncalibrated extrapolation from {record['host']['cpu']} ({record['profile']} profile) by clock "
                f"({host.clock_hz / 1e9:.2f} -> {target.clock_hz / 1e9:.2f} GHz) and SIMD width ({dtype} MAC "
                f"lanes {host.mac_lanes(dtype)} -> {target.mac_lanes(dtype)}); not measured on this device")
    ns = sum(coefs.get(f, 0.0) * feats[f] * scales[f] for f in FEATURES)
    return Prediction(ns / 1e6, basis, note)
