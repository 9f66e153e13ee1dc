"""Re-measure QEMU's instructions per SysTick tick for every machine a shipped profile uses."""

from __future__ import annotations

import pytest

from edgevit.profiles.profile import list_profiles, load_profile
from edgevit.targets.mcu.runners.qemu import INSTRUCTIONS_PER_TICK
from tests.targets.mcu.runners.calibration import measure_instructions_per_tick
from tests.targets.mcu.runners.toolchain import needs_arm_qemu

QEMU_PROFILES = [p for p in list_profiles() if load_profile(p).emulator.kind == "qemu-system"]


@pytest.mark.slow
@needs_arm_qemu
@pytest.mark.parametrize("name", QEMU_PROFILES)
def test_instructions_per_tick_table_is_right(name, tmp_path):
    profile = load_profile(name)
    assert profile.emulator.machine in INSTRUCTIONS_PER_TICK, f"calibrate {profile.emulator.machine} in qemu.py"
    measured = measure_instructions_per_tick(profile, tmp_path)
    assert measured == pytest.approx(INSTRUCTIONS_PER_TICK[profile.emulator.machine], rel=1e-3)
