"""The serial runner: a board running the artifact's UART firmware, over a serial port or a TCP socket.

    edgevit run DIR --runner serial --port /dev/ttyACM0 [--baud 115200] [--flash]     # bundled vectors
    edgevit run DIR --runner serial --port /dev/ttyACM0 --data fashion-mnist --count 10000   # streamed
    edgevit emulate DIR --port 5555 &  edgevit run DIR --runner serial --port socket://127.0.0.1:5555

The board speaks docs/serial-protocol.md. With `flash=True` the firmware is built for the board
and flashed first (targets/mcu/flash.py: the profile's `board.flash` tools). The runner then
sends HELLO (the board's `EV-READY` banner may have been printed before the port was opened, so
the runner never waits for it) and checks that the firmware was built for this artifact's input
and output sizes (another model's firmware: a clear error saying to flash). Bundled mode sends
`RUN <count>` and returns the EV text, which backend/run.py checks like every runner's output;
streamed mode (backend/stream_run.py) sends each test image in acknowledged frames.

What the ticks are comes from the HELLO reply (`board_reported`):

- DWT CYCCNT (the board firmware of a Cortex-M3/M4/M7/M33/M55 board): core cycles, so the
  result's latency is **measured** (`ticks_are_cycles`: cycles_per_inference, latency_ms at the
  profile's clock).
- SysTick from a board whose profile says `cycle_counter: systick` (a core without DWT), at the
  board's core clock: SysTick counts the processor clock, so these are core cycles too, measured.
- SysTick otherwise: the firmware built for the emulated board (QEMU under `-icount shift=0`;
  board firmware for a core with DWT reports DWT): executed instructions, exactly as the qemu
  runner counts them (INSTRUCTIONS_PER_TICK), so the latency is an estimate.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from edgevit.backend.errors import RunFailedError
from edgevit.backend.process import Tool
from edgevit.backend.runner import RunOutput, Stage
from edgevit.errors import UserInputError
from edgevit.targets.mcu.runners.mcu_runner import McuRunner
from edgevit.targets.mcu.runners.qemu import INSTRUCTIONS_PER_TICK, LATENCY_NOTE as QEMU_LATENCY_NOTE

DEFAULT_BAUD = 115200
BASE_TIMEOUT_S = 30.0
PER_VECTOR_S = 5.0  # a board runs in real time: tens of ms per inference, plus its line at the baud rate
DWT = "DWT CYCCNT"
SYSTICK = "SysTick"
PORT_HINT = ("the board's serial device (e.g. --port /dev/ttyACM0; `ls /dev/serial/by-id/` lists them) or "
             "socket://127.0.0.1:PORT for an emulated board started with `edgevit emulate DIR --port PORT`")


class SerialRunner(McuRunner):
    """A board on a serial port (or a socket:// URL) running the artifact's UART firmware."""

    name = "serial"
    description = "a board running the UART firmware, on --port (a serial device or socket://HOST:PORT)"
    build_dirs = ()

    def __init__(self, *, port: str | None = None, baud: int | None = None, flash: bool = False,
                 **options) -> None:
        """port: a serial device (/dev/ttyACM0) or pyserial URL (socket://127.0.0.1:5555), required;
        baud: the UART rate (default: the profile's board.uart.baud, else 115200; socket:// links
        ignore it); flash: build the board firmware and flash it (the profile's `board.flash` tools)
        before running."""
        super().__init__(**options)
        if baud is not None and baud <= 0:
            raise UserInputError(f"--baud must be a positive number of bits per second (got {baud})")
        self.port, self.baud, self.flash = port, baud, bool(flash)
        self.board_info = None
        self.ticks_are_cycles = False
        self.counts_instructions = False
        self.latency_note = "the board reported no ticks"

    @classmethod
    def supports_stream(cls) -> bool:
        """The serial runner streams test images to the board (`edgevit run --data`)."""
        return True

    def tools(self, profile) -> list[Tool]:
        """None to run (pyserial is a dependency); flashing checks its own tools (targets/mcu/flash.py)."""
        return []

    def check(self, artifact, profile) -> None:
        """UserInputError without a port; with flash, a profile that has no `board` section."""
        if not self.port:
            raise UserInputError(f"--runner serial needs --port: {PORT_HINT}")
        if self.flash and getattr(profile, "board", None) is None:
            raise UserInputError(f"--flash: profile {profile.name!r} describes no physical board (no `board:` section "
                                 "with its UART and flash tools); flash the board yourself, or add the section")
        super().check(artifact, profile)

    def default_timeout(self, artifact, profile, count: int) -> float:
        """30 s plus 5 s per vector (the board runs in real time; QEMU's UART firmware is faster)."""
        return BASE_TIMEOUT_S + PER_VECTOR_S * count

    def source(self, profile) -> str:
        """e.g. "serial /dev/ttyACM0" or "serial socket://127.0.0.1:5555"."""
        return f"serial {self.port}"

    def machine(self, profile) -> str | None:
        """The profile's board (its description names it), or the emulated board for SysTick-at-another-clock."""
        if self.counts_instructions:
            return profile.emulator.machine
        return profile.name

    @contextmanager
    def open_frames(self, artifact, profile, stage: Stage) -> Iterator:
        """Flash first (with flash=True), open the port and yield a FrameClient on it (closed after)."""
        from edgevit.backend.hil.link import FrameClient
        from edgevit.backend.hil.transport import open_link

        if not self.port:
            raise UserInputError(f"--runner serial needs --port: {PORT_HINT}")
        if self.flash:
            from edgevit.targets.mcu.flash import flash_artifact

            stage(f"building and flashing the firmware for {profile.name}")
            flash_artifact(artifact, profile, stage=stage)
        stage(f"opening {self.port}")
        with open_link(self.port, self.baud or _board_baud(profile)) as link:
            yield FrameClient(link)

    def execute(self, artifact, profile, count: int, timeout: float, stage: Stage) -> RunOutput:
        """Run the first `count` bundled vectors (text mode) and return the board's EV text."""
        vectors = artifact.load_vectors()
        with self.open_frames(artifact, profile, stage) as client:
            stage(f"asking the board on {self.port} what it runs")
            info = client.hello()
            check_bundled(info, int(vectors.inputs[0].nbytes), vectors.output_bytes, count, self.source(profile))
            self.board_reported(info, profile)
            stage(f"running {count} bundled vector{'s' if count != 1 else ''} on the board")
            t0 = time.perf_counter()
            text = client.run_text(count, timeout)
            return RunOutput(text, self.source(profile), time.perf_counter() - t0)

    def board_reported(self, info, profile) -> None:
        """Decide what the board's ticks are from its HELLO reply (see the module docstring)."""
        self.board_info = info
        core = _core_clock(profile)
        clock = f"{core / 1e6:g} MHz"
        self.ticks_are_cycles = self.counts_instructions = False
        if info.tick_kind == DWT:
            self.ticks_are_cycles, self.tick_name = True, "DWT cycle"
            reported = info.clock_hz or core
            at = (f"at the profile's {clock} clock" if reported == core else
                  f"at the {reported / 1e6:g} MHz the board reports, not board.core_clock_hz's {clock} (its "
                  "firmware runs another clock: board.clock's set-up fell back to the reset clock, or the firmware "
                  "was built without it; docs/hil.md)")
            self.latency_note = (f"measured: DWT CYCCNT core cycles on the board, {at} "
                                 "(caches, flash wait states and the pipeline included)")
        elif info.tick_kind == SYSTICK and _board_counter(profile) == "systick" and info.clock_hz == core:
            self.ticks_are_cycles, self.tick_name = True, "SysTick cycle"
            self.latency_note = f"measured: SysTick counting the board's {clock} core clock"
        elif info.tick_kind == SYSTICK:
            self.counts_instructions, self.tick_name = True, "SysTick tick"
            self.latency_note = QEMU_LATENCY_NOTE
        else:
            self.tick_name = "tick"
            self.latency_note = f"the board's firmware reports no ticks (tick kind {info.tick_kind!r})"

    def cycle_clock_hz(self, profile) -> float:
        """The core clock the board's firmware reported in its HELLO reply (what its DWT / SysTick cycles
        count at: board.clock's, or the reset clock when its set-up fell back), else board.core_clock_hz."""
        info = self.board_info
        return float(info.clock_hz) if info is not None and info.clock_hz else float(_core_clock(profile))

    def instructions_per_tick(self, profile) -> float | None:
        """For an emulated board's SysTick: the qemu runner's calibrated figure (None otherwise)."""
        return INSTRUCTIONS_PER_TICK.get(profile.emulator.machine) if self.counts_instructions else None

    def uncounted_reason(self, profile, ticks: list[int]) -> str | None:
        """Why the ticks give no instruction count (None when they do)."""
        if self.board_info is not None and not self.counts_instructions:
            return self.latency_note
        if self.instructions_per_tick(profile) is None:
            return (f"the emulated board {profile.emulator.machine!r} has no calibrated instructions-per-tick figure "
                    "(edgevit/targets/mcu/runners/qemu.py)")
        if not any(ticks):
            return "the firmware reported 0 SysTick ticks"
        return None


def check_bundled(info, input_bytes: int, output_bytes: int, count: int, where: str) -> None:
    """RunFailedError when the board's firmware (HELLO reply) was built for other sizes than the artifact
    (another model) or bundles fewer than `count` vectors (another artifact)."""
    from edgevit.backend.stream_run import check_board

    check_board(info, input_bytes, output_bytes, where)
    if info.bundled < count:
        raise RunFailedError(f"{where}: the board's firmware bundles {info.bundled} test vectors but {count} were "
                             "asked for: it was built from another artifact. Flash this one (`edgevit flash DIR`, "
                             "or `edgevit run ... --flash`), or stream the images with --data")


def _board_baud(profile) -> int:
    board = getattr(profile, "board", None)
    return int(board.uart.baud) if board is not None else DEFAULT_BAUD


def _board_counter(profile) -> str | None:
    board = getattr(profile, "board", None)
    return getattr(board, "cycle_counter", None)


def _core_clock(profile) -> int:
    board = getattr(profile, "board", None)
    core = getattr(board, "core_clock_hz", None) if board is not None else None
    return int(core or profile.clock_hz)
