"""The instructions-per-tick table every QEMU instruction count and latency estimate relies on
(edgevit/targets/mcu/runners/qemu.py), re-measured in the default suite for the default profile's
machine (stm32f746-disco: mps2-an500): a loop of known length, SysTick from the processor clock, two
lengths to cancel the overhead (calibration.py). test_qemu_calibration.py re-measures every shipped
profile's machine in the slow run."""

from __future__ import annotations

import pytest

from edgevit.profiles.profile import load_profile
from edgevit.targets.mcu.runners.qemu import INSTRUCTIONS_PER_TICK
from tests.targets.mcu.runners.calibration import measure_instructions_per_tick
from tests.targets.mcu.runners.toolchain import needs_arm_qemu


@needs_arm_qemu
def test_default_machine_ticks_are_what_the_table_says(tmp_path):
    profile = load_profile("stm32f746-disco")
    measured = measure_instructions_per_tick(profile, tmp_path)
    assert measured == pytest.approx(INSTRUCTIONS_PER_TICK[profile.emulator.machine], rel=1e-3)
