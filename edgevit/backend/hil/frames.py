"""Frames of the serial protocol (docs/serial-protocol.md, section 2): encoding, CRC and an
incremental decoder that resynchronises on garbage.

    frame = 0xE5 | type u8 | seq u8 | length u16 LE | check u8 | payload[length] | crc16 u16 LE
    check = CRC-8 (poly 0x07, init 0xFF) over type, seq and length: a corrupted length is
            caught before the receiver waits for bytes that never come
    crc16 = CRC-16/CCITT-FALSE over type, seq, length, check and payload

    encode_frame(HELLO, 7)                       # -> bytes on the line
    dec = FrameDecoder(); frames = dec.feed(chunk)   # complete, CRC-checked frames so far
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

START = 0xE5
MAX_PAYLOAD = 1024
HEADER = struct.Struct("<BBBHB")  # start, type, seq, length, header check
OVERHEAD = HEADER.size + 2  # header + CRC: 8 bytes per frame
PROTOCOL_VERSION = 3

# host -> board
HELLO, INPUT, RUN = 0x48, 0x49, 0x52
# board -> host
HELLO_REPLY, ACK, OUTPUT = 0x68, 0x61, 0x6F
TYPE_NAMES = {HELLO: "HELLO", INPUT: "INPUT", RUN: "RUN", HELLO_REPLY: "HELLO reply", ACK: "ACK", OUTPUT: "OUTPUT"}

TICK_KINDS = {0: None, 1: "SysTick", 2: "DWT CYCCNT"}


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of `data`;
    crc16_ccitt(b"123456789") == 0x29B1."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def crc8_header(data: bytes, crc: int = 0xFF) -> int:
    """The header check: CRC-8 with poly 0x07, init 0xFF, no reflection, no final xor, of `data`
    (type, seq, length: 4 bytes); crc8_header(b"123456789") == 0xFB. Init 0xFF, so an all-zero
    header does not check as 0."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its type, sequence number (0..255) and payload."""

    type: int
    seq: int
    payload: bytes = b""

    @property
    def name(self) -> str:
        """The type's name for messages, e.g. "ACK" (hex for an unknown type)."""
        return TYPE_NAMES.get(self.type, f"type 0x{self.type:02x}")


def encode_frame(frame_type: int, seq: int, payload: bytes = b"") -> bytes:
    """The bytes of one frame; ValueError for a payload over MAX_PAYLOAD or a bad type/seq."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds the protocol's {MAX_PAYLOAD}")
    if not (0 <= frame_type <= 255 and 0 <= seq <= 255):
        raise ValueError(f"frame type {frame_type} and seq {seq} must be bytes")
    fields = struct.pack("<BBH", frame_type, seq, len(payload))
    body = fields + bytes([crc8_header(fields)]) + bytes(payload)
    return bytes([START]) + body + struct.pack("<H", crc16_ccitt(body))


class FrameDecoder:
    """Turns a byte stream into CRC-checked frames. Bytes before a start byte, headers whose check
    byte fails or that announce more than MAX_PAYLOAD bytes, and frames with a bad CRC are skipped
    (counted in `rejected`); after a bad frame the search resumes one byte after its start byte,
    so a corrupted length cannot swallow the frames behind it."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.rejected = 0  # frames dropped for a bad CRC or length
        self.skipped_bytes = 0  # bytes outside any frame

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames completed by them, in order."""
        self.buffer += data
        frames = []
        while True:
            start = self.buffer.find(START)
            if start < 0:
                self.skipped_bytes += len(self.buffer)
                self.buffer.clear()
                return frames
            if start:
                self.skipped_bytes += start
                del self.buffer[:start]
            if len(self.buffer) < HEADER.size:
                return frames
            _, ftype, seq, length, check = HEADER.unpack_from(self.buffer)
            if check != crc8_header(bytes(self.buffer[1:HEADER.size - 1])) or length > MAX_PAYLOAD:
                self._reject()
                continue
            total = HEADER.size + length + 2
            if len(self.buffer) < total:
                return frames
            body = bytes(self.buffer[1:HEADER.size + length])
            (crc,) = struct.unpack_from("<H", self.buffer, HEADER.size + length)
            if crc != crc16_ccitt(body):
                self._reject()
                continue
            frames.append(Frame(ftype, seq, bytes(self.buffer[HEADER.size:HEADER.size + length])))
            del self.buffer[:total]

    def reset(self) -> None:
        """Forget a partial frame (e.g. after a timeout)."""
        self.buffer.clear()

    def drop_partial(self) -> list[Frame]:
        """Give up on a frame whose rest never came (a dropped byte, or a corrupted length that
        announces more bytes than were sent): reject its start byte and return the complete frames
        found in the bytes behind it. No-op (empty list) when nothing is buffered."""
        if not self.buffer:
            return []
        self._reject()
        return self.feed(b"")

    def _reject(self) -> None:
        self.rejected += 1
        self.skipped_bytes += 1
        del self.buffer[:1]


@dataclass(frozen=True)
class BoardInfo:
    """The HELLO reply: what the firmware was built with."""

    version: int
    max_payload: int
    input_bytes: int
    output_bytes: int
    bundled: int
    tick_kind: str | None  # "SysTick", "DWT CYCCNT" or None
    clock_hz: int


HELLO_REPLY_FORMAT = struct.Struct("<HHIIIBI")
OUTPUT_HEADER = struct.Struct("<IIQ")  # input index, status, ticks


def parse_hello_reply(payload: bytes) -> BoardInfo:
    """BoardInfo from a HELLO reply payload; ValueError when it is too short."""
    if len(payload) < HELLO_REPLY_FORMAT.size:
        raise ValueError(f"HELLO reply of {len(payload)} bytes, expected {HELLO_REPLY_FORMAT.size}")
    version, max_payload, in_bytes, out_bytes, bundled, tick, clock = HELLO_REPLY_FORMAT.unpack_from(payload)
    return BoardInfo(version, max_payload, in_bytes, out_bytes, bundled, TICK_KINDS.get(tick, f"kind {tick}"), clock)


def encode_hello_reply(info: BoardInfo) -> bytes:
    """The payload of a HELLO reply (used by fake boards in tests)."""
    kind = {v: k for k, v in TICK_KINDS.items()}.get(info.tick_kind, 0)
    return HELLO_REPLY_FORMAT.pack(info.version, info.max_payload, info.input_bytes, info.output_bytes,
                                   info.bundled, kind, info.clock_hz)


def parse_output(payload: bytes) -> tuple[int, int, int, bytes]:
    """(input index, status, ticks, output bytes) of an OUTPUT payload; ValueError when too short."""
    if len(payload) < OUTPUT_HEADER.size:
        raise ValueError(f"OUTPUT payload of {len(payload)} bytes, expected at least {OUTPUT_HEADER.size}")
    index, status, ticks = OUTPUT_HEADER.unpack_from(payload)
    return index, status, ticks, payload[OUTPUT_HEADER.size:]


def encode_output(index: int, status: int, ticks: int, output: bytes) -> bytes:
    """The payload of an OUTPUT frame (used by fake boards in tests)."""
    return OUTPUT_HEADER.pack(index, status, ticks) + bytes(output)
