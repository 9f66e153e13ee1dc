"""A board in Python for tests without QEMU: the board side of docs/serial-protocol.md on a TCP
socket (127.0.0.1, a free port), like QEMU's UART chardev.

    with FakeBoard(model, input_bytes=784, output_bytes=10, bundled_inputs=[...]) as board:
        link = open_link(board.url)          # socket://127.0.0.1:PORT
        ...
    board.inferences                         # model calls (frame RUNs and text-mode vectors)

It behaves like the firmware, byte for byte: the `EV-READY` banner when a host connects (the
firmware prints it after reset; QEMU drops it if no host is connected yet), text mode (`RUN n`
runs the first n bundled inputs and prints `EV` lines and `EV-END`), and frame mode with the
retransmission cache (the same seq and type as the last frame acted on: resend the cached answer,
act on nothing). Its receiver is a streaming parser like the firmware's (serial_link.c): a start
byte begins a frame; a length above the maximum payload, `frame_idle_s` of silence inside a frame
or a bad CRC drops it silently and the bytes after its start byte are scanned again. An INPUT
chunk beyond the input buffer or a malformed RUN gets no answer.

`model(input: bytes) -> bytes` (exactly output_bytes) or `-> (status, bytes)`; a non-zero
status in text mode prints `EV-ERROR <index> <status>` and ends that run without EV-END, as
the firmware's test main stops at the first failure. Errors in the board thread (a model
returning the wrong size) are raised again when the context exits.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Callable

from edgevit.backend.hil.frames import (ACK, HELLO, HELLO_REPLY, INPUT, MAX_PAYLOAD, OUTPUT, PROTOCOL_VERSION, RUN,
                                        START, BoardInfo, crc8_header, crc16_ccitt, encode_frame, encode_hello_reply,
                                        encode_output)

POLL_S = 0.05


class _Idle(Exception):
    """No byte within the frame's idle timeout."""


class FakeBoard:
    """The board side of the serial protocol in a thread; see the module docstring."""

    def __init__(self, model: Callable[[bytes], bytes], input_bytes: int, output_bytes: int,
                 bundled_inputs: list[bytes], *, max_payload: int = MAX_PAYLOAD, tick_kind: str | None = "SysTick",
                 clock_hz: int = 25_000_000, ticks: int | Callable[[bytes], int] = 1234,
                 frame_idle_s: float = 0.05, banner: bool = True, version: int = PROTOCOL_VERSION,
                 answer_delay: Callable[[int], float] | None = None) -> None:
        """model: input bytes -> output bytes (or (status, bytes)); bundled_inputs: the compiled-in
        vectors of text mode; ticks: a constant or a function of the input; frame_idle_s: silence that
        aborts a frame; banner: print EV-READY when a host connects; version: the HELLO reply's;
        answer_delay: seconds to wait before answering, a function of the frames acted on so far (a
        board that is slow for a while, like QEMU on a busy host)."""
        self.model, self.input_bytes, self.output_bytes = model, input_bytes, output_bytes
        self.bundled = [bytes(b) for b in bundled_inputs]
        assert all(len(b) == input_bytes for b in self.bundled), "bundled inputs must have input_bytes each"
        self.info = BoardInfo(version, max_payload, input_bytes, output_bytes, len(self.bundled), tick_kind, clock_hz)
        self.ticks, self.frame_idle_s, self.banner = ticks, frame_idle_s, banner
        self.answer_delay = answer_delay
        self.input_buffer = bytearray(input_bytes)
        self.inferences = 0  # model calls: frame RUNs acted on + text-mode vectors
        self.frames_acted = 0
        self.cached_answers = 0  # retransmissions recognised and answered from the cache
        self.bad_frames = 0  # CRC failures, oversize lengths and frames aborted by silence
        self.connections = 0
        self.error: BaseException | None = None
        self._last: tuple[int, int] | None = None  # (type, seq) of the last frame acted on
        self._last_answer = b""
        self._pending = bytearray()
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(4)
        self._server.settimeout(POLL_S)
        self.port = self._server.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, name=f"fake-board-{self.port}", daemon=True)

    def __enter__(self) -> "FakeBoard":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
        if self.error is not None and exc_info[0] is None:
            raise self.error

    def close(self) -> None:
        """Stop serving and close the sockets."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._server.close()

    # --- connections and bytes ----------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._server.accept()
                except socket.timeout:
                    continue
                self.connections += 1
                with conn:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._conn = conn
                    self._pending.clear()
                    if self.banner:
                        self._write(f"EV-READY {len(self.bundled)} {self.input_bytes} {self.output_bytes} "
                                    f"{self.info.version}\r\n".encode())
                    self._session()
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def _session(self) -> None:
        try:
            self._receive_loop()
        except ConnectionError:
            return  # the host reset the connection: wait for the next one

    def _receive_loop(self) -> None:
        line = bytearray()
        while not self._stop.is_set():
            try:
                byte = self._read_byte(POLL_S)
            except _Idle:
                continue
            if byte is None:
                return
            if byte == START:
                line.clear()
                self._receive_frame()
            elif byte == 0x0A:
                self._text_command(line.decode("ascii", errors="replace").strip())
                line.clear()
            elif len(line) < 128:
                line.append(byte)

    def _read_byte(self, timeout: float) -> int | None:
        """The next byte; None when the host disconnected; _Idle after `timeout` seconds of silence."""
        if not self._pending:
            self._conn.settimeout(timeout)
            try:
                data = self._conn.recv(4096)
            except socket.timeout:
                raise _Idle() from None
            if not data:
                return None
            self._pending += data
        byte = self._pending[0]
        del self._pending[0]
        return byte

    def _read_into(self, got: bytearray, count: int) -> bool:
        """Append `count` bytes to `got` with at most frame_idle_s between them; False when the
        host disconnected; _Idle on silence (what arrived stays in `got`)."""
        for _ in range(count):
            byte = self._read_byte(self.frame_idle_s)
            if byte is None:
                return False
            got.append(byte)
        return True

    def _write(self, data: bytes) -> None:
        try:
            self._conn.sendall(data)
        except OSError:
            pass  # the host went away; the next read sees it

    # --- frame mode -----------------------------------------------------------------------------

    def _receive_frame(self) -> None:
        """After a start byte: read the rest of the frame and act on it. A bad frame (oversize
        length, silence, CRC) is dropped and the bytes after its start byte are scanned again."""
        got = bytearray()
        try:
            if not self._read_into(got, 5):
                return
            ftype, seq, length, check = struct.unpack("<BBHB", got)
            bad_header = check != crc8_header(bytes(got[:4])) or length > self.info.max_payload
            if bad_header or not self._read_into(got, length + 2):
                if bad_header:
                    self._give_back(got)
                return
        except _Idle:
            self._give_back(got)  # the line went quiet inside a frame: abort it
            return
        header, payload, (crc,) = bytes(got[:5]), bytes(got[5:5 + length]), struct.unpack("<H", got[5 + length:])
        if crc != crc16_ccitt(header + payload):
            self._give_back(got)
            return
        self._act(ftype, seq, payload)

    def _give_back(self, got: bytearray) -> None:
        """Drop a bad frame: its bytes after the start byte are read again (they may hold a real frame)."""
        self.bad_frames += 1
        self._pending[:0] = got

    def _act(self, ftype: int, seq: int, payload: bytes) -> None:
        if self._last == (ftype, seq):
            self.cached_answers += 1
            self._write(self._last_answer)
            return
        if ftype == HELLO:
            answer = encode_frame(HELLO_REPLY, seq, encode_hello_reply(self.info))
        elif ftype == INPUT and len(payload) >= 4:
            (offset,) = struct.unpack_from("<I", payload)
            data = payload[4:]
            if offset + len(data) > self.input_bytes:
                return  # a host bug: silence
            self.input_buffer[offset:offset + len(data)] = data
            answer = encode_frame(ACK, seq)
        elif ftype == RUN and len(payload) == 4:
            (index,) = struct.unpack("<I", payload)
            status, output = self._infer(bytes(self.input_buffer))
            answer = encode_frame(OUTPUT, seq, encode_output(index, status, self._ticks(self.input_buffer), output))
        else:
            return  # unknown type or malformed: silence
        self.frames_acted += 1
        self._last, self._last_answer = (ftype, seq), answer
        if self.answer_delay is not None:
            time.sleep(self.answer_delay(self.frames_acted))
        self._write(answer)

    # --- text mode and the model ----------------------------------------------------------------

    def _text_command(self, line: str) -> None:
        words = line.split()
        if len(words) != 2 or words[0] != "RUN" or not words[1].isdigit():
            return
        count = int(words[1])
        if not 1 <= count <= len(self.bundled):
            return
        for index, data in enumerate(self.bundled[:count]):
            status, output = self._infer(data)
            if status:
                self._write(f"EV-ERROR {index} {status}\r\n".encode())
                return
            self._write(f"EV {index} {self._ticks(data)} {output.hex()}\r\n".encode())
        self._write(f"EV-END {count}\r\n".encode())

    def _infer(self, data: bytes) -> tuple[int, bytes]:
        result = self.model(data)
        status, output = result if isinstance(result, tuple) else (0, result)
        output = bytes(output)
        if len(output) != self.output_bytes:
            raise AssertionError(f"the fake board's model returned {len(output)} bytes, expected {self.output_bytes}")
        self.inferences += 1
        return status, output

    def _ticks(self, data) -> int:
        return self.ticks(bytes(data)) if callable(self.ticks) else int(self.ticks)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` every 10 ms for up to `timeout` seconds; its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()
