"""The `EV` output protocol of the artifact's test main (docs/mcu-backend.md), parsed strictly.

The test main prints, for each vector it runs, in order:

    EV <index> <ticks> <hex bytes of the output>

(`index` from 0, decimal; `ticks` the device timer's ticks `edgevit_run` took, decimal, 0 where
nothing is timed (what a tick is, is the runner's: `Runner.tick_name`, e.g. SysTick ticks on an MCU);
the output's bytes in memory order, two hex digits each, either contiguous or separated by
spaces) and finally `EV-END <count>`; when `edgevit_run` fails it prints `EV-ERROR <index> <code>` and
exits with 1 (see describe_ev_error). Lines whose first word is neither `EV` nor `EV-END` (a
debug printf, an emulator's warning) are ignored. Everything else that looks like the protocol but is
not — a short or long output, a bad number, an index out of order, a missing `EV-END`, a count
that disagrees — raises ProtocolError with the offending line and the tail of the output.
The same parser serves every transport (a program's stdout, an emulator's semihosting, a board's
UART: `\\r\\n` line ends are fine).

Per-step profile (opt-in: firmware built with `-DEDGEVIT_PROFILE_STEPS`, see backend/cdriver.py):
right after each `EV` line the program prints

    EV-STEPS <index> <ticks of plan step 0> <ticks of step 1> ...

(`index` the EV line's; every such line has one number per plan step). They are exposed as
`DeviceRun.step_ticks` (one tuple per vector, or () when the program printed none); a run that
prints them for some vectors but not others, out of order or with differing lengths is a
ProtocolError. Normal builds print none and parse as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgevit.backend.errors import RunFailedError, output_tail

_DECIMAL = re.compile(r"^[0-9]+$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})*$")


class ProtocolError(RunFailedError):
    """Device output that does not follow the EV protocol. Exit code 1."""


@dataclass(frozen=True)
class VectorOutput:
    """One `EV` line: the vector index, the timer ticks it took and the raw output bytes."""

    index: int
    ticks: int
    data: bytes


@dataclass(frozen=True)
class DeviceRun:
    """A complete, well-formed run: one VectorOutput per vector in order, and the EV-END count."""

    vectors: tuple[VectorOutput, ...]
    end_count: int
    step_ticks: tuple[tuple[int, ...], ...] = ()  # per vector, ticks per plan step (EV-STEPS), or ()

    @property
    def ticks(self) -> list[int]:
        """Timer ticks per vector, in order."""
        return [v.ticks for v in self.vectors]


def describe_ev_error(text: str) -> str | None:
    """"edgevit_run returned <code> on vector <index>" from an `EV-ERROR <index> <code>` line, if any."""
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["EV-ERROR"] and len(words) == 3:
            return f"edgevit_run returned {words[2]} on vector {words[1]}"
    return None


def format_ev_line(index: int, ticks: int, data: bytes) -> str:
    """The `EV` line for one vector (what the test main prints), without the newline."""
    return f"EV {index} {ticks} {bytes(data).hex()}"


def _fail(source: str, lineno: int | None, reason: str, line: str | None, text: str) -> ProtocolError:
    where = f"{source}, line {lineno}" if lineno is not None else source
    shown = f": {line.strip()[:200]!r}" if line is not None else ""
    return ProtocolError(f"{where}: {reason}{shown}. The program's output does not follow the EV protocol "
                         f"(docs/mcu-backend.md); last lines of its output:\n{output_tail(text)}")


def _parse_vector(words: list[str], output_bytes: int | None) -> tuple[VectorOutput | None, str]:
    """A VectorOutput from the words of an `EV` line, or (None, reason)."""
    if len(words) < 3:
        return None, "an EV line needs an index, a tick count and the output bytes"
    index, ticks, hexwords = words[1], words[2], words[3:]
    if not _DECIMAL.match(index) or not _DECIMAL.match(ticks):
        return None, "index and ticks must be non-negative decimal integers"
    hexdigits = "".join(hexwords)
    if len(hexwords) > 1 and any(len(w) != 2 for w in hexwords):
        return None, "space-separated output bytes must be two hex digits each"
    if not _HEX.match(hexdigits):
        return None, "the output bytes are not an even number of hex digits"
    data = bytes.fromhex(hexdigits)
    if output_bytes is not None and len(data) != output_bytes:
        return None, f"the output has {len(data)} bytes, expected {output_bytes} (EDGEVIT_OUTPUT_SIZE x element size)"
    return VectorOutput(int(index), int(ticks), data), ""


def _parse_steps(words: list[str], vectors: int, steps: list[tuple[int, ...]]) -> tuple[tuple[int, ...] | None, str]:
    """The ticks of an `EV-STEPS` line following the `vectors`-th EV line, or (None, reason)."""
    if len(words) < 3 or not all(_DECIMAL.match(w) for w in words[1:]):
        return None, "an EV-STEPS line needs the vector index and one decimal tick count per plan step"
    if int(words[1]) != vectors - 1 or len(steps) != vectors - 1:
        return None, (f"EV-STEPS for vector {words[1]} must follow that vector's EV line once "
                      f"(EV lines so far: {vectors}, EV-STEPS lines: {len(steps)})")
    ticks = tuple(int(w) for w in words[2:])
    if steps and len(ticks) != len(steps[0]):
        return None, f"EV-STEPS has {len(ticks)} steps, earlier lines had {len(steps[0])}"
    return ticks, ""


def parse_output(text: str, count: int, output_bytes: int | None = None, source: str = "output") -> DeviceRun:
    """Parse a run's output `text`: exactly `count` EV lines (indices 0..count-1, each with
    `output_bytes` bytes when given) followed by `EV-END count`, optionally each followed by its
    EV-STEPS line (all or none); ProtocolError otherwise."""
    vectors: list[VectorOutput] = []
    steps: list[tuple[int, ...]] = []
    end_count: int | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0] not in ("EV", "EV-END", "EV-STEPS"):
            continue
        if end_count is not None:
            raise _fail(source, lineno, "output after EV-END", line, text)
        if words[0] == "EV-STEPS":
            ticks, reason = _parse_steps(words, len(vectors), steps)
            if ticks is None:
                raise _fail(source, lineno, reason, line, text)
            steps.append(ticks)
            continue
        if steps and len(steps) != len(vectors):
            raise _fail(source, lineno, f"vector {len(vectors) - 1} has no EV-STEPS line but earlier vectors had",
                        line, text)
        if words[0] == "EV-END":
            if len(words) != 2 or not _DECIMAL.match(words[1]):
                raise _fail(source, lineno, "EV-END must be followed by one decimal count", line, text)
            end_count = int(words[1])
            continue
        vector, reason = _parse_vector(words, output_bytes)
        if vector is None:
            raise _fail(source, lineno, reason, line, text)
        if vector.index != len(vectors):
            raise _fail(source, lineno, f"expected vector index {len(vectors)}, got {vector.index}", line, text)
        vectors.append(vector)
    if end_count is None:
        got = f"after {len(vectors)} of {count} EV lines" if vectors else "and no EV line"
        raise _fail(source, None, f"the output ended without EV-END {got} (crash, hang or wrong program?)",
                    None, text)
    if end_count != len(vectors) or end_count != count:
        raise _fail(source, None, f"EV-END says {end_count} vectors, {len(vectors)} EV lines were printed and "
                    f"{count} were requested", None, text)
    if steps and len(steps) != len(vectors):
        raise _fail(source, None, f"{len(steps)} EV-STEPS lines for {len(vectors)} vectors (one per vector expected)",
                    None, text)
    return DeviceRun(tuple(vectors), end_count, tuple(steps))
