"""The serial runner (real boards over a UART): protocol fixed, transport not implemented yet.

Protocol v1 (what a board runs; the host side is `read_ev_text` + protocol.parse_output):

1. The artifact's firmware is built with the board's own startup/flash layout and
   `-DEDGEVIT_TRANSPORT_UART`, so main.c writes its lines to the board's UART (115200 8N1)
   instead of semihosting; it is flashed with the board's tool (st-flash / openocd / nrfjprog;
   a future profile field `flash:` names it).
2. After reset the board prints `EV-READY <bundled count>` and waits for one line from the host:
   `RUN <count>\\n`. It then prints exactly the lines of the EV protocol (edgevit/backend/protocol.py):
   `EV <index> <ticks> <hex bytes>` per vector and `EV-END <count>`, `\\r\\n`-terminated.
   Ticks are DWT CYCCNT cycles on silicon (unlock DWT first: LAR = 0xC5ACCE55), so on a real
   board the runner reports measured cycles, not an instruction estimate.
3. The host reads lines until `EV-END` or its deadline; a line that fails the EV grammar is a
   garbled byte (real UARTs drop bytes, QEMU never does) and fails the run with the tail.

Streaming inputs from the host (instead of compiled-in vectors) will use stop-and-wait frames
`0xE5 seq len payload crc16` of at most 256 bytes, each acknowledged, because real UARTs overrun
where QEMU's never do.

`SerialRunner` fits the Runner interface (`--runner serial`) and raises
SerialNotImplementedError when used.
"""

from __future__ import annotations

import time
from typing import Callable

from edgevit.errors import UserInputError
from edgevit.backend.errors import RunTimeoutError, output_tail
from edgevit.backend.process import Tool
from edgevit.backend.runner import RunOutput
from edgevit.targets.mcu.runners.mcu_runner import McuRunner, mcu_tool

DEFAULT_BAUD = 115200
READY = "EV-READY"
END = "EV-END"


class SerialNotImplementedError(UserInputError):
    """The serial runner is specified but not implemented yet. Exit code 2."""


def run_request(count: int) -> bytes:
    """The line the host sends after EV-READY to run the first `count` vectors."""
    return f"RUN {int(count)}\n".encode("ascii")


def read_ev_text(readline: Callable[[], bytes], timeout: float, clock: Callable[[], float] = time.monotonic) -> str:
    """Read lines (bytes, e.g. pyserial's `Serial.readline`, which returns b"" on its own read
    timeout) until one starts with EV-END; returns the text. RunTimeoutError with the tail of what
    arrived when `timeout` seconds pass first."""
    deadline, lines = clock() + timeout, []
    while clock() < deadline:
        raw = readline()
        if not raw:
            continue
        line = raw.decode("ascii", errors="replace").rstrip("\r\n")
        lines.append(line)
        if line.split()[:1] == [END]:
            return "\n".join(lines) + "\n"
    raise RunTimeoutError(f"the board sent no {END} line within {timeout:.0f} s; last lines received:\n"
                          f"{output_tail(chr(10).join(lines))}")


class SerialRunner(McuRunner):
    """A real board on a serial port (not implemented yet: raises SerialNotImplementedError)."""

    name = "serial"
    description = "a real board over a UART (not implemented yet)"

    def __init__(self, *, port: str | None = None, baud: int = DEFAULT_BAUD, **options) -> None:
        """port: e.g. /dev/ttyACM0; baud: the UART rate (115200)."""
        super().__init__(**options)
        self.port, self.baud = port, baud

    def tools(self, profile) -> list[Tool]:
        """The profile's cross compiler and make (flashing tools are board-specific)."""
        return [mcu_tool("make", "to build the firmware"), mcu_tool(profile.toolchain.cc, "the cross compiler")]

    def check(self, artifact, profile) -> None:
        """Always raises SerialNotImplementedError (before any tool is looked up)."""
        self._not_implemented()

    def execute(self, artifact, profile, count: int, timeout: float, stage) -> RunOutput:
        """Would flash the board, send `RUN count` and read the EV lines; raises for now."""
        self._not_implemented()

    def _not_implemented(self):
        raise SerialNotImplementedError(
            "the serial runner (real boards over a UART) is not implemented yet; its protocol is fixed in "
            "edgevit/targets/mcu/runners/serial.py. Use --runner qemu (emulated board) or --runner host")
