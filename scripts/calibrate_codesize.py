"""Calibrate `edgevit/targets/mcu/codesize.py` against real firmware; print measured vs estimated sizes.

    .venv/bin/python scripts/calibrate_codesize.py [--profile P] [--json out.json] [--load in.json]

Programs: fmnist-tiny as int8 (`quant(w=8,a=8)`, as `edgevit compile --passes` does) and float32,
and RANDOM_SPECS (seeded random weights; int8 by min/max calibration, and float32), each written
by `McuTarget().build` (the emitter `edgevit compile` uses) and built with the artifact's own
Makefile (`make -C firmware`: the profile's arm-none-eabi-gcc and flags, -O2). Measured:
- model flash: text + data (`arm-none-eabi-size`) of firmware.elf minus that of the same project
  with an empty `edgevit_run` and no weights; minus the weights, the model's code;
- per-function bytes: src/kernels.c compiled alone with the kernels non-static (none inlined or
  cloned), `arm-none-eabi-nm --size-sort` of every `ev_*` function;
- runtime routines: the library symbols single-kernel slices add to the harness, grouped by the
  set of kernel tags (codesize.function_tags) using them.
Fit: OP_CODE_BYTES by least squares of the functions' bytes on codesize.function_terms; per family
PROGRAM_TERMS by non-negative least squares of (code - runtime groups) on (1, function bytes, call
sites, chunk loops). Printed: measured vs estimated per Program (current and fitted tables), then
the fitted tables in codesize.py's syntax and the table commented there. edgevit never imports
this; tests/targets/test_estimate_matches_artifact.py uses `model_flash`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "fmnist-tiny"
STUB_MODEL_C = ('#include "edgevit_model.h"\n/* harness stub (scripts/calibrate_codesize.py): no model */\n'
                "int edgevit_run(const edgevit_in_t *input, edgevit_out_t *output) {\n"
                "  (void)input;\n  (void)output;\n  return 0;\n}\n")
# name: (depth, heads, head_dim, mlp_hidden, image, channels, patch, embed, classes, pool, ranks, fuse_gelu,
# merge_r): odd and even shapes, chains (wide MLPs), RGB, mean pooling, unfused GELU, low rank, token merging
RANDOM_SPECS = {
    "r16-d24": (2, 2, 12, 48, 16, 1, 4, 24, 5, "cls", {}, True, 0),
    "r12-d20": (3, 2, 10, 40, 12, 3, 2, 20, 7, "mean", {}, True, 0),
    "r8-d13": (1, 1, 13, 27, 8, 1, 2, 13, 3, "cls", {}, True, 0),
    "r28-d48": (3, 3, 16, 96, 28, 1, 7, 48, 10, "cls", {}, True, 0),
    "w8-d16": (2, 2, 8, 128, 8, 1, 2, 16, 4, "mean", {}, True, 0),
    "w10-d18": (2, 3, 6, 150, 10, 1, 2, 18, 4, "cls", {}, True, 0),
    "r12-d30": (2, 5, 6, 62, 12, 3, 3, 30, 9, "cls", {}, True, 0),
    "r14-d22-gelu": (2, 1, 22, 45, 14, 1, 7, 22, 6, "mean", {}, False, 0),
    "r20-d32-lowrank": (2, 4, 8, 64, 20, 1, 4, 32, 10, "cls", {"qkv": 12, "fc1": 10}, True, 0),
    "m12-d16-merged": (3, 2, 8, 32, 12, 1, 2, 16, 4, "cls", {}, True, 6),
    "m16-d20-merged": (2, 2, 10, 40, 16, 1, 2, 20, 5, "mean", {}, True, 9),
}


# ---- measuring an artifact ------------------------------------------------------------------------
def tool(profile, name: str) -> str:
    """The binutils program `name` ("size", "nm") of the profile's cross compiler
    (arm-none-eabi-gcc -> arm-none-eabi-size)."""
    cc = profile.toolchain.cc
    return re.sub(r"(gcc|cc)$", name, cc) if re.search(r"-(gcc|cc)$", cc) else name


def run(cmd: list[str]) -> str:
    """stdout of `cmd`; RuntimeError with its output when it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def flash_of(elf: Path, size_tool: str) -> int:
    """text + data of an ELF (Berkeley format of `size`): what the image occupies in flash."""
    line = run([size_tool, "-B", str(elf)]).splitlines()[1].split()
    return int(line[0]) + int(line[1])


def build_elf(project: Path) -> Path:
    """make -C project/firmware with one test vector; the firmware.elf path."""
    run(["make", "-s", "-C", str(project / "firmware"), "EDGEVIT_COUNT=1"])
    return project / "firmware" / "firmware.elf"


def model_flash(artifact: Path, workdir: Path, profile) -> dict[str, int]:
    """{"firmware": text+data of the artifact's firmware, "harness": the same with an empty model,
    "model": their difference}. The artifact is copied into `workdir` (full/, harness/), not modified."""
    size_tool = tool(profile, "size")
    full, stub = Path(workdir) / "full", Path(workdir) / "harness"
    for d in (full, stub):
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(artifact, d)
    (stub / "src" / "model.c").write_text(STUB_MODEL_C)
    (stub / "src" / "weights.c").write_text("/* no weights */\ntypedef int edgevit_no_weights;\n")
    got = {"firmware": flash_of(build_elf(full), size_tool), "harness": flash_of(build_elf(stub), size_tool)}
    got["model"] = got["firmware"] - got["harness"]
    return got


def function_sizes(artifact: Path, workdir: Path, profile) -> dict[str, int]:
    """{function: bytes} of every kernel function of src/kernels.c compiled alone, non-static,
    with the firmware's flags (-O2, the profile's cflags)."""
    src = (Path(artifact) / "src" / "kernels.c").read_text()
    path = Path(workdir) / "kernels_extern.c"
    path.write_text(re.sub(r"^static void (ev_\w+)\(", r"void \1(", src, flags=re.M))
    obj = path.with_suffix(".o")
    run([profile.toolchain.cc, *profile.toolchain.cflags, "-O2", "-std=c99", "-ffunction-sections",
         "-fno-strict-aliasing", "-c", str(path), "-o", str(obj)])
    return {name: size for name, (_, size, kind) in symbols(obj, profile).items()
            if kind in "Tt" and name.startswith("ev_")}


def symbols(binary: Path, profile) -> dict[str, tuple[int, int, str]]:
    """{name: (address, size, nm type)} of the sized symbols of an object or ELF."""
    out = {}
    for line in run([tool(profile, "nm"), "-S", str(binary)]).splitlines():
        parts = line.split()
        if len(parts) == 4:
            out[parts[3]] = (int(parts[0], 16), int(parts[1], 16), parts[2])
    return out


def runtime_symbols(workdir: Path, profile) -> dict[str, int]:
    """{routine: bytes} of the code/rodata symbols model_flash's full firmware adds to the
    harness, other than the kernels, edgevit_run and the weights (aliases counted once)."""
    full = symbols(Path(workdir) / "full" / "firmware" / "firmware.elf", profile)
    harness = symbols(Path(workdir) / "harness" / "firmware" / "firmware.elf", profile)
    new = sorted((addr, size, name) for name, (addr, size, kind) in full.items()
                 if kind in "TtWwRr" and name not in harness and not name.startswith(("ev_", "edgevit_")))
    out, end = {}, -1
    for addr, size, name in new:  # aliases and overlapping entries: count each byte once
        start = max(addr, end)
        out[name] = max(0, addr + size - start)
        end = max(end, addr + size)
    return out


# ---- calibration programs ---------------------------------------------------------------------------
def zoo_programs() -> list[tuple[str, object]]:
    """fmnist-tiny as int8 through the quant pass (what `edgevit compile --passes` runs) and float32."""
    from edgevit.data import load_dataset
    from edgevit.lower.from_quantized import lower
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.passes.pipeline import parse_pipeline, run_pipeline

    model = load_checkpoint(ZOO)
    quantized, _ = run_pipeline(model, parse_pipeline("quant(w=8,a=8)"), load_dataset("fashion-mnist").train)
    return [("fmnist-tiny int8", lower(quantized)), ("fmnist-tiny float32", lower(model))]


def random_programs(names: tuple[str, ...] | None = None) -> list[tuple[str, object]]:
    """int8 (min/max calibration on random images) and float32 Programs of RANDOM_SPECS."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from edgevit.lower import lower_float, lower_int8
    from edgevit.model.spec import ViTSpec
    from edgevit.model.vit import build_model
    from tests.lower.int8_helpers import minmax_qmodel, randomise

    out = []
    for seed, (name, v) in enumerate(RANDOM_SPECS.items()):
        if names and name not in names:
            continue
        spec = ViTSpec.uniform(depth=v[0], heads=v[1], head_dim=v[2], mlp_hidden=v[3], image_size=v[4],
                               in_channels=v[5], patch_size=v[6], embed_dim=v[7], num_classes=v[8], pool=v[9],
                               name=name)
        spec = spec.with_blocks([replace(b, ranks=v[10], merge_r=v[12]) for b in spec.blocks])
        model = randomise(build_model(spec, seed=seed), seed)
        x = np.random.default_rng(seed).standard_normal((8, spec.in_channels, spec.image_size, spec.image_size))
        out.append((f"{name} int8", lower_int8(minmax_qmodel(model, x.astype(np.float32)), fuse_gelu=v[11])))
        out.append((f"{name} float32", lower_float(model, fuse_gelu=v[11])))
    return out


def kernel_slice(program, index: int):
    """Kernel `index` of `program` alone as a Program: input 0 in (other tensor inputs of the same
    type read it too), output 0 out; None when another input has a different type."""
    from edgevit.lower.program import Program

    k = program.kernels[index]
    first = program.tensors[k.inputs[0]]
    others = [program.tensors[t] for t in k.inputs[1:]]
    if any((t.dtype, t.shape) != (first.dtype, first.shape) for t in others):
        return None
    k = replace(k, inputs=[k.inputs[0]] * len(k.inputs))
    tensors = {t: program.tensors[t] for t in [k.inputs[0], *k.outputs]}
    consts = {c: program.consts[c] for c in k.consts.values()}
    sliced = Program(f"{program.name}[{k.name}]", [k.inputs[0]], [k.outputs[0]], tensors, consts, [k],
                     dict(program.meta))
    sliced.validate()
    return sliced


# ---- measurements --------------------------------------------------------------------------------------
@dataclass
class Measurement:
    """One Program's artifact, measured: model flash, weights, the code summary's counts and one
    record per distinct function (terms, measured standalone bytes)."""

    label: str
    family: str
    flash: dict[str, int]
    weight_bytes: int
    calls: int
    chains: int
    tags: list[str]
    functions: list[dict] = field(default_factory=list)
    estimate_keys: int = 0  # distinct functions the estimate counts (vs len(functions): the real ones)

    @property
    def code(self) -> int:
        """Measured code: model flash minus the weights."""
        return self.flash["model"] - self.weight_bytes


def function_records(program, plan, manifest: dict, sizes: dict[str, int]) -> list[dict]:
    """One record per distinct generated function: name, op, rows, measured bytes, codesize terms
    and key (functions gcc folds into one, e.g. add_pos into add, share the key)."""
    from edgevit.targets.mcu.codesize import function_key, function_terms, function_variants

    funcs = {k["name"]: k["functions"] for k in manifest["kernels"]}
    out: dict[str, dict] = {}
    for step in plan.steps:
        for i in step.kernels:
            k = program.kernels[i]
            variants = function_variants(step)
            if not funcs[k.name] or len(funcs[k.name]) != len(variants):
                continue
            ins, outs = [program.tensors[t] for t in k.inputs], [program.tensors[t] for t in k.outputs]
            for name, rows in zip(funcs[k.name], variants):
                out.setdefault(name, {"func": name, "op": k.op, "kernel": k.name, "rows": rows, "bytes": sizes[name],
                                      "terms": function_terms(k, ins, outs, rows),
                                      "key": repr(function_key(k, ins, outs, rows))})
    return sorted(out.values(), key=lambda r: r["func"])


def measure(label: str, program, profile, workdir: Path) -> tuple[Measurement, dict[str, int]]:
    """Emit, build and measure one Program; (Measurement, runtime routine bytes)."""
    from edgevit.targets.mcu.codesize import code_summary, program_family
    from edgevit.targets.mcu.emit import emit_artifact
    from edgevit.targets.mcu.memory import plan_memory, weight_bytes
    from edgevit.backend.vectors import random_vectors

    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    plan = plan_memory(program)
    manifest = emit_artifact(program, profile, plan, workdir / "artifact", vectors=random_vectors(program, 1))
    flash = model_flash(workdir / "artifact", workdir, profile)
    sizes = function_sizes(workdir / "artifact", workdir, profile)
    summary = code_summary(program, plan.steps)
    m = Measurement(label, program_family(program), flash, weight_bytes(program), summary["calls"], summary["chains"],
                    sorted(summary["tags"]), function_records(program, plan, manifest, sizes),
                    len(summary["functions"]))
    return m, runtime_symbols(workdir, profile)


def runtime_groups(programs, profile, workdir: Path) -> dict[str, tuple[int, tuple[str, ...]]]:
    """{group: (bytes, tags)}: the routines single-kernel slices pull in, grouped by the set of
    kernel tags (the most specific of codesize.function_tags) whose slices pull each in (a
    routine's bytes: its largest measurement)."""
    from edgevit.targets.mcu.codesize import function_tags

    users: dict[str, set[str]] = {}
    size: dict[str, int] = {}
    done: set[str] = set()
    for label, program in programs:
        for i, k in enumerate(program.kernels):
            tag = function_tags(k, [program.tensors[t] for t in k.inputs])[-1]  # the most specific
            sliced = None if k.op == "reshape" or tag in done else kernel_slice(program, i)
            if sliced is None:
                continue
            done.add(tag)
            _, routines = measure(f"{label}[{k.name}]", sliced, profile, Path(workdir) / "slice")
            for name, nbytes in routines.items():
                users.setdefault(name, set()).add(tag)
                size[name] = max(size.get(name, 0), nbytes)
    groups: dict[tuple[str, ...], int] = {}
    for name, tags in users.items():
        groups[tuple(sorted(tags))] = groups.get(tuple(sorted(tags)), 0) + size[name]
    return {"+".join(tags): (nbytes, tags) for tags, nbytes in sorted(groups.items())}


# ---- fitting ----------------------------------------------------------------------------------------
def distinct(m: Measurement) -> list[dict]:
    """m's function records merged by estimate key (what the estimate counts once): the largest
    record's terms, the summed measured bytes (a gcc-folded duplicate is a few bytes of branch)."""
    by_key: dict[str, dict] = {}
    for r in sorted(m.functions, key=lambda r: -r["bytes"]):
        if r["key"] in by_key:
            by_key[r["key"]] = {**by_key[r["key"]], "bytes": by_key[r["key"]]["bytes"] + r["bytes"]}
        else:
            by_key[r["key"]] = r
    return list(by_key.values())


def fit_op_table(measurements: list[Measurement]) -> dict[str, float]:
    """OP_CODE_BYTES by least squares of every distinct function's bytes on its terms."""
    records = [r for m in measurements for r in distinct(m)]
    names = sorted({n for r in records for n in r["terms"]})
    a = np.array([[r["terms"].get(n, 0.0) for n in names] for r in records], dtype=float)
    b = np.array([r["bytes"] for r in records], dtype=float)
    coef = np.linalg.lstsq(a, b, rcond=None)[0]
    return {n: round(float(c), 1) for n, c in zip(names, coef)}


def function_total(m: Measurement, table: dict[str, float] | None) -> float:
    """Sum over the distinct functions of their bytes: measured (table None) or estimated with `table`."""
    from edgevit.targets.mcu.codesize import terms_bytes

    return sum(r["bytes"] if table is None else terms_bytes(r["terms"], table) for r in distinct(m))


def nonnegative_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0: refit without the most negative one until none is."""
    free = list(range(a.shape[1]))
    while True:
        coef = np.zeros(a.shape[1])
        coef[free] = np.linalg.lstsq(a[:, free], b, rcond=None)[0]
        if coef.min() >= 0 or not free:
            return coef
        free.remove(int(np.argmin(coef)))


def fit_program_terms(measurements: list[Measurement], runtime) -> dict[str, dict[str, float]]:
    """Per family: non-negative least squares of (code - runtime routines) on (1, measured function
    bytes, call sites, chunk loops) -> driver, shrink, call, chain."""
    from edgevit.targets.mcu.codesize import runtime_bytes

    out = {}
    for fam in sorted({m.family for m in measurements}):
        ms = [m for m in measurements if m.family == fam]
        a = np.array([[1.0, function_total(m, None), m.calls, m.chains] for m in ms])
        b = np.array([m.code - runtime_bytes(m.tags, runtime) for m in ms], dtype=float)
        coef = nonnegative_lstsq(a, b)
        names = ("driver", "shrink", "call", "chain")
        out[fam] = {k: round(float(v), 3 if k == "shrink" else 1) for k, v in zip(names, coef)}
    return out


def estimated_code(m: Measurement, table, program_terms, runtime) -> float:
    """codesize's formula on a Measurement's counts with the given tables."""
    from edgevit.targets.mcu.codesize import program_code_bytes

    return program_code_bytes(m.family, function_total(m, table), m.calls, m.chains, m.tags, program_terms, runtime)


# ---- printing ---------------------------------------------------------------------------------------------
def program_table(measurements, tables: dict[str, tuple], prefix: str = "") -> str:
    """Per Program: weights, measured code and model flash, and per table set (OP_CODE_BYTES,
    PROGRAM_TERMS, RUNTIME_BYTES) the estimated code and flash error; lines start with `prefix`."""
    head = "".join(f" {'code ' + n:>11} {'error':>6}" for n in tables)
    lines = [f"{prefix}{'program':24} {'funcs':>5} {'weights':>7} {'code':>6} {'flash':>7}{head}"]
    for m in measurements:
        cells = ""
        for table, terms, runtime in tables.values():
            est = estimated_code(m, table, terms, runtime)
            cells += f" {est:11.0f} {100 * (est - m.code) / m.flash['model']:+5.1f}%"
        funcs = f"{len(distinct(m))}/{m.estimate_keys}"  # generated (after gcc folding) / estimated
        lines.append(f"{prefix}{m.label:24} {funcs:>5} {m.weight_bytes:7} {m.code:6} {m.flash['model']:7}{cells}")
    return "\n".join(lines)


def python_tables(table: dict[str, float], terms: dict, runtime: dict) -> str:
    """The fitted tables as Python source for codesize.py."""
    ops = ", ".join(f"{k!r}: {v!r}" for k, v in table.items())
    fams = ", ".join(f"{f!r}: {v!r}" for f, v in sorted(terms.items()))
    groups = ", ".join(f"{k!r}: ({v[0]}, {tuple(v[1])!r})" for k, v in runtime.items())
    return f"OP_CODE_BYTES = {{{ops}}}\nPROGRAM_TERMS = {{{fams}}}\nRUNTIME_BYTES = {{{groups}}}"


def measure_all(profile_name: str, workdir: str | None) -> tuple[list[Measurement], dict]:
    """Measure every calibration Program and the runtime groups (see the module docstring)."""
    from edgevit.profiles.profile import load_profile

    profile = load_profile(profile_name)
    programs = zoo_programs() + random_programs()
    work = Path(workdir or tempfile.mkdtemp(prefix="edgevit-codesize-"))
    try:
        measurements = []
        for n, (label, program) in enumerate(programs):
            print(f"[{n + 1}/{len(programs)}] {label}", file=sys.stderr)
            measurements.append(measure(label, program, profile, work / re.sub(r"\W+", "_", label))[0])
        print("runtime routines: single-kernel slices", file=sys.stderr)
        return measurements, runtime_groups(programs, profile, work)
    finally:
        if not workdir:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, fit, print (and --json the measurements)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="stm32f746-disco")
    ap.add_argument("--work", default=None, help="work directory (default: a temporary one, removed)")
    ap.add_argument("--json", default=None, help="write the measurements and the fit here")
    ap.add_argument("--load", default=None, help="refit the measurements of an earlier --json (no builds)")
    args = ap.parse_args(argv)
    from edgevit.targets.mcu import codesize

    if args.load:
        saved = json.loads(Path(args.load).read_text())
        measurements = [Measurement(**m) for m in saved["measurements"]]
        runtime = {k: (v[0], tuple(v[1])) for k, v in saved["runtime_bytes"].items()}
    else:
        measurements, runtime = measure_all(args.profile, args.work)
    table = fit_op_table(measurements)
    terms = fit_program_terms(measurements, runtime)
    current = (codesize.OP_CODE_BYTES, codesize.PROGRAM_TERMS, codesize.RUNTIME_BYTES)
    print(program_table(measurements, {"now": current, "fitted": (table, terms, runtime)}))
    print("\n# ---- fitted tables, in codesize.py's syntax ----")
    print(python_tables(table, terms, runtime))
    print(program_table(measurements, {"est": (table, terms, runtime)}, prefix="# "))
    if args.json:
        saved = {"measurements": [m.__dict__ for m in measurements], "runtime_bytes": runtime,
                 "op_code_bytes": table, "program_terms": terms}
        Path(args.json).write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
