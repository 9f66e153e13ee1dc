"""Every bad input at the CLI boundary is one clear error before any heavy work (issue #18, items 1,
2, 3, 6, 9): exit 2 (3 for a budget), a message naming the option / field / file and what to do, no
traceback (in-process runs re-raise anything but SystemExit), nothing written in the output place.

Where a check must come *before* loading, the test gives a model or dataset that does not exist: the
error is then about the option, proving the order.
"""

from __future__ import annotations

import math
import resource
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "fmnist-tiny"
PROFILES = ROOT / "edgevit" / "profiles"
MISSING = "/nonexistent/edgevit-test/model"
SPEC8 = """\
name: t8
image_size: 8
in_channels: 1
patch_size: 4
embed_dim: 16
pool: cls
num_classes: 3
depth: 1
heads: 2
head_dim: 8
mlp_hidden: 16
"""


@pytest.fixture
def cli(monkeypatch, capsys):
    """run(*args) -> CliResult with stderr's whitespace collapsed."""
    return lambda *args: run_cli(monkeypatch, capsys, *args, flat_err=True)


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    """(spec.yaml for 8x8 images and 3 classes, an npz dataset of 32 train / 8 test such images)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=rng.integers(0, 256, (32, 8, 8), dtype=np.uint8), y_train=rng.integers(0, 3, 32),
             x_test=rng.integers(0, 256, (8, 8, 8), dtype=np.uint8), y_test=rng.integers(0, 3, 8))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC8)
    return spec, data


def profile_copy(tmp_path: Path, shipped: str, name: str, *edits: tuple[str, str]) -> Path:
    """A copy of a shipped profile renamed `name`, with (old, new) text edits."""
    text = (PROFILES / f"{shipped}.yaml").read_text().replace(f"name: {shipped}", f"name: {name}")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def assert_refused(r, code: int, *words: str) -> None:
    assert r.code == code, (r.code, r.err)
    assert "Traceback" not in r.err, r.err
    assert "error:" in r.err or "Invalid value for" in r.err, r.err  # ours, or typer's usage error
    for word in words:
        assert word in r.err, (word, r.err)


# ---- train -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "Infinity"), ("--lr", "1e999"), ("--lr", "0"), ("--lr", "-1"),
    ("--warmup-epochs", "inf"), ("--warmup-epochs", "nan"), ("--warmup-epochs", "1.7e308"), ("--weight-decay", "nan"),
    ("--weight-decay", "Infinity"), ("--weight-decay", "-0.1"),
    ("--label-smoothing", "nan"), ("--threads", "-1"), ("--threads", "-1000"), ("--shift", "1000000000"),
    ("--seed", "-1"),
])
def test_train_refuses_bad_numbers_before_loading_anything(cli, tiny, tmp_path, option, value) -> None:
    spec, data = tiny
    out = tmp_path / "run"
    r = cli("train", "--spec", spec, "--data", data, "--out", out, "--epochs", "1", option, value)
    assert_refused(r, 2, option)
    assert not out.exists()


def test_train_out_must_be_a_writable_directory_place(cli, tiny, tmp_path) -> None:
    spec, data = tiny
    assert_refused(cli("train", "--spec", spec, "--data", data, "--out", data, "--epochs", "1"), 2,
                   f"--out {data}", "not a directory")
    assert_refused(cli("train", "--spec", spec, "--data", data, "--out", data / "run", "--epochs", "1"), 2,
                   "is a file, not a directory")
    assert_refused(cli("train", "--spec", spec, "--data", data, "--out", "/proc/edgevit-run", "--epochs", "1"), 2,
                   "--out /proc/edgevit-run", "choose a writable place")


@pytest.fixture
def address_space_cap():
    """This process's address space capped at what it maps + 4 GiB for the test (restored after): a
    guard that stopped working fails the test with an allocation error instead of filling the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmSize:"))
    cap = mapped + (4 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_a_spec_too_big_for_this_machine_is_refused_with_the_numbers(cli, tiny, tmp_path, address_space_cap) -> None:
    spec, data = tiny
    spec.write_text(SPEC8.replace("embed_dim: 16", "embed_dim: 10000000"))  # ~5e10 parameters
    out = tmp_path / "run"
    r = cli("train", "--spec", spec, "--data", data, "--out", out, "--epochs", "1")
    assert_refused(r, 3, "training this spec needs at least", "parameters x 16 B", "available", "embed_dim")
    assert not out.exists()


def test_the_training_estimate_uses_the_real_batch_and_the_memory_limit(cli, tiny, tmp_path, monkeypatch) -> None:
    import edgevit.validate as validate

    spec, data = tiny
    # ~170k parameters (2.7 MB of training state) fit 8 MiB with one image; 29 images of 65 tokens do not
    spec.write_text(SPEC8.replace("patch_size: 4", "patch_size: 1").replace("embed_dim: 16", "embed_dim: 256")
                    .replace("mlp_hidden: 16", "mlp_hidden: 256"))
    monkeypatch.setattr(validate, "available_memory", lambda: (8 << 20, "the cgroup memory limit"))
    r = cli("train", "--spec", spec, "--data", data, "--out", tmp_path / "run", "--epochs", "1")
    assert_refused(r, 3, "a batch of 29 images", "8 MiB available (the cgroup memory limit)", "lower --batch-size")
    assert not (tmp_path / "run").exists()


# ---- export-onnx -----------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", ["999999999999", "99", "1", "-3"])
def test_export_onnx_opset_out_of_range(cli, tmp_path, opset) -> None:
    out = tmp_path / "m.onnx"
    assert_refused(cli("export-onnx", MISSING, "--out", out, "--opset", opset), 2, "--opset", "9..20")
    assert not out.exists()


def test_export_onnx_out_checked_before_the_model_loads(cli, tmp_path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    assert_refused(cli("export-onnx", MISSING, "--out", folder), 2, f"--out {folder}", "is a directory")
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["dir"]
    assert_refused(cli("export-onnx", MISSING, "--out", "/sys/m.onnx"), 2, "--out /sys/m.onnx")
    long = tmp_path / ("x" * 300 + ".onnx")
    assert_refused(cli("export-onnx", MISSING, "--out", long), 2, "--out", "File name too long")


# ---- compile -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("out, words", [
    ("/sys/edgevit-art", ["--out /sys/edgevit-art", "choose a writable place"]),
    ("{file}/art", ["is a file, not a directory"]),
    ("{long}", ["File name too long"]),
])
def test_compile_out_is_checked_before_the_model_loads(cli, tiny, tmp_path, out, words) -> None:
    _, data = tiny
    out = out.format(file=data, long=tmp_path / ("y" * 300))
    assert_refused(cli("compile", MISSING, "--profile", "stm32f746-disco", "--out", out), 2, *words)


@pytest.mark.parametrize("vectors", ["100000", "0", "-1"])
def test_compile_vectors_range_before_anything(cli, tmp_path, vectors) -> None:
    assert_refused(cli("compile", MISSING, "--profile", "stm32f746-disco", "--out", tmp_path / "a",
                       "--vectors", vectors), 2, "--vectors")


def test_compile_vectors_beyond_the_test_split_refused_like_run_count(cli, tmp_path) -> None:
    rng = np.random.default_rng(1)
    data = tmp_path / "f.npz"
    np.savez(data, x_train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y_train=rng.integers(0, 10, 40),
             x_test=rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, 8))
    out = tmp_path / "art"
    r = cli("compile", ZOO, "--profile", "stm32f746-disco", "--out", out, "--data", data, "--vectors", "9")
    assert_refused(r, 2, "--vectors 9", "only 8 images", "--vectors 8 or fewer")
    assert not out.exists()


def test_a_text_file_named_npz_is_not_a_dataset(cli, tmp_path) -> None:
    data = tmp_path / "d.npz"
    data.write_text("hello\n")
    r = cli("compile", ZOO, "--profile", "stm32f746-disco", "--out", tmp_path / "a", "--data", data)
    assert_refused(r, 2, str(data), "not a readable .npz dataset (not a zip archive)", "numpy.savez")
    assert "pickle" not in r.err


@pytest.fixture
def nan_checkpoint(tmp_path) -> Path:
    """fmnist-tiny with one NaN and one inf in blocks.0.attn.qkv.weight."""
    ckpt = tmp_path / "nan-ckpt"
    shutil.copytree(ZOO, ckpt)
    with safe_open(str(ZOO / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    state = load_file(str(ZOO / "model.safetensors"))
    state["blocks.0.attn.qkv.weight"][3, 5] = math.nan
    state["blocks.0.attn.qkv.weight"][7, 1] = math.inf
    save_file(state, str(ckpt / "model.safetensors"), metadata=meta)
    return ckpt


@pytest.mark.parametrize("command", [["compile", "--profile", "stm32f746-disco", "--out", "{out}"],
                                     ["compile", "--profile", "stm32f746-disco", "--out", "{out}", "--passes",
                                      "quant(w=8,a=8)"],
                                     ["eval", "--limit", "5"], ["export-onnx", "--out", "{out}.onnx"]])
def test_non_finite_weights_are_refused_on_load_naming_the_tensor(cli, nan_checkpoint, tmp_path, command) -> None:
    out = tmp_path / "out"
    args = [a.format(out=out) for a in command]
    r = cli(args[0], nan_checkpoint, *args[1:])
    assert_refused(r, 2, "'blocks.0.attn.qkv.weight'", "2 non-finite value(s)", "at index [3, 5]")
    assert not out.exists() and not Path(f"{out}.onnx").exists()


def test_weights_over_the_flash_are_refused_before_calibration_about_weights(cli, tmp_path) -> None:
    profile = profile_copy(tmp_path, "stm32f746-disco", "f180", ("flash_bytes: 1MiB", "flash_bytes: 180KiB"),
                           ("size_bytes: 1MiB}", "size_bytes: 180KiB}"))
    out = tmp_path / "art"
    # the dataset does not exist: the refusal comes before any data (and any calibration)
    r = cli("compile", ZOO, "--profile", profile, "--out", out, "--data", tmp_path / "none.npz")
    assert_refused(r, 3, "139,018 parameters", "float32 weights", "184,320 B of flash on f180", "quant(w=4,a=8)",
                   "lowrank(", "prune(", "tome) does not reduce weights")
    assert "tome(r=" not in r.err and not out.exists()


def test_a_flash_overflow_after_lowering_is_explained_by_the_weights(cli, tmp_path) -> None:
    profile = profile_copy(tmp_path, "stm32f746-disco", "f548", ("flash_bytes: 1MiB", "flash_bytes: 548KiB"),
                           ("size_bytes: 1MiB}", "size_bytes: 548KiB}"))
    out = tmp_path / "art"
    r = cli("compile", ZOO, "--profile", profile, "--out", out)
    assert_refused(r, 3, "flash: weights 556,072 B + code", "The weights take 556,072 B of the 561,152 B flash",
                   "quant(w=8,a=8)", "lowrank(", "tome) does not reduce weights")
    assert "tome(r=" not in r.err and "Largest arena buffers" not in r.err and not out.exists()


def test_an_unknown_core_is_refused_by_profiles_show_and_compile(cli, tmp_path) -> None:
    profile = profile_copy(tmp_path, "stm32f746-disco", "z99", ("core: cortex-m7", "core: cortex-z99"),
                           ("-mcpu=cortex-m7", "-mcpu=cortex-z99"))
    r = cli("profiles", "show", profile)
    assert_refused(r, 2, "z99.yaml:", "core: unknown core 'cortex-z99'", "supported mcu cores", "cortex-m7",
                   "cortex-m55")
    assert_refused(cli("compile", MISSING, "--profile", profile, "--out", tmp_path / "a"), 2, "cortex-z99")


def test_a_cpu_profile_the_cpu_target_cannot_compile_is_refused_before_loading(cli, tmp_path) -> None:
    profile = profile_copy(tmp_path, "rpi4", "a9", ("core: cortex-a72", "core: cortex-a9"),
                           ("isa: [armv8-a, neon, fp, crc]", "isa: [armv7-a, neon]"),
                           ("-mcpu=cortex-a72", "-mcpu=cortex-a9"))
    r = cli("compile", MISSING, "--profile", profile, "--out", tmp_path / "a", "--passes", "quant(w=8,a=8)")
    assert_refused(r, 2, "core 'cortex-a9'", "32-bit", "x86-64 and aarch64")


def test_the_host_profile_says_it_is_generic_and_what_this_machine_has(cli) -> None:
    r = cli("profiles", "show", "host")
    assert r.code == 0
    text = " ".join(r.out.split())
    assert "generic" in text and "not this machine's" in text and "this machine:" in text and "cores available" in text


# ---- run -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-1"),
                                           ("--timeout", "1e999"), ("--ssh-port", "0"), ("--baud", "0"),
                                           ("--bench-runs", "-1"), ("--threads", "0")])
def test_run_refuses_bad_numbers_before_reading_the_artifact(cli, tmp_path, option, value) -> None:
    assert_refused(cli("run", tmp_path / "no-artifact", option, value), 2, option)


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_flash_timeout_is_checked_too(cli, tmp_path, value) -> None:
    assert_refused(cli("flash", tmp_path / "no-artifact", "--timeout", value), 2, "--timeout")


def test_run_timeout_nan_with_a_real_artifact(cli, tmp_path) -> None:
    from tests.backend.synth_artifact import build_artifact

    art = build_artifact(tmp_path / "art")
    for value in ("nan", "inf"):
        assert_refused(cli("run", art, "--runner", "host", "--timeout", value), 2, f"--timeout {value}")


# ---- search --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, words", [
    (["--latency-ms", "nan"], ["--latency-ms nan"]),
    (["--latency-ms", "0"], ["--latency-ms"]),
    (["--supernet-share", "inf"], ["--supernet-share"]),
    (["--time-budget", "99999999h"], ["--time-budget"]),
    (["--space", "{tmp}/no-space.yaml"], ["--space", "not found"]),
    (["--space", "{tmp}/bad-space.yaml"], ["bad-space.yaml", "embed_dims"]),
    (["--out", "{tmp}/file.txt"], ["--out", "not a directory"]),
    (["--out", "{tmp}/full"], ["--out", "not a search output directory"]),
    (["--out", "/sys/edgevit-search"], ["--out /sys/edgevit-search"]),
    (["--profile", "{tmp}/nowhere.yaml"], ["nowhere", "no backend"]),  # a profile naming a target that does not exist
    (["--ray-address", "nonsense"], ["--ray-address"]),
])
def test_search_checks_every_option_before_the_data_loads(cli, tmp_path, extra, words) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "nowhere.yaml").write_text((ROOT / "edgevit" / "profiles" / "zcu104.yaml").read_text()
                                           .replace("name: zcu104", "name: nowhere\ntarget: nowhere"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    (tmp_path / "bad-space.yaml").write_text((ROOT / "edgevit" / "nas" / "spaces" / "mcu.yaml").read_text()
                                             .replace("embed_dims: [48, 64, 80, 96]", "embed_dims: [0, -4]"))
    args = {"--profile": "stm32f746-disco", "--out": str(tmp_path / "s"), "--time-budget": "30s"}
    extra = [e.format(tmp=tmp_path) for e in extra]
    for key, value in zip(extra[::2], extra[1::2]):
        args[key] = value
    flat = [x for kv in args.items() for x in kv]
    r = cli("search", "--data", str(tmp_path / "no-data.npz"), *flat)  # the data would fail: it must not be read
    assert_refused(r, 2, *words)
    assert not (tmp_path / "s").exists() and (tmp_path / "full" / "mine.txt").read_text() == "keep"


# ---- Ctrl-C and running out of memory --------------------------------------------------------------------
def test_ctrl_c_prints_interrupted_and_exits_130(cli, monkeypatch) -> None:
    import edgevit.backend.compile as compile_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compile_module, "compile_artifact", interrupted)
    r = cli("compile", ZOO, "--profile", "stm32f746-disco", "--out", "x")
    assert r.code == 130 and "interrupted" in r.err and "Traceback" not in r.err


def test_an_allocation_failure_is_one_out_of_memory_error(cli, monkeypatch) -> None:
    import edgevit.backend.compile as compile_module

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 87000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(compile_module, "compile_artifact", no_memory)
    r = cli("compile", ZOO, "--profile", "stm32f746-disco", "--out", "x")
    assert_refused(r, 3, "out of memory", "you tried to allocate 87000000 bytes", "--batch-size")
