"""What the MCU runners tell users without running anything: missing tools (binary and apt
package), what their ticks and latency estimates mean, which artifact directories they build from."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from edgevit.backend import process
from edgevit.backend.errors import ToolchainError
from edgevit.backend.run import run_artifact, timing
from edgevit.backend.runner import get_runner
from edgevit.backend.target import get_target
from edgevit.profiles.profile import load_profile
from edgevit.targets.mcu.runners.host import HostRunner
from edgevit.targets.mcu.runners.qemu import LATENCY_NOTE, QemuRunner


def _hide(monkeypatch, *names):
    real = shutil.which
    monkeypatch.setattr(process.shutil, "which", lambda name, *a, **k: None if name in names else real(name, *a, **k))


@pytest.mark.parametrize("missing, package", [
    ("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi"),
    ("qemu-system-arm", "qemu-system-arm"),
    ("make", "make"),
])
def test_qemu_runner_names_missing_binary_and_package(int8_artifact, monkeypatch, missing, package):
    _hide(monkeypatch, missing)
    with pytest.raises(ToolchainError) as e:
        run_artifact(int8_artifact, "qemu", progress=False)
    msg = str(e.value)
    assert f"`{missing}`" in msg and f"sudo apt-get install {package}" in msg and e.value.exit_code == 2
    assert "(all MCU tools: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)" in msg


def test_host_runner_missing_gcc(int8_artifact, monkeypatch):
    _hide(monkeypatch, "gcc", "make")
    with pytest.raises(ToolchainError, match=r"`make`.*`gcc`.*apt-get install make gcc"):
        run_artifact(int8_artifact, "host", progress=False)


def test_empty_path_is_reported_before_anything_runs(int8_artifact, monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ToolchainError, match="qemu-system-arm"):
        run_artifact(int8_artifact, "qemu", progress=False)


def test_cross_compiler_without_newlib(int8_artifact, monkeypatch, tmp_path):
    fake = tmp_path / "bin" / "arm-none-eabi-gcc"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$1" | sed "s/-print-file-name=//"\n')  # gcc's answer for a missing file
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ToolchainError, match="rdimon.specs.*libnewlib-arm-none-eabi"):
        run_artifact(int8_artifact, "qemu", progress=False)


def test_mcu_target_lists_its_runners():
    mcu = get_target("mcu")
    assert {"host", "qemu", "serial"} <= set(mcu.runners()) and mcu.default_runner == "qemu"
    assert get_runner("host", mcu, sanitize=True).sanitize


def test_runners_build_from_the_directories_their_makefiles_use():
    assert QemuRunner.build_dirs == ("src", "firmware")
    assert HostRunner.build_dirs == ("src", "firmware", "host")  # host/Makefile compiles firmware/main.c


def test_qemu_timing_says_what_the_estimate_is_and_why_there_is_none():
    board = load_profile("stm32f746-disco")  # mps2-an500: 40 instructions per tick
    t = timing([100, 102], QemuRunner(), board)
    assert t["instructions_per_inference"] == 4040 and t["latency_note"] == LATENCY_NOTE
    assert t["estimated_latency_ms"] == 4040 / board.clock_hz * 1e3
    zero = timing([0, 0], QemuRunner(), board)
    assert zero["instructions_per_inference"] is None and zero["instructions_per_tick"] == 40.0
    assert zero["latency_note"] == "no instruction count: the firmware reported 0 SysTick ticks"
    uncalibrated = board.model_copy(update={"emulator": board.emulator.model_copy(update={"machine": "mps2-an505"})})
    unknown = timing([100], QemuRunner(), uncalibrated)
    assert unknown["estimated_latency_ms"] is None
    assert "QEMU machine 'mps2-an505' has no calibrated instructions-per-tick figure" in unknown["latency_note"]
    host = timing([0], HostRunner(), board)
    assert host["latency_note"] == "no instruction count: the host runner does not count instructions"


def test_mcu_runners_report_the_profile_board_as_machine():
    board = load_profile("corstone-300")
    assert QemuRunner().machine(board) == HostRunner().machine(board) == "mps3-an547"
    assert QemuRunner.tick_name == "SysTick tick"
