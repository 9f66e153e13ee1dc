"""The QEMU runner on synthetic artifacts: bit-exact outputs, instruction counts, failures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.errors import RunFailedError, RunTimeoutError
from edgevit.targets.mcu.runners.qemu import INSTRUCTIONS_PER_TICK, QemuRunner, qemu_command
from edgevit.backend.run import run_artifact
from edgevit.profiles.profile import load_profile
from tests.backend.synth_artifact import build_artifact
from tests.targets.mcu.runners.toolchain import needs_arm_qemu

pytestmark = needs_arm_qemu


@pytest.mark.parametrize("profile, dtype", [("stm32f746-disco", "int8"), ("corstone-300", "float32")])
def test_runs_on_the_emulated_board(tmp_path, profile, dtype):
    art = build_artifact(tmp_path / "a", profile=profile, dtype=dtype)
    r = run_artifact(art, "qemu", progress=False)
    machine = load_profile(profile).emulator.machine
    assert r["runner"] == "qemu" and r["machine"] == machine and r["source"].endswith(f"-M {machine}")
    assert (r["count"], r["matches"]) == (5, 5) and r["top1"] == r["reference_top1"]
    # 96 MACs: a few hundred instructions, the same for every vector (QEMU -icount is deterministic
    # up to the phase of the SysTick counter: one tick)
    assert all(5 <= t <= 50 for t in r["ticks"]) and max(r["ticks"]) - min(r["ticks"]) <= 1
    per_tick = INSTRUCTIONS_PER_TICK[machine]
    assert r["instructions_per_tick"] == per_tick
    assert r["instructions_per_inference"] == round(sum(r["ticks"]) / 5 * per_tick)
    assert r["estimated_latency_ms"] == pytest.approx(r["instructions_per_inference"] / r["clock_hz"] * 1e3, rel=1e-3)
    assert "estimate" in r["latency_note"]


def test_mismatch_and_count_on_qemu(tmp_path):
    art = build_artifact(tmp_path / "a", wrong_expected=(0,))
    r = run_artifact(art, "qemu", count=3, progress=False)
    assert r["count"] == 3 and r["matches"] == 2 and r["mismatches"] == [0] and len(r["ticks"]) == 3


def test_firmware_that_exits_nonzero(tmp_path):
    art = build_artifact(tmp_path / "a", variant="exit3")
    with pytest.raises(RunFailedError, match=r"exited with code 3(.|\n)*EV-END 5"):
        run_artifact(art, "qemu", progress=False)


def test_hanging_firmware_times_out_with_its_output(tmp_path):
    art = build_artifact(tmp_path / "a", variant="hang")
    with pytest.raises(RunTimeoutError, match=r"within 3 s(.|\n)*EV 4 "):
        run_artifact(art, "qemu", timeout=3, progress=False)


def test_default_timeout_scales_with_count_and_macs(int8_artifact):
    art, prof, runner = load_artifact(int8_artifact), load_profile("stm32f746-disco"), QemuRunner()
    small, large = runner.default_timeout(art, prof, 1), runner.default_timeout(art, prof, 100)
    assert 60 < small < large and large - small >= 99 * 2.0
    cmd = qemu_command(prof, "fw.elf")
    assert cmd[:3] == ["qemu-system-arm", "-M", "mps2-an500"] and "-semihosting" in cmd
    assert cmd[cmd.index("-icount") + 1] == "shift=0" and cmd[-2:] == ["-kernel", "fw.elf"]


def test_cli_human_output_gives_the_instruction_estimate(int8_artifact):
    r = subprocess.run([sys.executable, "-m", "edgevit", "run", str(int8_artifact)], capture_output=True, text=True,
                       timeout=300)  # no --runner: the artifact's default, qemu
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())  # Rich wraps at the terminal width
    assert "on qemu-system-arm -M mps2-an500" in out and "5/5 bit-exact" in out
    assert "per SysTick tick)" in out and "(an estimate, not a measurement)" in out
    assert "instructions counted by QEMU (-icount)" in out
