"""One source of truth: the figures `McuTarget().estimate` gives (what NAS optimises) are the
compiled artifact's: manifest `memory`, the emitted EDGEVIT_ARENA_BYTES (which sizes model.c's
arena) and, once linked, the arena symbol of the firmware; and the firmware's real flash for the
model (text + data of firmware.elf minus the same firmware with an empty model, measured as
scripts/calibrate_codesize.py does) is within FLASH_TOLERANCE of the estimated flash_bytes, its
code (that minus the weights) within CODE_TOLERANCE of code_bytes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.model.spec import ViTSpec
from edgevit.profiles.profile import load_profile
from edgevit.targets.mcu.target import McuTarget
from edgevit.backend.vectors import random_vectors
from tests.conftest import vit_specs
from tests.backend.test_planner import make_program

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "models" / "fmnist-tiny"
PROFILE = "stm32f746-disco"
# |estimated - measured| / measured, of the model's flash (weights + code) and of its code alone
# (weights can dwarf the code). The calibration (codesize.py) leaves < 1.5 % of flash and < 4 % of
# code on its Programs; the margins leave room for kernels that change a little between calibrations.
FLASH_TOLERANCE = 0.05
CODE_TOLERANCE = 0.15
needs_arm = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("make")),
                               reason="arm-none-eabi-gcc / make not installed")


@pytest.fixture(scope="module")
def profile():
    return load_profile(PROFILE)


def build(program, profile, out: Path):
    """(estimate Costs, manifest) of `program` written by McuTarget.build (the emitter `edgevit compile` uses)."""
    import json

    from edgevit.backend.artifact_write import seal, write_files

    target = McuTarget()
    costs = target.estimate(program, profile)
    files = seal(target.build(program, profile, costs, random_vectors(program, 1)), target)
    write_files(out, files)
    return costs, json.loads(files["manifest.json"])


def header_macro(artifact: Path, name: str) -> int:
    """The value of `#define name <int>` in src/edgevit_model.h."""
    text = (artifact / "src" / "edgevit_model.h").read_text()
    match = re.search(rf"^#define {name}\s+(\d+)", text, re.M)
    assert match, f"{name} not defined in edgevit_model.h"
    return int(match.group(1))


def check_figures(costs, manifest: dict, artifact: Path) -> None:
    """Manifest memory, the header's macros and model.c's arena agree with the estimate."""
    fig = costs.figures
    assert manifest["memory"] == fig
    assert header_macro(artifact, "EDGEVIT_ARENA_BYTES") == fig["arena_bytes"]
    assert header_macro(artifact, "EDGEVIT_WEIGHT_BYTES") == fig["weight_bytes"]
    assert header_macro(artifact, "EDGEVIT_STACK_BYTES") == fig["stack_bytes"]
    model_c = (artifact / "src" / "model.c").read_text()
    assert re.search(r"static uint8_t edgevit_arena\[EDGEVIT_ARENA_BYTES\]", model_c)
    offsets = [int(x) for x in re.findall(r"edgevit_arena \+ (\d+)", model_c)]
    assert offsets and max(offsets) < fig["arena_bytes"]


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(spec=vit_specs(), seed=st.integers(0, 2**16), dtype=st.sampled_from(["int8", "int8", "float32"]))
def test_artifact_memory_is_the_estimate(profile, tmp_path_factory, spec, seed, dtype) -> None:
    program = make_program(spec, seed, dtype)
    out = tmp_path_factory.mktemp("art")
    costs, manifest = build(program, profile, out)
    check_figures(costs, manifest, out)
    assert json.loads((out / "manifest.json").read_text())["memory"] == manifest["memory"]


def elf_symbol_size(elf: Path, symbol: str) -> int:
    """Size of `symbol` in an ELF (arm-none-eabi-nm -S)."""
    for line in subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == symbol:
            return int(parts[1], 16)
    raise AssertionError(f"{symbol} not in {elf}")


def check_firmware(costs, artifact: Path, workdir: Path, profile) -> dict:
    """Link the firmware: its arena symbol is arena_bytes; the model's flash and code are within
    tolerance of the estimate."""
    from scripts.calibrate_codesize import model_flash

    fig = costs.figures
    flash = model_flash(artifact, workdir, profile)
    elf = workdir / "full" / "firmware" / "firmware.elf"
    assert elf_symbol_size(elf, "edgevit_arena") == fig["arena_bytes"]
    code = flash["model"] - fig["weight_bytes"]
    error, code_error = (fig["flash_bytes"] - flash["model"]) / flash["model"], (fig["code_bytes"] - code) / code
    assert abs(error) <= FLASH_TOLERANCE and abs(code_error) <= CODE_TOLERANCE, (
        f"estimated flash {fig['flash_bytes']} B (weights {fig['weight_bytes']} + code {fig['code_bytes']}) vs "
        f"measured {flash['model']} B ({100 * error:+.1f}%; code {code} B, {100 * code_error:+.1f}%): "
        "recalibrate edgevit/targets/mcu/codesize.py with scripts/calibrate_codesize.py")
    return flash


@needs_arm
@pytest.mark.parametrize("dtype", ["int8", pytest.param("float32", marks=pytest.mark.slow)])
def test_firmware_flash_is_within_tolerance_of_the_estimate(profile, tmp_path, dtype) -> None:
    spec = ViTSpec.uniform(depth=2, heads=3, head_dim=6, mlp_hidden=45, image_size=10, in_channels=1, patch_size=2,
                           embed_dim=18, num_classes=4, name="flash")
    program = make_program(spec, 11, dtype)
    costs, manifest = build(program, profile, tmp_path / "art")
    check_figures(costs, manifest, tmp_path / "art")
    check_firmware(costs, tmp_path / "art", tmp_path / "work", profile)


@needs_arm
@pytest.mark.slow
def test_compiled_zoo_model_matches_its_estimate(profile, tmp_path) -> None:
    """`edgevit compile` (compile_artifact) of fmnist-tiny (float32, no passes): the manifest is the
    estimate of the very Program it compiled (same fingerprint), and the firmware is within tolerance."""
    from edgevit.lower import lower
    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.backend.compile import compile_artifact

    out = tmp_path / "art"
    compile_artifact(ZOO, PROFILE, out, vectors=2, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    program = lower(load_checkpoint(ZOO))
    assert manifest["program"]["fingerprint"] == program.fingerprint()
    costs = McuTarget().estimate(program, profile)
    check_figures(costs, manifest, out)
    check_firmware(costs, out, tmp_path / "work", profile)
