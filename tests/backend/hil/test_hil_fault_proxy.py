"""FaultProxy: relays bytes both ways, injects each fault at its rate per direction, counts
bytes and faults, is reproducible from its seed; and its command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgevit.backend.hil.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[3]


class EchoServer:
    """A TCP server that records what it receives and can send to its client."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = bytearray()
        self.conn = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.conn, _ = self.server.accept()
        self.ready.set()
        while True:
            try:
                data = self.conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.received += data

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.server.close()


def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the peer closes its side."""
    sock.settimeout(timeout)
    out = bytearray()
    while data := sock.recv(65536):
        out += data
    return bytes(out)


def relay(data_up: bytes, data_down: bytes, **faults):
    """Send data_up client -> target and data_down target -> client through a proxy with `faults`,
    each side closing its direction when done; (what the target got, what the client got, stats)."""
    target = EchoServer()
    try:
        with FaultProxy(("127.0.0.1", target.port), **faults) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port)) as client:
                client.sendall(data_up)
                client.shutdown(socket.SHUT_WR)
                assert target.ready.wait(5)
                target.conn.sendall(data_down)
                target.conn.shutdown(socket.SHUT_WR)
                down = recv_all(client)
                target.thread.join(10)
        return bytes(target.received), down, proxy.stats
    finally:
        target.close()


DATA = bytes(range(256)) * 40  # 10240 bytes


def test_clean_relay_counts_every_byte():
    up, down, stats = relay(DATA, DATA[::-1])
    assert up == DATA and down == DATA[::-1]
    assert stats.to_target.bytes_received == stats.to_target.bytes_forwarded == len(DATA)
    assert stats.to_client.bytes_forwarded == len(DATA) and stats.bytes_forwarded() == 2 * len(DATA)
    assert stats.to_target.faults == stats.to_client.faults == 0 and stats.connections == 1


def test_corruption_flips_exactly_one_bit_per_corrupted_byte_in_one_direction():
    up, down, stats = relay(DATA, DATA, corrupt=0.05, directions=("to_target",), seed=3)
    assert down == DATA  # the other direction untouched
    assert len(up) == len(DATA)
    flipped = [bin(a ^ b).count("1") for a, b in zip(up, DATA) if a != b]
    assert set(flipped) == {1}
    assert len(flipped) == stats.to_target.corrupted
    assert 0.03 * len(DATA) < stats.to_target.corrupted < 0.07 * len(DATA)  # ~5 % of 10240 bytes


def test_drop_and_duplicate_change_the_byte_counts_they_report():
    up, down, stats = relay(DATA, DATA, drop={"to_target": 0.02}, duplicate={"to_client": 0.02}, seed=1)
    assert len(up) == len(DATA) - stats.to_target.dropped == stats.to_target.bytes_forwarded
    assert len(down) == len(DATA) + stats.to_client.duplicated == stats.to_client.bytes_forwarded
    assert stats.to_target.dropped > 0 and stats.to_client.duplicated > 0
    assert stats.to_target.duplicated == stats.to_client.dropped == 0


def test_every_byte_faulted_at_rate_one():
    up, down, stats = relay(b"abc", b"xyz", drop={"to_target": 1.0}, duplicate={"to_client": 1.0})
    assert up == b"" and down == b"xxyyzz"
    assert stats.to_target.dropped == 3 and stats.to_client.duplicated == 3


def test_delay_holds_the_stream_without_changing_it():
    up, down, stats = relay(DATA[:2000], b"", delay=0.01, delay_s=0.001, seed=2)
    assert up == DATA[:2000] and stats.to_target.delayed > 0


def test_same_seed_same_faults():
    first, _, _ = relay(DATA, b"", corrupt=0.02, drop=0.01, seed=11)
    second, _, _ = relay(DATA, b"", corrupt=0.02, drop=0.01, seed=11)
    third, _, _ = relay(DATA, b"", corrupt=0.02, drop=0.01, seed=12)
    assert first == second != third


def test_rates_are_checked():
    with pytest.raises(ValueError, match="corrupt rate must be a probability"):
        FaultProxy(("127.0.0.1", 1), corrupt=1.5)
    with pytest.raises(ValueError, match="unknown direction"):
        FaultProxy(("127.0.0.1", 1), directions=("up",))


def test_command_line_prints_its_url_and_stats_on_exit():
    target = EchoServer()
    proc = subprocess.Popen([sys.executable, "-m", "edgevit.backend.hil.fault_proxy", "--target",
                             f"127.0.0.1:{target.port}", "--corrupt", "0.5", "--direction", "to-target",
                             "--seed", "4"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on socket://127.0.0.1:") and f"-> 127.0.0.1:{target.port}" in line
        port = int(line.split("socket://127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(bytes(1000))
            for _ in range(100):
                if len(target.received) >= 1000:
                    break
                threading.Event().wait(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        target.close()
    assert proc.returncode == 0, err
    assert "to target: 1000 bytes received, 1000 forwarded; 0 dropped, 0 duplicated" in out
    corrupted = int(out.split("duplicated, ")[1].split(" corrupted")[0])
    assert corrupted == sum(1 for b in target.received if b) > 300
    assert "to client: 0 bytes received" in out


def test_command_line_refuses_a_bad_target():
    proc = subprocess.run([sys.executable, "-m", "edgevit.backend.hil.fault_proxy", "--target", "5555"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 2 and "--target must be HOST:PORT" in proc.stderr
