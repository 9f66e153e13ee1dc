"""`edgevit emulate`: the command is target-neutral; targets without an emulated serial board refuse clearly."""

from __future__ import annotations

import pytest

from edgevit.backend.target import get_target
from edgevit.errors import UserInputError


def test_a_target_without_an_emulated_board_refuses() -> None:
    with pytest.raises(UserInputError, match="the cpu target has no emulated board with a serial port"):
        get_target("cpu").serve_emulated(None, 5555)


def test_the_mcu_target_checks_its_options() -> None:
    with pytest.raises(UserInputError, match="takes the options ready and stage"):
        get_target("mcu").serve_emulated(None, 0, baud=9600)


def test_the_command_is_registered() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "edgevit", "emulate", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "--port" in result.stdout
