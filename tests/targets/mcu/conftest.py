"""Fixtures for the MCU emitter tests. The repository root goes on sys.path so that
`from tests...` imports work under plain `pytest` as well as `python -m pytest`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def profile():
    """The default MCU profile (STM32F746G-DISCO; QEMU mps2-an500)."""
    from edgevit.profiles.profile import load_profile

    return load_profile("stm32f746-disco")
