"""open_link / ByteLink: device paths (a pseudo-terminal stands in for a USB serial port),
socket:// URLs, and one clear error per way of failing to open a port."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time

import pytest

from edgevit.backend.errors import RunFailedError
from edgevit.backend.hil.transport import LinkClosedError, PortConnectError, PortError, open_link
from edgevit.errors import UserInputError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pty_port():
    """(master fd, path of the slave tty): a serial port without hardware."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


def test_device_path_reads_and_writes(pty_port):
    master, path = pty_port
    with open_link(path, 115200) as link:
        assert link.name == path and link.byte_time == pytest.approx(10 / 115200)
        assert link.read(100, timeout=0.05) == b""
        os.write(master, b"EV-READY 3 784 10 2\r\n")
        got = b""
        while not got.endswith(b"\n"):
            chunk = link.read(100, timeout=2.0)
            assert chunk, "the bytes written to the pty never arrived"
            got += chunk
        assert got == b"EV-READY 3 784 10 2\r\n"
        link.write(b"RUN 3\n")
        assert os.read(master, 100) == b"RUN 3\n"
        assert (link.bytes_read, link.bytes_written) == (len(got), 6)


def test_missing_device_is_a_user_error_naming_the_port(tmp_path):
    missing = str(tmp_path / "ttyACM7")
    with pytest.raises(PortError, match=r"serial port .*ttyACM7 does not exist: is the board plugged in") as info:
        open_link(missing)
    assert isinstance(info.value, UserInputError) and info.value.exit_code == 2


def test_busy_port_names_the_other_program(pty_port):
    _, path = pty_port
    with open_link(path):
        with pytest.raises(PortError, match=rf"serial port {path} is busy: another program has it open"):
            open_link(path)


def test_permission_denied_points_at_the_dialout_group(monkeypatch):
    import serial

    def denied(url, **options):
        raise serial.SerialException(errno.EACCES, f"could not open port {url}: [Errno 13] Permission denied")

    monkeypatch.setattr(serial, "serial_for_url", denied)
    with pytest.raises(PortError, match=r"permission denied opening serial port /dev/ttyACM0: .*dialout"):
        open_link("/dev/ttyACM0")


def test_a_file_that_is_not_a_tty_is_refused():
    with pytest.raises(PortError, match=r"/dev/null is not a serial port"):
        open_link("/dev/null")


@pytest.mark.parametrize("url", ["socket://127.0.0.1", "socket://:5555", "socket://127.0.0.1:99999"])
def test_malformed_socket_url(url):
    with pytest.raises(PortError, match=r"malformed URL .*socket://HOST:PORT"):
        open_link(url)


def test_unknown_url_scheme():
    with pytest.raises(PortError, match=r"cannot open port 'tcp://x:1'.*protocol 'tcp' not known"):
        open_link("tcp://x:1")


def test_connection_refused_is_retried_then_a_run_failure():
    url = f"socket://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(PortConnectError, match=rf"nothing accepts connections at {url} \(connection refused for "
                                               r"0.3 s\): start the emulated board") as info:
        open_link(url, connect_timeout=0.3)
    assert time.monotonic() - started >= 0.25  # it kept trying for the whole window
    assert isinstance(info.value, RunFailedError) and info.value.exit_code == 1


def test_a_server_that_starts_late_is_waited_for():
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def start_late():
        time.sleep(0.4)
        server.bind(("127.0.0.1", port))
        server.listen(1)

    thread = threading.Thread(target=start_late)
    thread.start()
    try:
        with open_link(f"socket://127.0.0.1:{port}", connect_timeout=5) as link:
            peer, _ = server.accept()
            with peer:
                peer.sendall(b"\xe5hello")
                got = b""
                while len(got) < 6:
                    chunk = link.read(64, timeout=2.0)
                    assert chunk
                    got += chunk
                assert got == b"\xe5hello" and link.byte_time == 0.0
                link.write(b"ok")
                assert peer.recv(2) == b"ok"
    finally:
        thread.join()
        server.close()


def test_socket_link_has_nagle_off_and_reports_a_closed_peer():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        link = open_link(f"socket://127.0.0.1:{server.getsockname()[1]}")
        assert link.port._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        peer, _ = server.accept()
        peer.close()
        with pytest.raises(LinkClosedError, match=r"the link to socket://127.0.0.1:\d+ broke"):
            for _ in range(50):  # the close arrives asynchronously
                link.read(10, timeout=0.1)
        link.close()
        link.close()  # idempotent
