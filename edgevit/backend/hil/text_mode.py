"""Text mode of the serial protocol (docs/serial-protocol.md, section 1): the board's banner, the
`RUN <count>` request and reading the `EV` lines up to `EV-END` with a deadline.

    EV-READY <bundled count> <input bytes> <output bytes> <protocol version>     (board, after reset)
    RUN <count>                                                                  (host)
    EV <index> <ticks> <hex> ... EV-END <count>                                  (board)

The EV lines themselves are parsed by edgevit/backend/protocol.py, as for every other runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from edgevit.backend.errors import RunTimeoutError, output_tail

READY = "EV-READY"
END = "EV-END"
MAX_LINE = 65536  # an EV line carries the output in hex: far below this; longer means garbage


@dataclass(frozen=True)
class Banner:
    """The `EV-READY` line: bundled vectors, input and output bytes, protocol version (fields
    missing in protocol v1 banners are None)."""

    bundled: int
    input_bytes: int | None = None
    output_bytes: int | None = None
    version: int | None = None


def parse_banner(line: str) -> Banner | None:
    """The Banner of an `EV-READY ...` line, or None when `line` is not one."""
    words = line.split()
    if words[:1] != [READY] or len(words) < 2 or not all(w.isdigit() for w in words[1:5]):
        return None
    numbers = [int(w) for w in words[1:5]] + [None] * (5 - len(words[1:5]))
    return Banner(*numbers[:4])


def run_request(count: int) -> bytes:
    """The line the host sends to run the first `count` bundled vectors: b"RUN <count>\\n"."""
    return f"RUN {int(count)}\n".encode("ascii")


def read_ev_text(readline: Callable[[], bytes], timeout: float, clock: Callable[[], float] = time.monotonic) -> str:
    """Read lines (bytes, e.g. pyserial's `Serial.readline`, which returns b"" on its own read
    timeout) until one starts with EV-END; returns the text (every line, `\\n`-terminated).
    RunTimeoutError with the tail of what arrived when `timeout` seconds pass first."""
    deadline, lines = clock() + timeout, []
    while clock() < deadline:
        raw = readline()
        if not raw:
            continue
        line = raw.decode("ascii", errors="replace").rstrip("\r\n")
        lines.append(line)
        if line.split()[:1] == [END]:
            return "\n".join(lines) + "\n"
    raise RunTimeoutError(f"the board sent no {END} line within {timeout:g} s; last lines received:\n"
                          f"{output_tail(chr(10).join(lines))}")


class LineReader:
    """Lines from a ByteLink: `readline()` returns one line including its `\\n`, or b"" when none
    completed within `poll` seconds (bytes of a partial line are kept for the next call)."""

    def __init__(self, link, poll: float = 0.05) -> None:
        """link: a ByteLink (anything with read(max_bytes, timeout)); poll: seconds per readline."""
        self.link, self.poll = link, poll
        self.buffer = bytearray()

    def readline(self) -> bytes:
        """The next complete line, or b"" after `poll` seconds without one."""
        deadline = time.monotonic() + self.poll
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self.buffer[:newline + 1])
                del self.buffer[:newline + 1]
                return line
            if len(self.buffer) > MAX_LINE:  # no newline in 64 KiB: hand it over as a line so the caller fails
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            self.buffer += self.link.read(4096, left)
