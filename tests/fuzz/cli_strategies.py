"""The CLI fuzzer's commands: for each `edgevit` command a function that draws a whole command line
(`Invocation`) from hypothesis `data` over the inputs of cli_inputs.py and an output place (`draw_out`).

Every command line has a small fault budget (`Faults`): 0, 1 or 2 of its parts (an input file, the
output place, an option) are drawn bad, the others valid, so that a fault is met deep in the command
and not only by the first check. Some faults are certain (NaN / inf where a finite number is needed,
every bad `search` option): the command line records them in `must_fail`, and exit 0 is then a finding
(a bad value accepted silently).

Kept cheap on purpose: training runs one epoch of 32 8x8 images, eval a few images, compile stops at
the budget check unless full builds are allowed (the short run never allows them), run uses the
synthetic two-layer artifact on the host or QEMU runner, and every `search` line carries at least one
invalid option (its argument checks only: a valid search trains a supernet).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from tests.fuzz.cli_datasets import draw_dataset
from tests.fuzz.cli_inputs import Assets, draw_checkpoint, draw_onnx, draw_profile, draw_spec, pipeline_text

NOT_FINITE = ("nan", "NaN", "inf", "-inf", "Infinity", "1e999")
GOOD_OUT = ("fresh", "fresh", "deep", "odd-name")
BAD_OUT = ("existing-dir", "empty-dir", "existing-file", "below-file", "sys", "proc", "long-name")


@dataclass
class Invocation:
    """One command line: argv after `edgevit`, the --out path (if any), whether the command may allocate
    without bound (run under the harness's address-space limit), and the certain faults it carries."""

    command: str
    argv: list[str]
    out: Path | None = None
    limit_memory: bool = True
    must_fail: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)


@dataclass
class World:
    """One example's directories: inputs (read by the command), the output place (where --out goes:
    must hold nothing new after a failed command), cwd and tmp (must stay empty)."""

    root: Path
    assets: Assets

    def __post_init__(self) -> None:
        for d in (self.inputs, self.outplace, self.cwd, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    inputs = property(lambda self: self.root / "in")
    outplace = property(lambda self: self.root / "out")
    cwd = property(lambda self: self.root / "cwd")
    tmp = property(lambda self: self.root / "tmp")


class Faults:
    """Which parts of one command line are drawn bad: 0, 1 or 2 of `parts` (`at_least` forces some)."""

    def __init__(self, data, parts: list[str], at_least: int = 0) -> None:
        k = (0, 1, 1, 2)[data.draw(st.integers(0, 3), label="faults")]  # about 1 in 4 command lines fully valid
        k = min(max(k, at_least), len(parts))
        self.bad = set(data.draw(st.lists(st.sampled_from(parts), min_size=k, max_size=k, unique=True),
                                 label="faulty parts"))

    def __call__(self, part: str) -> bool:
        """Whether `part` is to be drawn bad."""
        return part in self.bad


def draw_out(data, world: World, name: str, bad: bool) -> Path:
    """An --out path. Valid: new, with missing parents, or an odd but legal name. Bad: an existing
    directory (non-empty or empty) or file, below a file, under /sys or /proc (not writable even by
    root), a name longer than the file system allows."""
    kind = data.draw(st.sampled_from(BAD_OUT if bad else GOOD_OUT), label="out kind")
    place = world.outplace
    if kind == "existing-dir":
        (place / name).mkdir()
        (place / name / "keep.txt").write_text("old content\n")
    elif kind == "empty-dir":
        (place / name).mkdir()
    elif kind in ("existing-file", "below-file"):
        (place / "afile").write_text("a file\n")
        return place / "afile" if kind == "existing-file" else place / "afile" / name
    elif kind == "sys":
        return Path("/sys/edgevit-fuzz") / name
    elif kind == "proc":
        return Path("/proc/edgevit-fuzz-" + name)
    elif kind == "long-name":
        return place / ("x" * 300 + name)
    elif kind == "deep":
        return place / "a" / "b" / name
    elif kind == "odd-name":
        return place / data.draw(st.sampled_from([f"{name} with space", f"ü-{name}", f".{name}", f"{name}.v2"]),
                                 label="odd name")
    return place / name


def _option(data, inv: Invocation, faults: Faults, flag: str, good: list, bad: list, certain=()) -> None:
    """Append `flag VALUE`: a bad value if `flag` is faulty, else a good one or nothing (None in `good`).
    A bad value that must be refused (`certain`: True for all of `bad`, or the ones listed) goes to
    must_fail."""
    if faults(flag):
        value = data.draw(st.sampled_from(bad), label=flag)
        if certain is True or value in certain:
            inv.must_fail.append(f"{flag} {value}")
    else:
        value = data.draw(st.sampled_from(good), label=flag)
        if value is None:
            return
    inv.argv += [flag, str(value)]


def _float_bad(extra: list) -> list:
    return [*NOT_FINITE, *extra]


def draw_train(data, world: World) -> Invocation:
    """edgevit train: spec, data and options (one epoch; lr, threads, shift, warm-up, smoothing fuzzed)."""
    a = world.assets
    f = Faults(data, ["spec", "data", "out", "--epochs", "--batch-size", "--lr", "--weight-decay", "--label-smoothing",
                      "--schedule", "--threads", "--shift", "--warmup-epochs", "--init"])
    out = draw_out(data, world, "run", f("out"))
    inv = Invocation("train", ["train", "--spec", str(draw_spec(data, a, world.inputs, f("spec"))),
                               "--data", draw_dataset(data, a, world.inputs, f("data")), "--out", str(out)], out)
    _option(data, inv, f, "--epochs", [1], ["0", "-1", "nan", "1.5", "abc", "", "-99999999999999999999"])
    _option(data, inv, f, "--batch-size", [None, 4, 16, 1, 100000], ["0", "-1", "nan", "2.5"])
    _option(data, inv, f, "--lr", [None, 1e-3, 0.1], _float_bad(["-1e-3", "1e308", "abc"]),
            certain=(*NOT_FINITE, "-1e-3", "abc"))
    _option(data, inv, f, "--weight-decay", [None, 0.0, 0.05], _float_bad(["-0.1", "1e308"]),
            certain=(*NOT_FINITE, "-0.1"))
    _option(data, inv, f, "--label-smoothing", [None, 0.0, 0.1, 0.9], _float_bad(["1.0", "1.5", "-0.1"]), certain=True)
    _option(data, inv, f, "--schedule", [None, "cosine", "onecycle"], ["linear", "", "COSINE"], certain=True)
    _option(data, inv, f, "--threads", [None, 0, 1, 2], ["-1", "-1000", "nan", "1.5"], certain=True)
    _option(data, inv, f, "--shift", [None, 0, 1, 3], ["-1", "1000000000", "nan"])
    _option(data, inv, f, "--warmup-epochs", [None, 0.0, 0.5, 2.0], _float_bad(["-1"]), certain=True)
    _option(data, inv, f, "--seed", [None, 0, 7, 2**31], ["-1", "nan", "1.5"])
    if f("--init") or data.draw(st.integers(0, 3), label="--init?") == 0:
        inv.argv += ["--init", str(draw_checkpoint(data, a, world.inputs, f("--init"), inv.must_fail))]
    inv.argv += data.draw(st.sampled_from([[], ["--no-flip"], ["--no-resume"]]), label="flags")
    inv.faults = sorted(f.bad)
    return inv


IMPORT_OPTIONS = {"--heads": (["2"], ["0", "-1", "3", "nan", "99999999999"]),
                  "--mean": (["0.5", "0.25"], ["0.5,0.5,0.5", "nan", "inf", "-1", "a,b", "", ",", "1e308"]),
                  "--std": (["0.5"], ["0", "-0.5", "nan", "0,0,0", "x"]),
                  "--image-size": (["8"], ["0", "-8", "7", "99999999", "nan"])}


def _import_options(data, world: World, inv: Invocation, f: Faults, model: str) -> None:
    """The import options (heads, mean, std, image size, config): for an ONNX model sometimes valid ones
    (--mean/--std/--image-size), bad ones when "import" is faulty."""
    if f("import"):
        flag = data.draw(st.sampled_from(sorted(IMPORT_OPTIONS) + ["--config"]), label="import option")
        if flag == "--config":
            cfg = world.inputs / "config.json"
            cfg.write_text(data.draw(st.sampled_from(['{"heads": -1}', "[", '{"image_mean": "x"}', "heads: nan\n"]),
                                     label="config"))
            inv.argv += [flag, str(cfg)]
        else:
            inv.argv += [flag, data.draw(st.sampled_from(IMPORT_OPTIONS[flag][1]), label=flag)]
    elif model.endswith(".onnx") and data.draw(st.booleans(), label="import options?"):
        inv.argv += ["--mean", "0.5", "--std", "0.5"]


def draw_eval(data, world: World) -> Invocation:
    """edgevit eval: a model, data, split, limit, maybe a pipeline (calibration on a few images)."""
    a = world.assets
    f = Faults(data, ["model", "data", "--split", "--limit", "--passes", "--calib-size", "--data-root", "import"])
    must_fail: list[str] = []
    model = str(draw_checkpoint(data, a, world.inputs, f("model"), must_fail))
    inv = Invocation("eval", ["eval", model, "--data", draw_dataset(data, a, world.inputs, f("data"))],
                     must_fail=must_fail)
    _option(data, inv, f, "--split", [None, "test", "val", "train"], ["TEST", "", "holdout"], certain=("", "holdout"))
    _option(data, inv, f, "--limit", [1, 4, 8, 100000], ["0", "-1", "nan", "1.5"], certain=True)
    if f("--passes") or data.draw(st.booleans(), label="--passes?"):
        inv.argv += ["--passes", data.draw(pipeline_text(f("--passes")), label="--passes")]
        _option(data, inv, f, "--calib-size", [None, 1, 4, 100000], ["0", "-1", "nan"], certain=True)
        inv.argv += data.draw(st.sampled_from([[], ["--compare"]]), label="--compare")
    _option(data, inv, f, "--data-root", [None, str(world.inputs)], ["/sys", str(world.inputs / "none")])
    _import_options(data, world, inv, f, model)
    inv.argv += data.draw(st.sampled_from([[], ["--json"]]), label="--json")
    inv.faults = sorted(f.bad)
    return inv


def draw_compile(data, world: World, full_builds: bool) -> Invocation:
    """edgevit compile: a model for a profile. Without `full_builds` the valid profile is one whose SRAM
    or flash nothing fits: the command stops at the budget check (exit 3), before TVM code generation."""
    a = world.assets
    f = Faults(data, ["model", "profile", "out", "data", "--passes", "--calib-size", "--vectors", "--schedule",
                      "--threads", "import"])
    out = draw_out(data, world, "artifact", f("out"))
    profile = draw_profile(data, a, world.inputs, f("profile"), budget="compilable" if full_builds else "tiny")
    must_fail: list[str] = []
    model = str(draw_checkpoint(data, a, world.inputs, f("model"), must_fail))
    inv = Invocation("compile", ["compile", model, "--profile", profile, "--out", str(out),
                                 "--data", draw_dataset(data, a, world.inputs, f("data"))], out, must_fail=must_fail)
    if f("--passes") or data.draw(st.booleans(), label="--passes?"):
        inv.argv += ["--passes", data.draw(pipeline_text(f("--passes")), label="--passes")]
        _option(data, inv, f, "--calib-size", [None, 1, 4], ["0", "-1", "nan"], certain=True)
    _option(data, inv, f, "--vectors", [1, 2], ["0", "-1", "nan", "100000", "1.5"])
    _option(data, inv, f, "--schedule", [None], ["slow", "", "FAST"], certain=True)
    _option(data, inv, f, "--threads", [None], ["0", "-1", "nan", "100000"], certain=True)
    _import_options(data, world, inv, f, model)
    inv.argv += data.draw(st.sampled_from([[], ["--json"]]), label="--json")
    if data.draw(st.booleans(), label="--force?"):
        inv.argv.append("--force")
    inv.faults = sorted(f.bad)
    return inv


def draw_export(data, world: World) -> Invocation:
    """edgevit export-onnx: a model to an --out file, maybe an odd opset."""
    a = world.assets
    f = Faults(data, ["model", "out", "--opset"])
    out = draw_out(data, world, "model.onnx", f("out"))
    must_fail: list[str] = []
    model = str(draw_checkpoint(data, a, world.inputs, f("model"), must_fail))
    inv = Invocation("export-onnx", ["export-onnx", model, "--out", str(out)], out, must_fail=must_fail)
    _option(data, inv, f, "--opset", [None, 17, 18], ["0", "-1", "1", "99", "999999999999", "nan"], certain=True)
    inv.faults = sorted(f.bad)
    return inv


def draw_import(data, world: World) -> Invocation:
    """edgevit import: an ONNX file (valid or broken) or other source to a checkpoint directory or file."""
    a = world.assets
    f = Faults(data, ["source", "out", "import"])
    name = data.draw(st.sampled_from(["ckpt", "ckpt.safetensors"]), label="out name")
    out = draw_out(data, world, name, f("out"))
    source = str(draw_onnx(data, a, world.inputs, f("source")))
    inv = Invocation("import", ["import", source, "--out", str(out)], out)
    _import_options(data, world, inv, f, source)
    inv.argv += data.draw(st.sampled_from([[], ["--force"], ["--json"]]), label="flags")
    inv.faults = sorted(f.bad)
    return inv


def _artifact_copy(data, world: World, bad: bool) -> Path:
    """A copy of the synthetic artifact; bad: tampered with (a manifest field, the digest, an extra,
    missing or changed file), or a directory or file that is no artifact."""
    art = world.inputs / "artifact"
    kind = data.draw(st.sampled_from(["manifest", "extra", "missing", "changed", "not-artifact", "file"]) if bad
                     else st.just("intact"), label="artifact kind")
    if kind == "not-artifact":
        art.mkdir(parents=True)
        return art
    if kind == "file":
        return world.assets.spec
    shutil.copytree(world.assets.artifact, art)
    if kind == "manifest":
        m = art / "manifest.json"
        manifest = json.loads(m.read_text())
        edit = data.draw(st.sampled_from(["vectors", "program", "add", "digest"]), label="manifest edit")
        if edit == "vectors":
            manifest["vectors"]["count"] = 9
        elif edit == "program":
            manifest["program"]["output"]["shape"] = [5]
        elif edit == "add":
            manifest["memory"] = {"arena_bytes": 1}
        else:
            manifest.pop("digest", None)
        m.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    elif kind == "extra":
        (art / "src" / "evil.c").write_text("int evil;\n")
    elif kind == "missing":
        (art / "src" / "model.c").unlink()
    elif kind == "changed":
        p = art / "src" / "weights.c"
        p.write_text(p.read_text().replace("0", "1", 1))
    return art


def draw_run(data, world: World) -> Invocation:
    """edgevit run: the synthetic artifact (maybe tampered) on the host or QEMU runner, or a runner that
    cannot work here, with fuzzed --count / --timeout and runner options that do not apply."""
    f = Faults(data, ["artifact", "--runner", "--count", "--timeout", "extra"])
    inv = Invocation("run", ["run", str(_artifact_copy(data, world, f("artifact")))], limit_memory=False)
    _option(data, inv, f, "--runner", ["host", "qemu", "qemu"], ["serial", "ssh", "fpga", ""])
    _option(data, inv, f, "--count", [None, 1, 2, 3], ["0", "-1", "4", "1000000", "nan", "1.5"], certain=True)
    _option(data, inv, f, "--timeout", [None, 120, 600], ["nan", "inf", "-inf", "-1", "0", "1e308", "1e999", "abc"],
            certain=("nan", "inf", "-inf", "-1", "0", "1e999", "abc"))
    if f("extra"):
        extra = data.draw(st.sampled_from(["ssh", "port", "data", "bench"]), label="run extra")
        inv.argv += {"ssh": ["--ssh-host", "127.0.0.1", "--ssh-port", data.draw(st.sampled_from(["1", "0", "70000"]))],
                     "port": ["--port", data.draw(st.sampled_from(["socket://127.0.0.1:1", "/dev/edgevit-none", ""])),
                              "--baud", data.draw(st.sampled_from(["115200", "0", "-9600", "nan"]))],
                     "data": ["--data", str(world.assets.npz), "--results", str(world.outplace / "results.jsonl")],
                     "bench": ["--bench-runs", data.draw(st.sampled_from(["0", "-1", "3"]))]}[extra]
        inv.must_fail.append(f"run option {extra} on an MCU artifact")
    elif "host" in inv.argv and data.draw(st.booleans(), label="--sanitize?"):
        inv.argv.append("--sanitize")
    inv.argv += data.draw(st.sampled_from([[], ["--json"]]), label="--json")
    inv.faults = sorted(f.bad)
    return inv


SEARCH_INVALID = {"--time-budget": ["nan", "-1m", "0", "abc", "10 parsecs", "inf", ""],
                  "--latency-ms": ["nan", "-1", "inf", "abc", "0"], "--supernet-share": ["nan", "0", "1.5", "-1", "inf"],
                  "--population": ["1", "0", "-5", "nan"], "--workers": ["0", "-1", "nan"],
                  "--val-images": ["0", "-1", "nan"], "--max-sram": ["-1KiB", "abc", "0", "nan", "1e999KiB"],
                  "--space": ["MISSING", "JUNK"], "--supernet": ["MISSING"], "--profile": ["no-such", "JUNK"],
                  "--data": ["BAD"], "--out": ["FILE", "BELOW-FILE", "SYS"],
                  "--ray-address": ["localhost:1", "nonsense", ""]}


def draw_search(data, world: World) -> Invocation:
    """edgevit search with cheap valid options and 1-3 invalid ones (its argument checks only)."""
    a = world.assets
    opts = {"--profile": "stm32f746-disco", "--data": str(a.npz), "--out": str(world.outplace / "search"),
            "--time-budget": "3s", "--population": "2", "--workers": "1", "--val-images": "4"}
    bad = []
    for flag in data.draw(st.lists(st.sampled_from(sorted(SEARCH_INVALID)), min_size=1, max_size=3, unique=True),
                          label="invalid search options"):
        value = data.draw(st.sampled_from(SEARCH_INVALID[flag]), label=flag)
        if value == "JUNK":
            value = draw_profile(data, a, world.inputs, bad=True)  # no profile file is a search space
        elif value == "MISSING":
            value = str(world.inputs / "no-such")
        elif value == "BAD":
            value = draw_dataset(data, a, world.inputs, bad=True)
        elif value in ("FILE", "BELOW-FILE"):
            (world.outplace / "afile").write_text("a file\n")
            value = str(world.outplace / "afile" / ("search" if value == "BELOW-FILE" else ""))
        elif value == "SYS":
            value = "/sys/edgevit-fuzz/search"
        opts[flag] = value
        bad.append(f"{flag} {value}")
    inv = Invocation("search", ["search"] + [x for kv in opts.items() for x in kv], Path(opts["--out"]),
                     must_fail=bad, faults=[b.split()[0] for b in bad])
    return inv


def draw_profiles(data, world: World) -> Invocation:
    """edgevit profiles show (a shipped, mutated or junk profile) or list."""
    if data.draw(st.integers(0, 9), label="list?") == 0:
        return Invocation("profiles", ["profiles", "list"] + data.draw(st.sampled_from([[], ["--json"]])))
    bad = data.draw(st.integers(0, 3), label="bad profile?") != 0
    args = ["profiles", "show", draw_profile(data, world.assets, world.inputs, bad)]
    return Invocation("profiles", args + data.draw(st.sampled_from([[], ["--json"]]), label="--json"))


def draw_passes(data, world: World) -> Invocation:
    """edgevit passes list / show NAME (names fuzzed)."""
    if data.draw(st.booleans(), label="list?"):
        return Invocation("passes", ["passes", "list"] + data.draw(st.sampled_from([[], ["--json"]])))
    name = data.draw(st.sampled_from(["quant", "tome", "prune", "lowrank", "QUANT", "", "nope", "quant(w=8)"]))
    return Invocation("passes", ["passes", "show", name])


COMMANDS = {"train": draw_train, "eval": draw_eval, "compile": draw_compile, "export-onnx": draw_export,
            "import": draw_import, "run": draw_run, "search": draw_search, "profiles": draw_profiles,
            "passes": draw_passes}


def draw_invocation(data, world: World, commands=tuple(COMMANDS), full_builds: bool = False) -> Invocation:
    """One command line of a command drawn from `commands`."""
    name = data.draw(st.sampled_from(list(commands)), label="command")
    if name == "compile":
        return draw_compile(data, world, full_builds)
    return COMMANDS[name](data, world)
