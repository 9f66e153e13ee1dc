"""The MCU backend (docs/mcu-backend.md): `McuTarget` (target.py) estimates a Program's costs from
the static memory plan (targets/planner.py) and builds the artifact through `emit.emit_artifact`."""

from __future__ import annotations

__all__ = ["McuTarget"]


def __getattr__(name: str):
    if name == "McuTarget":
        from edgevit.targets.mcu.target import McuTarget

        return McuTarget
    raise AttributeError(f"module 'edgevit.targets.mcu' has no attribute {name!r}")
