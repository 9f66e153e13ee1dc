"""Calibrate the MCU latency model (`edgevit/targets/mcu/latency.py`: `McuTarget.estimate`'s latency_ms,
which NAS bounds with --latency-ms) of one core on its QEMU board.

    .venv/bin/python scripts/calibrate_latency.py --profile stm32f746-disco [--out PATH] [--seed 0]

Measures, with `-icount shift=0` (SysTick ticks x instructions per tick, as benchmarks/_mcu_bench.py):
1. copy programs (alias-only: edgevit_run's input/output memcpy and call) of a few sizes -> copy(S);
2. SAMPLES small int8 Programs with random shapes and realistic constants, one kernel each (a
   linear in front of token_merge, a token_merge in front of attention with the log-size input);
   net instructions = raw - (copy(S_in) + copy(S_out)) / 2; non-negative least squares of the net
   counts on the programs' summed work features -> coefficients;
3. program scale: whole random models (quantized by the quant pass on Fashion-MNIST), measured;
   the factor on the summed kernel costs that fits them best (`latency.fit_scale`);
4. validation: held-out whole models (fmnist-tiny int8 by the quant pass, and a few other seeded
   random specs quantized the same way), measured vs predicted, relative error.
Writes edgevit/targets/mcu/calibration/<core>.json (or --out). Takes ~10 min on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgevit.lower.intlut import make_gelu_lut, make_score_lut, score_index_params  # noqa: E402
from edgevit.lower.intmath import (make_add_params, make_layernorm_params, quantize_multiplier,  # noqa: E402
                                   quantize_multipliers, round_half_up_array)
from edgevit.lower.ops.intcommon import add_attrs, pack_int4, quant_attr  # noqa: E402
from edgevit.lower.program import Program, ProgramBuilder  # noqa: E402
from edgevit.targets.mcu import latency  # noqa: E402

COPY_SIZES = (8, 512, 2048, 8192)
QKV_SCALE = 0.03


def log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- sample Programs (realistic constants)

def requant(rng, b: ProgramBuilder, prefix: str, m: int, k: int) -> dict[str, str]:
    """bias / multiplier / shift int32 [m] of a K-long int8 dot product (scales as lowering makes them)."""
    typical = 128.0 * 64.0 * math.sqrt(k)
    mult, shift = quantize_multipliers(127.0 / typical * np.exp2(rng.uniform(-2.0, 2.0, m)))
    bias = rng.integers(-int(typical), int(typical) + 1, m).astype(np.int32)
    return {r: b.add_const(f"{prefix}.{r}", v) for r, v in (("bias", bias), ("multiplier", mult), ("shift", shift))}


def zp(rng) -> int:
    """A random activation zero point (as asymmetric int8 calibrations give them)."""
    return int(rng.integers(-20, 21))


def add_linear(rng, b, name: str, x: str, m: int, bits: int = 8, gelu: bool = False, out_zp: int | None = None) -> str:
    """A linear kernel x [n, K] -> [n, m] with random weights (8- or 4-bit) and optional fused GELU."""
    k = b.tensors[x].shape[1]
    lim = 127 if bits == 8 else 7
    w = rng.integers(-lim, lim + 1, (m, k)).astype(np.int8)
    consts = {"weight": b.add_const(f"{name}.weight", w if bits == 8 else pack_int4(w)), **requant(rng, b, name, m, k)}
    q = quant_attr(0.05, zp(rng) if out_zp is None else out_zp, "int8")
    attrs = {"out_quant": q, **({"weight_bits": 4} if bits == 4 else {})}
    if gelu:
        g = quant_attr(0.02, -100, "int8")
        consts["act_lut"] = b.add_const(f"{name}.act_lut", make_gelu_lut(0.05, q["zero_point"], 0.02, -100))
        attrs.update(activation="gelu", act_in_quant=q, out_quant=g)
    return b.add_kernel("linear", [x], attrs=attrs, consts=consts, name=name)[0]


def start(name: str, shape, rng, zero_point: int | None = None) -> tuple[ProgramBuilder, str]:
    """A builder with the int8 program input "x" of `shape` (random zero point unless given)."""
    b = ProgramBuilder(name)
    z = zp(rng) if zero_point is None else zero_point
    return b, b.add_input("x", shape, "int8", {"scale": 0.05, "zero_point": z})


def done(b: ProgramBuilder, y: str) -> Program:
    """The validated Program with output `y`."""
    b.add_output(y)
    return b.build()


def linear_sample(rng, n, k, m, bits=8, gelu=False) -> Program:
    """linear x [n, k] -> [n, m] (8- or 4-bit weights, optional fused GELU)."""
    b, x = start(f"linear-{n}x{k}-{m}-w{bits}{'-gelu' if gelu else ''}", (n, k), rng)
    return done(b, add_linear(rng, b, "linear", x, m, bits, gelu))


def patch_sample(rng, c, size, p, d) -> Program:
    """patch_embed of an int8 image [c, size, size] with patch p into d channels."""
    b, x = start(f"patch-{c}x{size}-p{p}-d{d}", (c, size, size), rng)
    w = rng.integers(-127, 128, (d, c * p * p)).astype(np.int8)
    consts = {"weight": b.add_const("pe.weight", w), **requant(rng, b, "pe", d, c * p * p)}
    attrs = {"patch": p, "out_quant": quant_attr(0.05, zp(rng), "int8")}
    return done(b, b.add_kernel("patch_embed", [x], attrs=attrs, consts=consts, name="patch_embed")[0])


def attention_attrs(rng, heads: int, head_dim: int, lut: dict) -> dict:
    """The integer attention attrs lowering makes for q, k, v of scale QKV_SCALE."""
    sm, ss = score_index_params(QKV_SCALE * QKV_SCALE / math.sqrt(head_dim), lut)
    om, osh = quantize_multiplier(QKV_SCALE / (255.0 * 0.01))
    return {"heads": heads, "head_dim": head_dim, "score_multiplier": sm, "score_shift": ss, "out_multiplier": om,
            "out_shift": osh, "out_quant": quant_attr(0.01, zp(rng), "int8")}


def attention_sample(rng, n, heads, head_dim, merge_r: int = 0) -> Program:
    """attention of qkv [n, 3A]; with merge_r, token_merge(x, x) first and the log-size input."""
    b, x = start(f"attention-n{n}-h{heads}x{head_dim}-r{merge_r}", (n, 3 * heads * head_dim), rng, 0)
    lut = make_score_lut()
    b.add_const("softmax.score_lut", lut["table"])
    consts, ins = {"score_lut": "softmax.score_lut"}, [x]
    if merge_r:
        attrs = {"r": merge_r, "heads": heads, "head_dim": head_dim, "protect": int(rng.integers(0, 2))}
        ins = b.add_kernel("token_merge", [x, x], attrs=attrs, name="merge", outputs=["merged", "size"])
        table = round_half_up_array(np.log(np.arange(1, merge_r + 2, dtype=np.float64))
                                    / (QKV_SCALE * QKV_SCALE / math.sqrt(head_dim)))
        consts["log_size"] = b.add_const("attention.log_size", np.minimum(table, 1 << 30).astype(np.int32))
    y = b.add_kernel("attention", ins, attrs=attention_attrs(rng, heads, head_dim, lut), consts=consts,
                     name="attention")[0]
    return done(b, y)


def merge_only_sample(rng, n, heads, head_dim, r) -> Program:
    """token_merge(x, x) of x [n, 3 * heads * head_dim] (zero point 0) -> merged [n - r, ...]: the
    first kernel of attention_sample(..., merge_r=r) alone."""
    b, x = start(f"merge-only-n{n}-h{heads}x{head_dim}-r{r}", (n, 3 * heads * head_dim), rng, 0)
    attrs = {"r": r, "heads": heads, "head_dim": head_dim, "protect": int(rng.integers(0, 2))}
    return done(b, b.add_kernel("token_merge", [x, x], attrs=attrs, name="merge", outputs=["merged", "size"])[0])


def merge_sample(rng, n, d, heads, head_dim, r) -> Program:
    """x [n, d] -> linear -> qkv (zero point 0) -> token_merge(x, qkv) -> merged [n - r, d]."""
    b, x = start(f"merge-n{n}-d{d}-h{heads}x{head_dim}-r{r}", (n, d), rng)
    qkv = add_linear(rng, b, "qkv", x, 3 * heads * head_dim, out_zp=0)
    attrs = {"r": r, "heads": heads, "head_dim": head_dim, "protect": int(rng.integers(0, 2))}
    return done(b, b.add_kernel("token_merge", [x, qkv], attrs=attrs, name="merge", outputs=["merged", "size"])[0])


def layernorm_sample(rng, n, d) -> Program:
    """Integer LayerNorm [n, d] with random affine parameters."""
    b, x = start(f"layernorm-{n}x{d}", (n, d), rng)
    p = make_layernorm_params(0.05, 1.0 + 0.2 * rng.standard_normal(d), 0.2 * rng.standard_normal(d), 0.03,
                              1e-6, zp(rng))
    consts = {"gain": b.add_const("ln.gain", p["gain"]), "bias": b.add_const("ln.bias", p["bias"])}
    attrs = {"frac_bits": p["frac_bits"], "eps_fixed": p["eps_fixed"], "out_shift": p["out_shift"],
             "out_quant": quant_attr(0.03, p["out_zp"], "int8")}
    return done(b, b.add_kernel("layernorm", [x], attrs=attrs, consts=consts, name="layernorm")[0])


def add_sample(rng, n, d, pos: bool) -> Program:
    """The residual add x + x, or add_pos (x + a position table) over [n, d]."""
    b, x = start(f"{'add_pos' if pos else 'add'}-{n}x{d}", (n, d), rng)
    za = b.tensors[x].quant["zero_point"]
    zb = zp(rng) if pos else za
    p = make_add_params(0.05, 0.04, 0.06, za, zb, zp(rng))
    if pos:
        c = b.add_const("pos", rng.integers(-128, 128, (n, d)).astype(np.int8))
        return done(b, b.add_kernel("add_pos", [x], attrs=add_attrs(p, 0.06), consts={"pos": c}, name="add_pos")[0])
    return done(b, b.add_kernel("add", [x, x], attrs=add_attrs(p, 0.06), name="add")[0])


def misc_sample(rng, op: str, n, d) -> Program:
    """gelu (unfused), cls_concat, pool cls / mean over x [n, d]."""
    b, x = start(f"{op}-{n}x{d}", (n, d), rng)
    z = b.tensors[x].quant["zero_point"]
    if op == "gelu":
        lut = b.add_const("gelu.lut", make_gelu_lut(0.05, z, 0.02, -100))
        y = b.add_kernel("gelu", [x], attrs={"out_quant": quant_attr(0.02, -100, "int8")}, consts={"lut": lut},
                         name="gelu")[0]
    elif op == "cls_concat":
        c = b.add_const("cls", rng.integers(-128, 128, d).astype(np.int8))
        y = b.add_kernel("cls_concat", [x], consts={"cls": c}, name="cls_concat")[0]
    elif op == "pool/cls":
        y = b.add_kernel("pool", [x], attrs={"mode": "cls"}, name="pool")[0]
    else:
        m, s = quantize_multiplier(0.05 / (n * 0.02))
        attrs = {"mode": "mean", "in_zero_point": z, "multiplier": m, "shift": s,
                 "out_quant": quant_attr(0.02, zp(rng), "int8")}
        y = b.add_kernel("pool", [x], attrs=attrs, name="pool")[0]
    return done(b, y)


def copy_program(nbytes: int) -> Program:
    """int8 [nbytes] -> reshape [1, nbytes]: edgevit_run is only the input and output memcpy."""
    b = ProgramBuilder(f"copy-{nbytes}")
    b.add_input("x", (nbytes,), "int8", {"scale": 0.05, "zero_point": 0})
    return done(b, b.add_kernel("reshape", ["x"], attrs={"shape": [1, nbytes]}, name="copy")[0])


def width(rng, lo: int, hi: int, step: int = 8) -> int:
    """A layer width in [lo, hi]: two times in three a multiple of `step`, else any integer."""
    if rng.random() < 2 / 3:
        return step * int(rng.integers(-(-lo // step), hi // step + 1))
    return int(rng.integers(lo, hi + 1))


def layer_shape(rng) -> tuple[int, int, bool]:
    """(K, M, fused GELU) of a linear as NAS specs have them: embed D in 32..160 (step 16), attention
    width A = heads x head_dim, MLP hidden = ratio x D, low-rank factors (rank = ceil(ratio x
    min(in, out)), any integer), the classifier head."""
    d = 16 * int(rng.integers(2, 11))
    a = int(rng.integers(1, 5)) * int(rng.choice([8, 16, 32]))
    hidden = int(math.ceil(float(rng.choice([1.0, 1.5, 2.0, 3.0, 4.0])) * d / 8) * 8)
    layer = str(rng.choice(["qkv", "proj", "fc1", "fc2", "qkv", "fc1", "fc2", "head", "rank"]))
    if layer == "rank":
        k, m = [(d, 3 * a), (a, d), (d, hidden), (hidden, d)][int(rng.integers(0, 4))]
        r = int(math.ceil(float(rng.choice([0.25, 0.5, 0.75])) * min(k, m)))
        return (k, r, False) if rng.random() < 0.5 else (r, m, bool(rng.random() < 0.3))
    return {"qkv": (d, 3 * a, False), "proj": (a, d, False), "fc1": (d, hidden, True), "fc2": (hidden, d, False),
            "head": (d, int(rng.integers(2, 11)), False)}[layer]


def linear_samples(rng, count: int, bits: int) -> list[Program]:
    """`count` linears of NAS-like layer shapes (`layer_shape`) on 1..65 rows (tokens or chunks)."""
    out = []
    for _ in range(count):
        k, m, gelu = layer_shape(rng)
        out.append(linear_sample(rng, 1 if m <= 10 else int(rng.integers(1, 66)), k, m, bits, gelu))
    return out


def samples(seed: int) -> list[Program]:
    """The calibration Programs: shapes drawn around the NAS range (rows 1..65, widths up to 384)."""
    rng = np.random.default_rng(seed)
    ri = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    out = linear_samples(rng, 44, 8) + linear_samples(rng, 8, 4)
    out += [linear_sample(rng, ri(1, 65), 2 * ri(4, 40) + 1, width(rng, 8, 256)) for _ in range(3)]  # odd K
    out += [linear_sample(rng, ri(1, 65), 4 * ri(2, 30) + 2, width(rng, 8, 256)) for _ in range(3)]  # K % 4 == 2
    out += [patch_sample(rng, 1, 28, 4, width(rng, 16, 96)), patch_sample(rng, 1, 28, 7, width(rng, 16, 96)),
            patch_sample(rng, 3, 16, 4, width(rng, 16, 64)), patch_sample(rng, 1, 16, 2, width(rng, 16, 64)),
            patch_sample(rng, 1, 24, 4, width(rng, 16, 96))]
    for _ in range(8):  # attention on N - r tokens without sizes, token_merge alone, both (with sizes)
        n, h, hd = ri(5, 65), ri(1, 4), int(rng.choice([8, 12, 16, 24, 32]))
        r = ri(1, (n - 1) // 2)
        out += [attention_sample(rng, n - r, h, hd), merge_only_sample(rng, n, h, hd, r),
                attention_sample(rng, n, h, hd, merge_r=r)]
    out += [merge_sample(rng, n, width(rng, 16, 128), ri(1, 4), int(rng.choice([8, 16, 32])), ri(1, (n - 1) // 2))
            for n in (ri(5, 65) for _ in range(8))]
    rows = [1, ri(2, 20), ri(2, 20)] + [ri(5, 65) for _ in range(5)]
    out += [layernorm_sample(rng, n, width(rng, 16, 192, 16)) for n in rows]
    out += [add_sample(rng, ri(5, 65), width(rng, 16, 128), pos) for pos in (False, False, False, True, True, True)]
    for op in ("gelu", "cls_concat", "pool/cls", "pool/mean"):
        out += [misc_sample(rng, op, ri(5, 65), width(rng, 16, 384 if op == "gelu" else 128)) for _ in range(2)]
    return out


# ---------------------------------------------------------------- validation models

def random_specs(seed: int, count: int, tag: str = "random"):
    """`count` seeded random specs in the NAS range (per-block heads/MLP, low rank, token merging; one
    head_dim per spec: blocks whose heads x head_dim agree but split differently hit a kernel naming bug)."""
    from edgevit.model.spec import BlockSpec, ViTSpec

    rng = np.random.default_rng([seed, 1000 + len(tag)])
    specs = []
    for i in range(count):
        size, patch = [(28, 4), (28, 7), (16, 4), (24, 4)][i % 4]
        d, n, blocks = int(rng.choice([32, 48, 64, 96])), (size // patch) ** 2 + 1, []
        hd = int(rng.choice([8, 16, 32]))  # one head_dim per spec, as in a NAS space
        for _ in range(int(rng.integers(2, 5))):
            h, hidden = int(rng.integers(1, 5)), int(rng.choice([64, 96, 128, 192]))
            ranks = {"fc1": int(math.ceil(0.3 * min(d, hidden)))} if rng.random() < 0.4 else {}
            r = int(rng.integers(0, (n - 1) // 4 + 1)) if rng.random() < 0.5 else 0
            blocks.append(BlockSpec(h, hd, hidden, ranks, r))
            n -= r
        specs.append(ViTSpec(size, 1, patch, d, 10, tuple(blocks), name=f"{tag}-{seed}-{i}"))
    return specs


def quantized_models(models, seed: int, calib: int = 64):
    """[(name, spec, int8 Program, 2 test images uint8)] of (name, float model) pairs, each quantized by
    the quant pass (w=8, a=8) on Fashion-MNIST resized to the spec."""
    from edgevit.data import load_dataset
    from edgevit.data.resize import resize_dataset
    from edgevit.lower import lower_int8
    from edgevit.passes.quantize import quantize

    splits = load_dataset("fashion-mnist")
    out = []
    for name, model in models:
        log(f"quantizing {name}")
        train = resize_dataset(splits.train, model.spec.image_size)
        test = resize_dataset(splits.test, model.spec.image_size)
        qmodel, _ = quantize(model, train, calib=calib)
        out.append((name, model.spec, lower_int8(qmodel), test.images[:2]))
    return out


def whole_models(seed: int, count: int, training: bool):
    """Training models (`count` random specs, for the program scale) or validation models
    (fmnist-tiny and `count` other random specs), quantized (`quantized_models`)."""
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.model.vit import build_model

    specs = random_specs(seed, count, "train" if training else "random")
    models = [] if training else [("fmnist-tiny", load_checkpoint(ROOT / "models" / "fmnist-tiny"))]
    return quantized_models(models + [(s.name, build_model(s, seed=seed)) for s in specs], seed)


def measure_models(models, model, profile, workdir: Path) -> list[dict]:
    """Whole-model rows: measured instructions (test images) and the model's parts of the prediction."""
    from edgevit.backend.vectors import program_inputs

    rows = []
    for name, spec, program, images in models:
        measured = measure(program, profile, workdir, inputs=program_inputs(program, images))
        rows.append({"name": name, "spec": spec.to_dict(), "kernels": len(program.kernels), "macs": program.macs(),
                     "measured": measured, "overhead": model.overhead(program),
                     "kernel_instructions": model.kernel_instructions(program, plan_steps(program))})
    return rows


def plan_steps(program):
    """The memory plan's steps of `program` (how the driver calls its kernels)."""
    from edgevit.targets.mcu.memory import plan_memory

    return plan_memory(program).steps


# ---------------------------------------------------------------- measuring and fitting

def measure(program, profile, workdir: Path, inputs=None, count: int = 2) -> float:
    """latency.measure_instructions with a progress line."""
    t = time.time()
    got = latency.measure_instructions(program, profile, workdir, inputs=inputs, count=count)
    log(f"  {program.name:<40} {got:>12,.0f} instructions ({time.time() - t:.1f} s)")
    return got


def copy_fit(profile, workdir: Path) -> dict:
    """copy(S) = intercept + per_byte * 2S from the copy programs of COPY_SIZES (S bytes in, S out)."""
    rows = [{"bytes": s, "instructions": measure(copy_program(s), profile, workdir)} for s in COPY_SIZES]
    x = np.array([r["bytes"] for r in rows], float)
    y = np.array([r["instructions"] for r in rows])
    per_byte, intercept = np.polyfit(2 * x, y, 1)  # copy(S) moves S bytes in and S bytes out
    return {"intercept": float(intercept), "per_byte": float(per_byte), "samples": rows}


def calibrate(profile, seed: int, workdir: Path, validate: int) -> dict:
    """Measure, fit, validate; the calibration record (JSON-able)."""
    dsp = "dsp" in profile.isa
    log(f"copy programs on {profile.emulator.machine}")
    copy = copy_fit(profile, workdir)
    model = latency.LatencyModel(profile.core, float(profile.clock_hz), dsp, {}, copy)
    rows = []
    progs = samples(seed)
    log(f"{len(progs)} kernel samples")
    for p in progs:
        raw = measure(p, profile, workdir)
        rows.append({"name": p.name, "ops": [k.op for k in p.kernels], "work": latency.program_work(p, None, dsp),
                     "instructions": raw, "overhead": model.overhead(p), "net": raw - model.overhead(p)})
    model.coefficients = latency.fit_coefficients([r["work"] for r in rows], [r["net"] for r in rows])
    for r in rows:
        r["predicted_net"] = latency.apply_coefficients(model.coefficients, r["work"])
        r["rel_error"] = r["predicted_net"] / r["net"] - 1.0 if r["net"] > 0 else None
    training = measure_models(whole_models(seed, 5, training=True), model, profile, workdir) if validate >= 0 else []
    if training:
        model.scale = latency.fit_scale(*zip(*[(r["overhead"], r["kernel_instructions"], r["measured"])
                                               for r in training]))
    log(f"program scale {model.scale:.4f}")
    validation = measure_models(whole_models(seed, validate, training=False), model, profile, workdir) \
        if validate >= 0 else []
    for v in training + validation:
        v["predicted"] = v["overhead"] + model.scale * v["kernel_instructions"]
        v["rel_error"] = v["predicted"] / v["measured"] - 1.0
        log(f"  {v['name']}: measured {v['measured']:,.0f}, predicted {v['predicted']:,.0f} ({v['rel_error']:+.1%})")
    errors = [abs(r["rel_error"]) for r in rows if r["rel_error"] is not None]
    return {"format": latency.FORMAT, "version": latency.VERSION, "core": profile.core, "profile": profile.name,
            "machine": profile.emulator.machine, "isa": list(profile.isa), "schedule": "fast", "seed": seed,
            "created": datetime.date.today().isoformat(), "coefficients": model.coefficients, "copy": copy,
            "fit": {"samples": len(rows), "median_abs_rel_error": float(np.median(errors)),
                    "max_abs_rel_error": float(max(errors))},
            "program_scale": {"value": model.scale, "models": training},
            "validation": validation,
            "validation_max_abs_rel_error": max((abs(v["rel_error"]) for v in validation), default=None),
            "samples": rows}


def main(argv=None) -> int:
    from edgevit.profiles.profile import load_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True, help="MCU profile whose core is calibrated (its QEMU board runs)")
    ap.add_argument("--out", type=Path, help="output JSON (default edgevit/targets/mcu/calibration/<core>.json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validate", type=int, default=3, help="random validation specs besides fmnist-tiny (-1: none)")
    args = ap.parse_args(argv)
    profile = load_profile(args.profile)
    out = args.out or latency.calibration_path(profile.core)
    t = time.time()
    with tempfile.TemporaryDirectory(prefix="ev-latency-") as tmp:
        record = calibrate(profile, args.seed, Path(tmp), args.validate)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    log(f"wrote {out} in {time.time() - t:.0f} s: fit median |error| {record['fit']['median_abs_rel_error']:.1%}, "
        f"validation max |error| {record['validation_max_abs_rel_error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
