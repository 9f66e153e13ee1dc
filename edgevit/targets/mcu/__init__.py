"""The MCU backend (docs/mcu-backend.md): `McuTarget` (target.py) estimates a Program's costs from
the static memory plan (backend/planner.py) and builds a firmware artifact through `emit.py`."""

from __future__ import annotations

from edgevit.targets.mcu.target import McuTarget

TARGET = McuTarget
__all__ = ["McuTarget", "TARGET"]
