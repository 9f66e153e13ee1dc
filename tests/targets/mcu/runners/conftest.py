"""Fixtures for the MCU runner tests: the synthetic artifacts of tests/backend/synth_artifact.py."""

from __future__ import annotations

from tests.backend.synth_artifact import float_artifact, int8_artifact  # noqa: F401 (fixtures)
