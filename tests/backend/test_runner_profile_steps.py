"""The profile_steps runner option (per-step times for `edgevit bench`): accepted by runners that can
time plan steps, refused with the ones that can by the others; what a step tick is worth."""

from __future__ import annotations

import pytest

from edgevit.backend.runner import get_runner
from edgevit.backend.target import get_target
from edgevit.errors import UserInputError
from edgevit.profiles.profile import load_profile


def test_runners_that_can_time_steps_take_the_option():
    stm = load_profile("stm32f746-disco")
    qemu = get_runner("qemu", get_target(stm), profile_steps=True)
    assert qemu.profile_steps and qemu.step_tick_seconds(stm) == pytest.approx(40.0 / 216e6)
    assert "QEMU" in qemu.step_note(stm)
    host = get_runner("host", get_target(load_profile("host")), profile_steps=True, bench_runs=0)
    assert host.profile_steps and host.step_tick_seconds(load_profile("host")) == 1e-9
    assert not get_runner("qemu", get_target(stm)).profile_steps


def test_runners_that_cannot_refuse_it_naming_those_that_can():
    with pytest.raises(UserInputError) as e:
        get_runner("host", get_target(load_profile("stm32f746-disco")), profile_steps=True)
    assert "the host runner cannot time plan steps" in str(e.value) and "qemu" in str(e.value)
