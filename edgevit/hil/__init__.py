"""edgevit.hil: run artifacts on runners (host gcc, QEMU boards, later real boards over a UART)
and check their outputs against the reference interpreter's (see DESIGN.md, docs/mcu-backend.md).

Public entry points: `run_artifact` / `print_result` (run.py, behind `edgevit run`),
`load_artifact` (artifact.py), `get_runner` / `runner_names` / `Runner` (runner.py),
`parse_output` (protocol.py).
"""

from edgevit.hil.artifact import Artifact, load_artifact
from edgevit.hil.protocol import DeviceRun, ProtocolError, parse_output
from edgevit.hil.run import print_result, run_artifact
from edgevit.hil.runner import Runner, RunOutput, get_runner, register_runner, runner_names

__all__ = ["Artifact", "DeviceRun", "ProtocolError", "RunOutput", "Runner", "get_runner", "load_artifact",
           "parse_output", "print_result", "register_runner", "run_artifact", "runner_names"]
