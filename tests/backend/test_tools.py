"""Missing build tools and emulators: one clear error naming the binary and the apt package."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from edgevit.backend import process
from edgevit.backend.errors import ToolchainError
from edgevit.backend.run import run_artifact
from edgevit.backend.runner import get_runner
from edgevit.backend.target import get_target


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
