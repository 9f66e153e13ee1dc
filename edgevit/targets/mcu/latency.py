"""Per-core kernel cost model: executed instructions of an int8 Program, without running it.

Every kernel call costs `sum_f coefficient[key][f] * work[f]`, where `key` names the op (and its
variant) and the work features are counted from the call's shapes (`kernel_work`):

| key          | features (per call; n = the rows the call processes)                                   |
|--------------|-----------------------------------------------------------------------------------------|
| linear       | calls, outputs n*M, columns M (per-column requantize values), gelu n*M (fused GELU      |
|              | table); MACs by path and region (`_linear_work`): dsp_main / dsp_edge (8-bit,            |
|              | K % 4 == 0, DSP core: SMLAD micro-kernel), plain_* (other 8-bit), w4_* (4-bit),          |
|              | plain_iters (reduction-loop iterations of the non-DSP paths)                            |
| patch_embed  | calls, macs_dsp (patch % 4 == 0 on a DSP core), macs_plain, outputs P*D                 |
| attention    | calls, macs 2*N*N*A (QK^T and PV), scores H*N*N, size_scores H*N*N with the log-size     |
|              | input (token merging upstream), rows H*N (per-row softmax)                              |
| token_merge  | calls, units N (isqrt + division per unit key), keys N*H*hd, pairs Na*Nb*hd (similari-  |
|              | ties), selection r*Na (r sweeps), tokens N*D (output rows), merged r*D (weighted means) |
| layernorm    | calls, rows n, elements n*D                                                             |
| add, add_pos, gelu, cls_concat, pool/cls, pool/mean: calls, elements (output; pool/mean: input)        |
| reshape      | nothing (an alias: no code)                                                             |

A Program runs as the memory plan's steps: a chained row-wise kernel is called once per chunk
(`chunk_rows` rows, the last chunk shorter), so `calls` counts chunks. Whole Program:

    instructions = copy(S_in) / 2 + copy(S_out) / 2 + scale * sum over calls of the kernel costs

where copy(S) = intercept + per_byte * 2S is `edgevit_run` of an alias-only Program copying S bytes
in and S bytes out (the input/output memcpy and the call itself), measured on the board.

Coefficients are non-negative least squares (`nnls`) over QEMU instruction counts of one- or
two-kernel int8 Programs with random NAS-like shapes; `scale` (`fit_scale`) is then fitted on a
few whole random models (in a whole firmware gcc allocates registers differently: the GEMM
micro-kernel's stack spills, which cost up to ~1.7x on some shapes, come and go with the
context); `scripts/calibrate_latency.py` stores both with their samples and a validation on
held-out whole models (fmnist-tiny and random specs) in `calibration/<core>.json` (beside this
file). QEMU `-icount` counts instructions, not cycles: latency_ms = instructions / clock_hz * 1000
(1 instruction ~ 1 cycle, as the run report says). Cores without a calibration file predict None.

`McuTarget.estimate` (target.py) reports `estimate_latency_ms` of the Program run as its memory
plan's steps as `Costs.latency_ms`, which NAS bounds with `edgevit search --latency-ms`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.backend.nnls import relative_nnls
from edgevit.backend.planner import step_calls

from edgevit.errors import UserInputError
from edgevit.profiles.profile import load_profile

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
FORMAT = "edgevit-latency-calibration"
VERSION = 1
# The board each core is calibrated on (its profile's QEMU machine runs the measurements).
CORE_PROFILES = {"cortex-m7": "stm32f746-disco", "cortex-m4": "nrf52840", "cortex-m55": "corstone-300"}
ROW_WISE = ("linear", "layernorm", "add", "add_pos", "gelu")


# ---------------------------------------------------------------- work features

def k_unroll(k: int) -> int:
    """Unroll of the plain fast schedule's reduction loop (codesize.k_unroll): all of K up to 4,
    else the largest of 4, 2 (or 1) dividing K."""
    return k if k <= 4 else 4 if k % 4 == 0 else 2 if k % 2 == 0 else 1


def _linear_work(kernel, k: int, m: int, n: int, dsp: bool) -> dict[str, float]:
    """Features of a linear call on n rows, x [n, K] @ w [M, K]^T, by the fast schedule's regions
    (gemm.plan_regions): 2 x 2 output tiles over the even rows x even columns ("main"), 1 x 2 and
    1 x 1 tiles for an odd last row / column ("edge"). DSP path (8-bit, K % 4 == 0): SMLAD per
    tile; plain path: per-MAC work plus reduction-loop iterations (K / unroll per tile)."""
    main_tiles = (n // 2) * (m // 2)
    edge_tiles = (n % 2) * (m // 2) + (m % 2) * n
    macs_main, macs_edge = 4.0 * main_tiles * k, float(n * m * k) - 4.0 * main_tiles * k
    gelu = kernel.attrs.get("activation", "none") == "gelu"
    w = {"calls": 1.0, "outputs": float(n * m), "columns": float(m), "gelu": float(n * m) if gelu else 0.0}
    if kernel.attrs.get("weight_bits", 8) == 8 and dsp and k % 4 == 0:
        w.update(dsp_main=macs_main, dsp_edge=macs_edge)
        return w
    iters = float((main_tiles + edge_tiles) * -(-k // k_unroll(k)))
    kind = "w4" if kernel.attrs.get("weight_bits", 8) == 4 else "plain"
    w.update({f"{kind}_main": macs_main, f"{kind}_edge": macs_edge, "plain_iters": iters})
    return w


def _attention_work(kernel, in_infos) -> dict[str, float]:
    """Features of an attention call over all N tokens (not row-wise)."""
    n, h, hd = in_infos[0].shape[0], int(kernel.attrs["heads"]), int(kernel.attrs["head_dim"])
    scores = float(h * n * n)
    return {"calls": 1.0, "macs": 2.0 * n * n * h * hd, "scores": scores,
            "size_scores": scores if len(in_infos) > 1 else 0.0, "rows": float(h * n)}


def _token_merge_work(kernel, in_infos) -> dict[str, float]:
    """Features of a token_merge call (kernels/token_merge.py's four passes): N tokens of width D,
    keys of H x hd, r merges; Na = ceil(N/2) A tokens, Nb = floor(N/2) B tokens."""
    (n, d), h, hd, r = in_infos[0].shape, int(kernel.attrs["heads"]), int(kernel.attrs["head_dim"]), \
        int(kernel.attrs["r"])
    na, nb = (n + 1) // 2, n // 2
    return {"calls": 1.0, "units": float(n), "keys": float(n * h * hd), "pairs": float(na * nb * hd),
            "selection": float(r * na), "tokens": float(n * d), "merged": float(r * d)}


def kernel_work(kernel, in_infos, out_infos, rows: int | None, dsp: bool) -> tuple[str, dict[str, float]] | None:
    """(cost key, {feature: amount}) of one call of `kernel` on `rows` rows (None = all rows; only
    row-wise ops are chunked), on a core with (`dsp`) or without the DSP extension; None for
    kernels without code (reshape)."""
    op = kernel.op
    n = rows if rows is not None and op in ROW_WISE else (in_infos[0].shape[0] if in_infos else 1)
    if op == "linear":
        return "linear", _linear_work(kernel, in_infos[0].shape[1], out_infos[0].shape[1], n, dsp)
    if op == "patch_embed":
        p, (tokens, d), c = int(kernel.attrs["patch"]), out_infos[0].shape, in_infos[0].shape[0]
        kind = "macs_dsp" if dsp and p % 4 == 0 else "macs_plain"
        return "patch_embed", {"calls": 1.0, kind: float(tokens * d * c * p * p), "outputs": float(tokens * d)}
    if op == "attention":
        return "attention", _attention_work(kernel, in_infos)
    if op == "token_merge":
        return "token_merge", _token_merge_work(kernel, in_infos)
    width = out_infos[0].size // out_infos[0].shape[0] if out_infos and out_infos[0].shape else 1
    if op == "layernorm":
        return "layernorm", {"calls": 1.0, "rows": float(n), "elements": float(n * width)}
    if op in ("add", "add_pos", "gelu"):
        return op, {"calls": 1.0, "elements": float(n * width)}
    if op == "cls_concat":
        return "cls_concat", {"calls": 1.0, "elements": float(out_infos[0].size)}
    if op == "pool":
        mode = "mean" if kernel.attrs.get("mode") == "mean" else "cls"  # "prefix" is cls's copy of more rows
        elements = in_infos[0].size if mode == "mean" else out_infos[0].size
        return f"pool/{mode}", {"calls": 1.0, "elements": float(elements)}
    if op == "reshape":
        return None
    return op, {"calls": 1.0}


def program_work(program, steps=None, dsp: bool = True) -> dict[str, dict[str, float]]:
    """{cost key: {feature: total}} of `program` executed as `steps` (planner Steps; default: one
    step per kernel, i.e. every kernel called once on all its rows)."""
    if steps is None:
        from edgevit.backend.planner import Step

        steps = [Step((i,)) for i in range(len(program.kernels))]
    total: dict[str, dict[str, float]] = {}
    t = program.tensors
    for step in steps:
        calls = step_calls(step)
        for i in step.kernels:
            k = program.kernels[i]
            ins, outs = [t[x] for x in k.inputs], [t[x] for x in k.outputs]
            for rows in calls:
                got = kernel_work(k, ins, outs, rows, dsp)
                if got is None:
                    continue
                acc = total.setdefault(got[0], {})
                for f, v in got[1].items():
                    acc[f] = acc.get(f, 0.0) + v
    return total


def io_bytes(program) -> tuple[int, int]:
    """(input bytes, output bytes) that `edgevit_run` copies in and out."""
    return program.tensors[program.inputs[0]].nbytes, program.tensors[program.outputs[0]].nbytes


# ---------------------------------------------------------------- fitting

def fit_coefficients(works: list[dict[str, dict[str, float]]], net: list[float]) -> dict[str, dict[str, float]]:
    """Non-negative coefficients {key: {feature: instructions per unit}} such that each sample's
    sum of work x coefficient approximates its net instructions; residuals are relative (each
    sample weighs 1 / its instructions), every column is scaled to unit norm before solving."""
    columns = sorted({(key, f) for w in works for key, fs in w.items() for f in fs})
    a = np.array([[w.get(key, {}).get(f, 0.0) for key, f in columns] for w in works])
    x = relative_nnls(a, net)
    coefs: dict[str, dict[str, float]] = {}
    for (key, f), v in zip(columns, x):
        coefs.setdefault(key, {})[f] = float(v)
    return coefs


def fit_scale(overheads, kernels, measured) -> float:
    """The program scale s minimising sum(((overhead + s * kernels) / measured - 1)^2) over whole
    models: kernels in a whole firmware run a little differently from alone (gcc inlines and
    allocates registers per firmware), as codesize.py's PROGRAM_TERMS scale its per-function sizes."""
    o, k, m = (np.asarray(v, np.float64) for v in (overheads, kernels, measured))
    return float(np.sum(k * (m - o) / m**2) / np.sum(k**2 / m**2))


def apply_coefficients(coefs: dict[str, dict[str, float]], work: dict[str, dict[str, float]]) -> float:
    """Instructions of `work` under `coefs`; KeyError naming the first cost key never calibrated."""
    total = 0.0
    for key, feats in work.items():
        if key not in coefs:
            raise KeyError(key)
        total += sum(coefs[key].get(f, 0.0) * v for f, v in feats.items())
    return total


# ---------------------------------------------------------------- the model

def calibration_path(core: str) -> Path:
    """edgevit/targets/mcu/calibration/<core>.json."""
    return CALIBRATION_DIR / f"{core}.json"


@functools.lru_cache(maxsize=16)
def read_calibration(path: Path, mtime_ns: int) -> dict[str, Any]:
    """The calibration record at `path` (JSON), read once per file version (`mtime_ns`: every MCU
    estimate loads the model) and shared, so never mutated; UserInputError unless it is an edgevit
    latency calibration."""
    record = json.loads(path.read_text())
    if record.get("format") != FORMAT:
        raise UserInputError(f"{path}: not an edgevit latency calibration (format {record.get('format')!r}); "
                             "re-create it with scripts/calibrate_latency.py")
    return record


@dataclass
class LatencyModel:
    """Instructions (and ms at `clock_hz`) of int8 Programs on one core; `coefficients` None when the
    core has no calibration (then every prediction is None and `why` says so)."""

    core: str
    clock_hz: float
    dsp: bool
    coefficients: dict[str, dict[str, float]] | None = None
    copy: dict[str, float] = field(default_factory=lambda: {"intercept": 0.0, "per_byte": 0.0})
    scale: float = 1.0
    why: str = ""
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, profile, path: Path | None = None) -> "LatencyModel":
        """The model of `profile`'s core (a Profile, name or YAML path) from `path` (default:
        calibration_path(profile.core)), at the profile's clock; uncalibrated cores and non-MCU
        profiles give a model that predicts None."""
        profile = load_profile(profile)
        dsp = "dsp" in profile.isa
        if profile.kind != "mcu":
            return cls(profile.core, float(profile.clock_hz), dsp, why=f"no latency model for {profile.kind} devices")
        path = Path(path) if path is not None else calibration_path(profile.core)
        if not path.is_file():
            return cls(profile.core, float(profile.clock_hz), dsp,
                       why=f"core {profile.core!r} has no latency calibration ({path.name}; "
                           "scripts/calibrate_latency.py makes one)")
        record = read_calibration(path, path.stat().st_mtime_ns)
        return cls(profile.core, float(profile.clock_hz), dsp, record["coefficients"], dict(record["copy"]),
                   float(record.get("program_scale", {}).get("value", 1.0)), record=record)

    @property
    def available(self) -> bool:
        """True when predictions are numbers (the core is calibrated)."""
        return self.coefficients is not None

    def overhead(self, program) -> float:
        """Instructions of edgevit_run around the kernels: (copy(S_in) + copy(S_out)) / 2 =
        intercept + per_byte * (S_in + S_out)."""
        s_in, s_out = io_bytes(program)
        return self.copy["intercept"] + self.copy["per_byte"] * (s_in + s_out)

    def predict(self, program, steps=None) -> float | None:
        """Instructions of one `edgevit_run` of int8 `program` run as `steps` (the plan's; default:
        planned here), or None when the core is uncalibrated, the Program is not an int8 one (the
        calibration measured int8 kernels only) or it has an op the calibration never measured."""
        if not self.available or program.tensors[program.inputs[0]].dtype != "int8":
            return None
        if steps is None:
            from edgevit.targets.mcu.memory import plan_memory

            steps = plan_memory(program).steps
        kernels = self.kernel_instructions(program, steps)
        return None if kernels is None else self.overhead(program) + self.scale * kernels

    def kernel_instructions(self, program, steps) -> float | None:
        """The kernels' part of `predict` before the program scale (None: uncalibrated op or core)."""
        try:
            return apply_coefficients(self.coefficients or {}, program_work(program, steps, self.dsp))
        except KeyError:
            return None

    def latency_ms(self, instructions: float | None) -> float | None:
        """instructions / clock_hz in ms (1 instruction ~ 1 cycle); None stays None."""
        return None if instructions is None else instructions / self.clock_hz * 1e3


def estimate_latency_ms(program, steps, profile) -> float | None:
    """Estimated ms of one inference of `program` run as `steps` (the memory plan's) on an MCU
    `profile`, from its core's calibration; None when there is no prediction (`LatencyModel.predict`)."""
    model = LatencyModel.load(profile)
    return model.latency_ms(model.predict(program, steps))


# ---------------------------------------------------------------- measuring on QEMU

def measure_instructions(program, profile, workdir: Path, inputs: np.ndarray | None = None, count: int = 1,
                         seed: int = 0, schedule: str = "fast") -> float:
    """Mean instructions of one `edgevit_run` of int8 `program` on `profile`'s QEMU board: emit the
    artifact (vectors: `inputs` [count, *input shape] or random int8), run it with -icount, SysTick
    ticks x instructions per tick. UserInputError when the profile's runner cannot count instructions,
    RunFailedError unless every output is bit-exact."""
    import shutil

    from edgevit.backend.run import run_artifact
    from edgevit.lower.reference import run_program
    from edgevit.targets.mcu.emit import emit_artifact
    from edgevit.backend.vectors import Vectors
    from edgevit.targets.mcu.memory import plan_memory

    profile = load_profile(profile)
    info = program.tensors[program.inputs[0]]
    if inputs is None:
        inputs = np.random.default_rng(seed).integers(-128, 128, (count, *info.shape)).astype(info.dtype)
    expected = run_program(program, {program.inputs[0]: inputs})[program.outputs[0]]
    vectors = Vectors(inputs, np.ascontiguousarray(expected), np.full(len(inputs), -1, np.int64), "calibration")
    out = Path(workdir) / "artifact"
    shutil.rmtree(out, ignore_errors=True)
    try:
        emit_artifact(program, profile, plan_memory(program), out, vectors=vectors, schedule=schedule)
        r = run_artifact(out, "qemu", count=len(inputs), progress=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if r["instructions_per_tick"] is None:
        raise UserInputError(f"profile {profile.name}: {r['latency_note']}; calibrate on a profile whose QEMU "
                             f"board counts instructions (e.g. {', '.join(CORE_PROFILES.values())})")
    if r["matches"] != r["count"]:
        from edgevit.backend.errors import RunFailedError

        raise RunFailedError(f"program {program.name!r} on {profile.name}: only {r['matches']}/{r['count']} outputs "
                             "are bit-exact, so its instruction count is not the program's; this is a bug in the "
                             "MCU backend (the test vectors say which output differs)")
    return float(np.mean(r["ticks"])) * float(r["instructions_per_tick"])
