"""Skip marks for tests that need the MCU cross toolchain and emulator."""

from __future__ import annotations

import shutil

import pytest

needs_arm_qemu = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                    reason="arm-none-eabi-gcc / qemu-system-arm not installed")
