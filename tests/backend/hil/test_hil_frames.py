"""Frames of the serial protocol: CRC, encoding, the decoder's resynchronisation, payload codecs."""

from __future__ import annotations

import random

import pytest

from edgevit.backend.hil.frames import (ACK, HELLO, INPUT, MAX_PAYLOAD, OUTPUT, BoardInfo, Frame, FrameDecoder,
                                        crc8_header, crc16_ccitt, encode_frame, encode_hello_reply, encode_output,
                                        parse_hello_reply, parse_output)


def test_crc16_ccitt_false_check_value():
    # the catalogue's check value of CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740)
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert crc16_ccitt(b"") == 0xFFFF


def test_crc8_header_check_value():
    # CRC-8, poly 0x07, init 0xFF, no reflection, no xor-out; 0xFB is also (M(x) * x^8) mod (x^8+x^2+x+1)
    # by long division, with the first byte xored by the init (the firmware's C must agree: QEMU tests)
    assert crc8_header(b"123456789") == 0xFB
    assert crc8_header(b"") == 0xFF
    assert crc8_header(bytes(4)) != 0  # an all-zero header (a line flush) never checks


def test_frame_layout_is_start_type_seq_length_check_payload_crc():
    frame = encode_frame(INPUT, 7, b"\x01\x02\x03")
    assert frame[:5] == bytes([0xE5, INPUT, 7, 3, 0])
    assert frame[5] == crc8_header(frame[1:5])
    assert frame[6:9] == b"\x01\x02\x03"
    assert int.from_bytes(frame[9:], "little") == crc16_ccitt(frame[1:9])
    assert len(encode_frame(ACK, 0)) == 8


def test_decoder_refuses_a_corrupted_length_at_once():
    # a bit flipped in the length announces 256 more bytes; the header check catches it, so the
    # frame behind is decoded without waiting for those bytes (v2 needed a timeout or a flush)
    bad = bytearray(encode_frame(INPUT, 1, b"xyz"))
    bad[4] ^= 0x01
    decoder = FrameDecoder()
    assert decoder.feed(bytes(bad) + encode_frame(ACK, 2)) == [Frame(ACK, 2)]
    assert decoder.rejected == 1


def test_encode_refuses_oversize_payload_and_bad_seq():
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(INPUT, 0, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        encode_frame(INPUT, 256)


def test_decoder_round_trip_fed_byte_by_byte():
    frames = [Frame(HELLO, 0), Frame(INPUT, 1, bytes(range(200))), Frame(OUTPUT, 255, b"\xe5" * 40)]
    stream = b"".join(encode_frame(f.type, f.seq, f.payload) for f in frames)
    decoder, got = FrameDecoder(), []
    for byte in stream:
        got += decoder.feed(bytes([byte]))
    assert got == frames
    assert decoder.rejected == 0 and decoder.skipped_bytes == 0


def test_decoder_skips_garbage_and_text_before_a_frame():
    decoder = FrameDecoder()
    got = decoder.feed(b"EV-READY 10 784 10 2\r\n" + encode_frame(ACK, 3))
    assert got == [Frame(ACK, 3)]
    assert decoder.skipped_bytes == len(b"EV-READY 10 784 10 2\r\n")


def test_decoder_resynchronises_after_a_corrupted_frame():
    good = encode_frame(ACK, 9)
    bad = bytearray(encode_frame(INPUT, 8, b"abcdef"))
    bad[7] ^= 0x10  # one bit in the payload: CRC mismatch
    decoder = FrameDecoder()
    assert decoder.feed(bytes(bad) + good) == [Frame(ACK, 9)]
    assert decoder.rejected == 1


def test_decoder_oversize_length_drops_only_the_start_byte():
    # a header announcing 0xFFFF bytes must not swallow the frame behind it
    decoder = FrameDecoder()
    header = bytes([ACK, 1, 0xFF, 0xFF])
    got = decoder.feed(bytes([0xE5]) + header + bytes([crc8_header(header)]) + encode_frame(ACK, 2))
    assert got == [Frame(ACK, 2)]
    assert decoder.rejected == 1


def test_drop_partial_recovers_frames_behind_a_truncated_one():
    truncated = encode_frame(OUTPUT, 4, bytes(30))[:20]  # 19 bytes lost on the line
    good = encode_frame(ACK, 5)
    decoder = FrameDecoder()
    assert decoder.feed(truncated + good) == []  # the good frame sits inside the announced length
    assert decoder.drop_partial() == [Frame(ACK, 5)]
    assert decoder.drop_partial() == []


def test_decoder_never_accepts_a_single_bit_error():
    rng = random.Random(5)
    frame = encode_frame(OUTPUT, 77, bytes(rng.randrange(256) for _ in range(33)))
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        decoder = FrameDecoder()
        got = decoder.feed(bytes(damaged)) + decoder.drop_partial()
        assert got == [], f"bit {bit} flipped was accepted"


def test_hello_reply_and_output_payloads_round_trip():
    info = BoardInfo(2, 1024, 784, 10, 20, "DWT CYCCNT", 216_000_000)
    assert parse_hello_reply(encode_hello_reply(info)) == info
    assert parse_output(encode_output(12, 0, 2 ** 40 + 3, b"\x01" * 10)) == (12, 0, 2 ** 40 + 3, b"\x01" * 10)
    with pytest.raises(ValueError):
        parse_output(b"\x00" * 5)
    with pytest.raises(ValueError):
        parse_hello_reply(b"\x02\x00")
