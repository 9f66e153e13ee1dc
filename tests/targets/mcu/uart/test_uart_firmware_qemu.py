"""The UART firmware of int8 fmnist-tiny on QEMU with its UART on a TCP socket (docs/serial-protocol.md):
the HELLO reply, text mode against the semihosting build, frame mode against the bundled vectors,
exactly-once retransmissions and dropped corrupt frames. The host side is frames.py over a plain
socket (no link.py). mps2-an500 (stm32f746-disco) in the default suite, mps2-an386 (nrf52840) slow."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edgevit.backend.hil import frames as F
from edgevit.backend.protocol import parse_output
from edgevit.targets.mcu.uart_firmware import build_uart_firmware, qemu_uart

ROOT = Path(__file__).resolve().parents[4]
ZOO = ROOT / "models" / "fmnist-tiny"
VECTORS = 4
READ_TIMEOUT_S = 60.0  # QEMU under -icount runs the guest ~15x slower than real time; be generous

pytestmark = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed (make system)")


class Board:
    """A socket to the board's UART and a frame decoder over what it sends."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)
        self.decoder = F.FrameDecoder()
        self.frames: list[F.Frame] = []  # every frame received, in order

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, seq: int, timeout: float = READ_TIMEOUT_S) -> F.Frame:
        """The next received frame with `seq` (earlier frames stay in self.frames)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, frame in enumerate(self.frames):
                if frame.seq == seq:
                    return self.frames.pop(i)
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(4096)
            assert chunk, "the board closed the connection"
            self.frames += self.decoder.feed(chunk)

    def request(self, ftype: int, seq: int, payload: bytes = b"") -> F.Frame:
        self.send(F.encode_frame(ftype, seq, payload))
        return self.answer(seq)

    def text(self, command: str) -> str:
        """Send a text command and return the board's lines up to and including EV-END."""
        self.send(command.encode())
        data = b""
        while not (b"EV-END" in data and data.endswith(b"\r\n")):
            chunk = self.sock.recv(4096)
            assert chunk, "the board closed the connection"
            data += chunk
        return data.decode()

    def infer(self, seq: int, index: int, image: bytes) -> tuple[int, int, int, bytes]:
        ack = self.request(F.INPUT, seq, struct.pack("<I", 0) + image)
        assert (ack.type, ack.payload) == (F.ACK, b"")
        out = self.request(F.RUN, (seq + 1) % 256, struct.pack("<I", index))
        assert out.type == F.OUTPUT
        return F.parse_output(out.payload)


@pytest.fixture(scope="module", params=["stm32f746-disco", pytest.param("nrf52840", marks=pytest.mark.slow)])
def built(request, tmp_path_factory):
    """(profile, artifact, UART ELF, debug ELF counting runs, semihosting EV text) for int8 fmnist-tiny."""
    from edgevit.backend.compile import compile_artifact

    profile = request.param
    root = tmp_path_factory.mktemp(f"uart-{profile}")
    artifact = root / "artifact"
    compile_artifact(ZOO, profile, artifact, passes="quant(w=8,a=8)", vectors=VECTORS, progress=False)
    elf = build_uart_firmware(artifact, profile, root / "uart", for_board=False, extra_cflags="-Werror")
    debug = build_uart_firmware(artifact, profile, root / "debug", for_board=False,
                                extra_cflags="-Werror -DEDGEVIT_LINK_COUNT_RUNS")
    firmware = shutil.copytree(artifact, root / "make-copy") / "firmware"  # built in a copy: the artifact stays valid
    subprocess.run(["make", "-s", "-C", str(firmware)], check=True, capture_output=True)
    from edgevit.profiles.profile import load_profile

    machine = load_profile(profile).emulator.machine
    semihosting = subprocess.run(["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none",
                                  "-semihosting", "-icount", "shift=0", "-kernel", str(firmware / "firmware.elf")],
                                 capture_output=True, text=True, timeout=600, check=True).stdout
    return profile, artifact, elf, debug, semihosting


@pytest.fixture(scope="module")
def board(built):
    """A connection to the UART firmware on QEMU (one QEMU for the module's tests)."""
    profile, _, elf, _, _ = built
    with qemu_uart(profile, elf) as port:
        b = Board(port)
        yield b
        b.sock.close()


@pytest.fixture(scope="module")
def vectors(built):
    inputs = np.load(built[1] / "vectors" / "inputs.npy")
    expected = np.load(built[1] / "vectors" / "expected.npy")
    return inputs, expected


def test_hello_reply_describes_the_firmware(board, built) -> None:
    from edgevit.profiles.profile import load_profile

    reply = board.request(F.HELLO, 1)
    assert reply.type == F.HELLO_REPLY
    info = F.parse_hello_reply(reply.payload)
    assert (info.version, info.max_payload, info.input_bytes, info.output_bytes, info.bundled) == (
        3, 1024, 28 * 28, 10, VECTORS)
    assert info.tick_kind == "SysTick" and info.clock_hz == load_profile(built[0]).clock_hz


def test_text_mode_matches_the_semihosting_build(board, built) -> None:
    text = board.text(f"RUN {VECTORS}\n")
    assert all(line.endswith("\r") for line in text.split("\n")[:-1])  # \r\n line ends
    uart, semihosting = parse_output(text, VECTORS), parse_output(built[4], VECTORS)
    assert [v.data for v in uart.vectors] == [v.data for v in semihosting.vectors]
    for a, b in zip(uart.ticks, semihosting.ticks):  # the same code path: the same instruction counts, give or take
        assert abs(a - b) <= 0.01 * b


def test_frame_mode_infers_a_bundled_input_exactly(board, vectors) -> None:
    inputs, expected = vectors
    for i in (0, VECTORS - 1):
        index, status, ticks, output = board.infer(10 + 2 * i, 1000 + i, inputs[i].tobytes())
        assert (index, status) == (1000 + i, 0) and ticks > 0
        assert output == expected[i].tobytes()


def test_an_input_in_two_chunks(board, vectors) -> None:
    inputs, expected = vectors
    image = inputs[1].tobytes()
    for seq, offset in ((30, 0), (31, 400)):
        ack = board.request(F.INPUT, seq, struct.pack("<I", offset) + image[offset:offset + 400])
        assert ack.type == F.ACK
    out = F.parse_output(board.request(F.RUN, 32, struct.pack("<I", 1)).payload)
    assert out[3] == expected[1].tobytes()


def test_an_input_beyond_the_buffer_gets_no_answer(board) -> None:
    board.send(F.encode_frame(F.INPUT, 40, struct.pack("<I", 700) + bytes(100)))  # 700 + 100 > 784
    assert board.request(F.HELLO, 41).type == F.HELLO_REPLY  # answered in order: nothing came for seq 40
    assert all(f.seq != 40 for f in board.frames)


def test_corrupted_frames_are_ignored(board, vectors) -> None:
    hello = bytearray(F.encode_frame(F.HELLO, 50))
    bad_crc = bytes(hello[:-1]) + bytes([hello[-1] ^ 0x40])
    bad_length = bytes(hello[:3]) + struct.pack("<H", 5000) + bytes(hello[5:])  # > MAX_PAYLOAD
    longer = bytes(hello[:3]) + struct.pack("<H", 3) + bytes(hello[5:])  # swallows the next frame's bytes
    noise = b"\x00\xff\xe5\x13garbage\xe5"  # stray start bytes before a real frame
    for i, corrupt in enumerate((bad_crc, bad_length, longer, noise)):
        board.send(corrupt)
        reply = board.request(F.HELLO, 60 + i)
        assert reply.type == F.HELLO_REPLY and F.parse_hello_reply(reply.payload).version == 3
        assert all(f.seq != 50 for f in board.frames), f"case {i}: the corrupted frame was answered"
    inputs, expected = vectors
    image = bytearray(struct.pack("<I", 0) + inputs[2].tobytes())
    flipped = bytearray(F.encode_frame(F.INPUT, 70, bytes(image)))
    flipped[100] ^= 0x01  # one bit of the image: the CRC catches it, nothing is stored
    board.send(bytes(flipped))
    assert board.infer(71, 2, inputs[2].tobytes())[3] == expected[2].tobytes()
    assert all(f.seq != 70 for f in board.frames)


def test_a_retransmitted_run_returns_the_cached_answer_without_running_again(built, vectors) -> None:
    """The debug firmware reports in OUTPUT's ticks how many inferences it ran since reset."""
    profile, _, _, debug, _ = built
    inputs, expected = vectors
    with qemu_uart(profile, debug) as port:
        b = Board(port)
        assert b.request(F.INPUT, 5, struct.pack("<I", 0) + inputs[0].tobytes()).type == F.ACK
        first = b.request(F.RUN, 6, struct.pack("<I", 0))
        assert F.parse_output(first.payload)[2] == 1  # the first inference since reset
        again = b.request(F.RUN, 6, struct.pack("<I", 0))  # the same seq and type: a retransmission
        assert again == first
        index, status, count, output = F.parse_output(again.payload)
        assert (index, status, count, output) == (0, 0, 1, expected[0].tobytes())  # still one inference
        # A retransmitted INPUT is not written again either: the board keeps image 0 and acks.
        assert b.request(F.INPUT, 7, struct.pack("<I", 0) + inputs[1].tobytes()).type == F.ACK
        assert b.request(F.INPUT, 7, struct.pack("<I", 0) + inputs[3].tobytes()).type == F.ACK
        index, _, count, output = F.parse_output(b.request(F.RUN, 8, struct.pack("<I", 9)).payload)
        assert (index, count, output) == (9, 2, expected[1].tobytes())  # a new RUN runs: image 1, not 3
        b.sock.close()


def test_qemu_uart_refuses_a_port_in_use(built) -> None:
    from edgevit.errors import UserInputError

    profile, _, elf, _, _ = built
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserInputError, match=f"--port {port}: 127.0.0.1:{port} is already in use"):
            with qemu_uart(profile, elf, port=port):
                pass


def test_qemu_uart_reports_a_qemu_that_cannot_start(built, tmp_path: Path) -> None:
    from edgevit.backend.errors import RunFailedError
    from edgevit.profiles.profile import load_profile

    broken = load_profile(built[0]).model_copy(update={"emulator": load_profile(built[0]).emulator.model_copy(
        update={"machine": "no-such-board"})})
    with pytest.raises(RunFailedError, match="QEMU did not start .*no-such-board"):
        with qemu_uart(broken, built[2]):
            pass


def test_qemu_stops_with_the_context(built) -> None:
    profile, _, elf, _, _ = built
    with qemu_uart(profile, elf) as port:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_emulate_command_serves_the_artifact(built) -> None:
    import signal
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "edgevit", "emulate", str(built[1]), "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on socket://127.0.0.1:"), line + proc.stderr.read()
        b = Board(int(line.rsplit(":", 1)[1]))
        assert F.parse_hello_reply(b.request(F.HELLO, 3).payload).bundled == VECTORS
        b.sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in err


def test_the_artifact_carries_the_uart_project(built) -> None:
    import json

    artifact = built[1]
    listed = json.loads((artifact / "manifest.json").read_text())["files"]
    names = set(listed) if isinstance(listed, dict) else {f["path"] for f in listed}
    assert {"firmware/serial_link.c", "firmware/uart.h", "firmware/uart_cmsdk-uart.c", "firmware/uart_config_qemu.h",
            "firmware/uart_config_board.h", "firmware/linker_board.ld"} <= names
    makefile = (artifact / "firmware" / "Makefile").read_text()
    assert "#   make uart " in makefile and "#   make board " in makefile  # documented at the top
    copy = shutil.copytree(artifact, artifact.parent / "uart-make-copy")  # build in a copy, never in the artifact
    r = subprocess.run(["make", "-s", "-C", str(copy / "firmware"), "uart", "EDGEVIT_COUNT=2"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and (copy / "firmware" / "firmware_uart.elf").is_file(), r.stderr
