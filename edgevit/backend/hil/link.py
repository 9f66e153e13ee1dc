"""The host side of the serial protocol (docs/serial-protocol.md): a stop-and-wait client that
delivers every frame exactly once over a link that drops, duplicates, corrupts and delays bytes.

    client = FrameClient(open_link("socket://127.0.0.1:5555"))
    info = client.hello()                               # BoardInfo: sizes, max payload, tick kind
    result = client.infer(7, image_bytes, run_timeout=5.0)   # InferResult(index=7, status, ticks, output)
    text = client.run_text(10, timeout=30.0)            # text mode: the EV lines of 10 bundled vectors

How it stays exactly-once: one frame in flight; each new frame takes the next seq (mod 256); an
answer counts only with the awaited seq and type and, for OUTPUT, the input index that was sent
and the output size of the HELLO reply. Anything else is discarded (a stale duplicate) or makes
the client send again. On a timeout or a bad frame (CRC) the same frame goes out again with the
same seq: the board recognises the repeat and resends its cached answer without acting again,
so an INPUT chunk is written once and a RUN runs once. A CRC-valid answer with the right seq
that is still wrong (another input index: the board answered a previous session's RUN from its
cache) is resent with a new seq, so the board acts on it. After `retries` resends of a message
the client raises LinkError naming the frame, the seq and what arrived instead.

Three adaptations keep a noisy line usable (none changes what the board sees as a frame):
- retransmission timers in the manner of TCP (RFC 6298): a smoothed round trip per kind of
  exchange (acknowledged frames, RUN) sampled only from first attempts (Karn), never below
  `min_timeout`, doubled on each resend, capped by `ack_timeout` (RUN: the caller's
  `run_timeout`); before the first sample the cap itself is the timeout;
- a line flush after 3 timeouts in a row with nothing received: max_payload + 2 zero bytes
  before the resend. A corrupted length byte makes the board wait for bytes that never come and
  swallow the resends behind it until its byte timeout (50 ms, but in QEMU's instruction-counted
  time: half a second and more of wall time); the zeros complete that frame, its CRC fails, and
  the board scans the swallowed bytes again and answers them;
- INPUT chunks of at most max_payload - 4 bytes (the HELLO reply), halved after a chunk that got
  no answer (a frame of n bytes survives a byte error rate p with probability (1-p)^n: at 1 %
  a 795-byte frame arrives intact 0.03 % of the time, a 40-byte one 67 %) down to `min_chunk`
  and doubled again after 8 chunks in a row that went through at the first attempt. A shorter
  chunk is a new frame (new seq; rewriting bytes already stored is harmless) with its own
  `retries`, so a dead board is given up after retries + log2(max/min chunk) sends at most.
At 0 % faults nothing adapts: one INPUT frame per 28x28 image, ~6 % protocol overhead.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace

from edgevit.backend.errors import RunFailedError
from edgevit.backend.hil.frames import (ACK, HELLO, HELLO_REPLY, INPUT, MAX_PAYLOAD, OUTPUT, OUTPUT_HEADER, OVERHEAD,
                                        PROTOCOL_VERSION, RUN, TYPE_NAMES, BoardInfo, Frame, FrameDecoder,
                                        encode_frame, parse_hello_reply, parse_output)
from edgevit.backend.hil.text_mode import LineReader, read_ev_text, run_request
from edgevit.errors import UserInputError

READ_SIZE = 4096
GROW_AFTER = 8  # first-attempt chunks in a row before the chunk size doubles again
FLUSH_AFTER = 3  # silent timeouts in a row before a resend is preceded by a line flush


class LinkError(RunFailedError):
    """The board gave no valid answer to a frame after every retry. Exit code 1."""


@dataclass
class LinkStats:
    """What crossed the link. payload_bytes_* count application data once (the input bytes of
    acknowledged INPUT chunks, the output bytes of accepted OUTPUTs); bytes_* count every byte
    written or read, retransmissions and garbage included."""

    frames_sent: int = 0
    frames_received: int = 0
    retransmissions: int = 0
    bad_frames: int = 0
    stale_frames: int = 0
    late_answers: int = 0  # ACKs of chunks given up on that came late (spurious timeouts)
    timeouts: int = 0
    flushes: int = 0  # line flushes sent after silent timeouts (FrameClient._flush_line)
    payload_bytes_sent: int = 0
    payload_bytes_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def overhead(self) -> float:
        """The protocol's share of the bytes on the line: 1 - payload / all bytes (0.0 before any traffic)."""
        total = self.bytes_sent + self.bytes_received
        return 1.0 - (self.payload_bytes_sent + self.payload_bytes_received) / total if total else 0.0


@dataclass(frozen=True)
class InferResult:
    """One streamed inference: the host's input index, edgevit_run's status (0 ok), the board's
    ticks (BoardInfo.tick_kind says which timer) and the output bytes in memory order."""

    index: int
    status: int
    ticks: int
    output: bytes


class RetransmitTimer:
    """A retransmission timeout from measured round trips (RFC 6298: srtt + 4 rttvar, at least 2 srtt)."""

    def __init__(self, floor: float) -> None:
        """floor: the smallest timeout (seconds) ever used once round trips are known."""
        self.floor = floor
        self.srtt: float | None = None
        self.rttvar = 0.0

    def timeout(self, attempt: int, ceiling: float) -> float:
        """Seconds to wait for the answer to attempt `attempt` (0 first): doubles per resend, at most `ceiling`."""
        # never below twice the smoothed round trip: an emulated board on a busy host answers late in
        # bursts, and a spurious resend of a whole INPUT chunk costs more than waiting (overhead target)
        base = ceiling if self.srtt is None else max(self.floor, self.srtt + 4 * self.rttvar, 2 * self.srtt)
        return min(ceiling, base * 2 ** attempt)

    def sample(self, rtt: float) -> None:
        """Account for one round trip (seconds) of a frame that was sent only once."""
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt


@dataclass
class _Suspect:
    """A frame that timed out, perhaps spuriously: the answer type awaited, when it was first sent,
    the timer to teach, the INPUT chunk size given up on (0: none) and when an answer came (None:
    given up on without one)."""

    answer_type: int
    sent_at: float
    timer: RetransmitTimer
    chunk: int = 0
    answered_at: float | None = None


class _Attempts:
    """What happened while one message was being delivered: for LinkError's message."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_sent_at = self.started  # when the current frame was first sent
        self.count = 0  # frames sent for this message
        self.silent = 0  # timeouts in a row without a byte arriving (since the last flush)
        self.spent = 0  # of those, sends counted against `retries` (reset when an INPUT chunk shrinks)
        self.notes: dict[str, int] = {}
        self.tail = b""
        self.received = 0

    def note(self, event: str) -> None:
        self.notes[event] = self.notes.get(event, 0) + 1

    def bytes(self, data: bytes) -> None:
        self.received += len(data)
        self.tail = (self.tail + data)[-48:]

    def summary(self) -> str:
        if not self.received:
            return "nothing arrived"
        events = ", ".join(f"{n} × {event}" for event, n in self.notes.items()) or "no complete frame"
        return f"{self.received} bytes arrived ({events}); the last ones: {self.tail!r}"


class FrameClient:
    """Stop-and-wait frames over a ByteLink (see the module docstring): hello, infer, run_text, stats."""

    def __init__(self, link, *, ack_timeout: float = 0.5, retries: int = 8, min_timeout: float = 0.02,
                 min_chunk: int = 8) -> None:
        """link: a ByteLink (transport.open_link); ack_timeout: the longest wait (s) for the answer to
        HELLO or an INPUT chunk; retries: resends of one message before LinkError; min_timeout: the
        shortest adaptive wait (s); min_chunk: the smallest INPUT chunk (bytes) on a noisy line."""
        if retries < 0 or ack_timeout <= 0 or min_chunk < 1:
            raise ValueError("FrameClient needs retries >= 0, ack_timeout > 0 and min_chunk >= 1")
        self.link, self.ack_timeout, self.retries = link, ack_timeout, retries
        self.min_chunk = min_chunk
        self.stats = LinkStats()
        self.info: BoardInfo | None = None
        self._decoder = FrameDecoder()
        self._inbox: deque[Frame] = deque()
        self._seq = 0
        self._rejected = 0
        self._ack_timer = RetransmitTimer(min(min_timeout, ack_timeout))
        self._run_timer = RetransmitTimer(min_timeout)
        self._chunk = MAX_PAYLOAD - 4
        self._clean_chunks = 0
        # frames whose timeout may have been spurious, by seq: a late answer proves it (_late_answer)
        self._suspects: dict[int, _Suspect] = {}

    # --- the three requests -------------------------------------------------------------------

    def hello(self) -> BoardInfo:
        """Ask the board what it was built with (HELLO); BoardInfo. LinkError when it does not answer
        or speaks another protocol version."""
        reply = self._deliver(HELLO, lambda: b"", HELLO_REPLY, self._ack_timer, self.ack_timeout, "HELLO",
                              check=_check_hello)
        info = parse_hello_reply(reply.payload)
        if info.version != PROTOCOL_VERSION:
            raise LinkError(f"the board on {self.link.name} speaks serial protocol version {info.version}; this "
                            f"edgevit speaks version {PROTOCOL_VERSION}: build and flash the artifact's firmware again")
        self.info = info
        self._chunk = info.max_payload - 4
        return info

    def infer(self, index: int, data: bytes, run_timeout: float) -> InferResult:
        """Stream one input (`data`: exactly the board's input bytes) as acknowledged INPUT chunks,
        then RUN it and return the OUTPUT for `index` (0..2**32-1). `run_timeout`: the longest wait
        (s) for the inference. LinkError after the retries; UserInputError for a wrong input size."""
        info = self.info or self.hello()
        data = bytes(data)
        if len(data) != info.input_bytes:
            raise UserInputError(f"input {index} has {len(data)} bytes but the firmware on {self.link.name} "
                                 f"expects {info.input_bytes} (its HELLO reply): the board runs another model; "
                                 f"flash this artifact's firmware (--flash)")
        if not 0 <= index < 2 ** 32:
            raise ValueError(f"input index {index} does not fit the protocol's u32")
        self._send_input(data)
        reply = self._deliver(RUN, lambda: struct.pack("<I", index), OUTPUT, self._run_timer, run_timeout,
                              f"RUN of input {index}", check=lambda f: self._check_output(f, index))
        _, status, ticks, output = parse_output(reply.payload)
        self.stats.payload_bytes_received += len(output)
        return InferResult(index, status, ticks, output)

    def run_text(self, count: int, timeout: float) -> str:
        """Text mode: send `RUN count` and return the board's lines up to and including `EV-END`
        (parse them with edgevit.backend.protocol). RunTimeoutError when EV-END does not come
        within `timeout` seconds."""
        if count < 1 or (self.info is not None and count > self.info.bundled):
            raise UserInputError(f"cannot run {count} bundled vectors on {self.link.name}: the firmware has "
                                 f"{self.info.bundled if self.info else 'at least 1'} (ask for 1..that many)")
        self._discard_pending()
        self._send_bytes(run_request(count))
        reader = LineReader(SimpleNamespace(read=self._read), poll=min(0.1, timeout))
        return read_ev_text(reader.readline, timeout)

    # --- delivery -----------------------------------------------------------------------------

    def _send_input(self, data: bytes) -> None:
        """Every byte of `data` as INPUT chunks, each acknowledged; chunks shrink on a lossy line."""
        offset = 0
        while offset < len(data):
            attempts = _Attempts()
            while True:
                size = min(self._chunk, len(data) - offset)
                can_shrink = size > self.min_chunk
                payload = struct.pack("<I", offset) + data[offset:offset + size]
                answer = self._deliver(INPUT, lambda: payload, ACK, self._ack_timer, self.ack_timeout,
                                       f"INPUT chunk of {size} bytes at offset {offset}",
                                       attempts=attempts, give_up_on_timeout=can_shrink)
                if answer is not None:
                    break
                if attempts.count == 1:
                    self._suspect((self._seq - 1) % 256, _Suspect(ACK, attempts.first_sent_at, self._ack_timer, size))
                self._chunk = max(self.min_chunk, size // 2)  # no answer: a shorter frame has better odds
                self._clean_chunks = 0
                attempts.spent = 0  # the shorter frame gets its own retries: at most log2(max/min) more sends
            if attempts.count == 1:
                self._clean_chunks += 1
                if self._clean_chunks >= GROW_AFTER and self.info and self._chunk < self.info.max_payload - 4:
                    self._chunk = min(self.info.max_payload - 4, self._chunk * 2)
                    self._clean_chunks = 0
            else:
                self._clean_chunks = 0
            self.stats.payload_bytes_sent += size
            offset += size

    def _deliver(self, ftype: int, make_payload, expect: int, timer: RetransmitTimer, ceiling: float, what: str, *,
                 check=None, attempts: _Attempts | None = None, give_up_on_timeout: bool = False) -> Frame | None:
        """Send one message until its answer arrives (the Frame). Resends on timeout or a bad frame
        (same seq), with a new seq after a CRC-valid but wrong answer. With give_up_on_timeout,
        returns None after a timeout so that the caller can send a shorter message instead.
        LinkError once `retries` resends are spent (counted in `attempts.spent`)."""
        attempts = attempts or _Attempts()
        seq, frame, sends = None, b"", 0
        while True:
            if attempts.spent > self.retries:
                raise self._give_up(what, seq, attempts)
            if seq is None:
                seq = self._take_seq()
                frame, sends = encode_frame(ftype, seq, make_payload()), 0
            flushed = 0
            if attempts.count:
                self.stats.retransmissions += 1
                if attempts.silent >= FLUSH_AFTER:
                    flushed, attempts.silent = self._flush_line(), 0
            attempts.count += 1
            attempts.spent += 1
            sends += 1
            sent_at, received_before = time.monotonic(), attempts.received
            if sends == 1:
                attempts.first_sent_at = sent_at
            self._send_frame(frame)
            line_time = self.link_byte_time() * (flushed + len(frame) + OVERHEAD + _answer_size(expect, self.info))
            answer, outcome = self._await(seq, expect, check, line_time + timer.timeout(attempts.spent - 1, ceiling),
                                          attempts)
            if answer is not None:
                if sends == 1:  # Karn: a frame sent twice gives no round trip...
                    timer.sample(max(0.0, time.monotonic() - sent_at - line_time))
                else:  # ...unless a second answer comes: then this one answered the first send
                    self._suspect(seq, _Suspect(expect, attempts.first_sent_at, timer, answered_at=time.monotonic()))
                return answer
            if outcome == "timeout":
                self.stats.timeouts += 1
                attempts.silent = attempts.silent + 1 if attempts.received == received_before else 0
                if give_up_on_timeout:
                    return None
                continue
            attempts.silent = 0
            if outcome == "wrong":
                seq = None  # the board answered from its cache: only a new seq makes it act

    def _await(self, seq: int, expect: int, check, timeout: float, attempts: _Attempts) -> tuple[Frame | None, str]:
        """Wait up to `timeout` s for the answer to `seq`: (frame, "ok"), or (None, why) with why one
        of "timeout", "bad" (a frame failed its CRC: resend now) and "wrong" (right seq, wrong answer)."""
        deadline = time.monotonic() + timeout
        damaged = False
        while True:
            while self._inbox:
                frame = self._inbox.popleft()
                self.stats.frames_received += 1
                if frame.seq != seq:
                    self._late_answer(frame)
                    self.stats.stale_frames += 1
                    attempts.note(f"stale {frame.name} seq {frame.seq}")
                    continue
                problem = (f"{frame.name} instead of {TYPE_NAMES[expect]}" if frame.type != expect
                           else check(frame) if check else None)
                if problem:
                    attempts.note(problem)
                    return None, "wrong"
                return frame, "ok"
            if damaged:
                return None, "bad"
            left = deadline - time.monotonic()
            if left <= 0:
                self._collect(self._decoder.drop_partial(), attempts)
                if self._inbox:
                    continue
                return None, "timeout"
            data = self._read(READ_SIZE, left)
            attempts.bytes(data)
            damaged = self._collect(self._decoder.feed(data), attempts)

    def _suspect(self, seq: int, suspect: "_Suspect") -> None:
        """Remember a frame whose timeout may have been spurious (the last few only)."""
        self._suspects[seq] = suspect
        while len(self._suspects) > 4:
            del self._suspects[next(iter(self._suspects))]

    def _late_answer(self, frame: Frame) -> None:
        """A stale answer that proves a timeout spurious: the board is slower than the timer thought
        (an emulator on a busy host), not the line lossy. Either the ACK of an INPUT chunk given up
        after one send (its round trip: now - sent), or a second answer to a resent frame (the first
        answer then belonged to the first send: its round trip is answered - sent). The timer takes
        that round trip and a chunk given up on gets its size back, so a slow phase does not turn
        into a run of spurious resends and short, costly chunks (cf. TCP's Eifel and DSACK)."""
        suspect = self._suspects.get(frame.seq)
        if suspect is None or suspect.answer_type != frame.type:
            return
        del self._suspects[frame.seq]
        suspect.timer.sample((suspect.answered_at or time.monotonic()) - suspect.sent_at)
        if suspect.chunk:
            self._chunk = max(self._chunk, suspect.chunk)
        self.stats.late_answers += 1

    def _collect(self, frames: list[Frame], attempts: _Attempts) -> bool:
        """Queue decoded frames; True when the decoder rejected a frame since the last call."""
        self._inbox.extend(frames)
        rejected, self._rejected = self._decoder.rejected - self._rejected, self._decoder.rejected
        if rejected > 0:
            self.stats.bad_frames += rejected
            attempts.note("frame with a bad CRC or length")
        return rejected > 0

    def _check_output(self, frame: Frame, index: int) -> str | None:
        """Why an OUTPUT frame is not the answer for `index`, or None when it is."""
        if len(frame.payload) < OUTPUT_HEADER.size:
            return f"OUTPUT of {len(frame.payload)} bytes"
        got, _, _, output = parse_output(frame.payload)
        if got != index:
            return f"OUTPUT for input {got} instead of {index}"
        if self.info and len(output) != self.info.output_bytes:
            return f"OUTPUT with {len(output)} output bytes instead of {self.info.output_bytes}"
        return None

    def _give_up(self, what: str, seq: int | None, attempts: _Attempts) -> LinkError:
        elapsed = time.monotonic() - attempts.started
        hint = ("Is the board running this artifact's UART firmware (flash it: --flash), on this port, at this baud "
                "rate?" if not attempts.received else
                "The board answered in text: it runs firmware without frame mode, or was reset."
                if b"EV-" in attempts.tail and not attempts.notes else
                "The line is too noisy for the retries allowed, or the board is stuck.")
        return LinkError(f"no valid answer to {what} (frame seq {seq}) from {self.link.name} after {attempts.count} "
                         f"attempts over {elapsed:.1f} s: {attempts.summary()}. {hint}")

    # --- bytes --------------------------------------------------------------------------------

    def link_byte_time(self) -> float:
        """Seconds one byte takes on the line (0 for sockets)."""
        return getattr(self.link, "byte_time", 0.0)

    def _take_seq(self) -> int:
        seq, self._seq = self._seq, (self._seq + 1) % 256
        return seq

    def _flush_line(self) -> int:
        """Send zero bytes enough to complete any frame the board may still be reading (a corrupted
        length announcing more bytes than came): it fails its CRC and the board scans the bytes
        again, finding the frames it swallowed. Zeros are never a start byte, even with a bit
        flipped. Returns the number of bytes sent."""
        filler = bytes((self.info.max_payload if self.info else MAX_PAYLOAD) + 2)
        self.stats.flushes += 1
        self._send_bytes(filler)
        return len(filler)

    def _send_frame(self, frame: bytes) -> None:
        self.stats.frames_sent += 1
        self._send_bytes(frame)

    def _send_bytes(self, data: bytes) -> None:
        self.link.write(data)
        self.stats.bytes_sent += len(data)

    def _read(self, max_bytes: int, timeout: float) -> bytes:
        data = self.link.read(max_bytes, timeout)
        self.stats.bytes_received += len(data)
        return data

    def _discard_pending(self) -> None:
        """Throw away bytes already received and queued frames (before text mode)."""
        for _ in range(256):  # at most 1 MiB: a board that never stops talking must not hang us here
            if not self._read(READ_SIZE, 0):
                break
        self._decoder.reset()
        self._inbox.clear()


def _check_hello(frame: Frame) -> str | None:
    """Why a HELLO reply frame is unusable, or None."""
    try:
        info = parse_hello_reply(frame.payload)
    except ValueError as exc:
        return str(exc)
    if not 4 < info.max_payload <= MAX_PAYLOAD:
        return f"HELLO reply announcing a max payload of {info.max_payload} bytes"
    return None


def _answer_size(expect: int, info: BoardInfo | None) -> int:
    """Payload bytes of the answer of type `expect` (for the time it takes on the line)."""
    if expect == OUTPUT:
        return OUTPUT_HEADER.size + (info.output_bytes if info else 0)
    return 23 if expect == HELLO_REPLY else 0
