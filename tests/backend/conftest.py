"""Fixtures for the runner tests: synthetic artifacts (tests/backend/synth_artifact.py)."""

from __future__ import annotations

import shutil

import pytest

from synth_artifact import build_artifact  # tests/backend is on sys.path (no __init__.py)

needs_arm = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                               reason="arm-none-eabi-gcc / qemu-system-arm not installed")


@pytest.fixture
def int8_artifact(tmp_path):
    """A 5-vector int8 artifact for stm32f746-disco (QEMU mps2-an500)."""
    return build_artifact(tmp_path / "int8")


@pytest.fixture
def float_artifact(tmp_path):
    """A 5-vector float32 artifact for stm32f746-disco."""
    return build_artifact(tmp_path / "float", dtype="float32")
