"""Opening the byte link to a board: a serial device (/dev/ttyACM0, COM3) or a pyserial URL
(socket://127.0.0.1:5555 for QEMU's UART on a TCP socket or the fault proxy, rfc2217://, loop://).

    with open_link("socket://127.0.0.1:5555") as link:
        link.write(b"RUN 3\\n")
        chunk = link.read(4096, timeout=0.5)      # b"" when nothing arrived in time

Everything that can go wrong when opening becomes one clear error naming the port:

- PortError (UserInputError, exit 2): no such device, permission denied (the dialout group),
  busy (another program has it open), not a serial port, a malformed URL or unknown host.
- PortConnectError (RunFailedError, exit 1): nothing accepts connections at a socket:// URL. A
  server that is still starting (an emulator just launched) is waited for: the connection is
  retried for `connect_timeout` seconds (5) before giving up.
- LinkClosedError (RunFailedError): the device or the connection went away while in use.
"""

from __future__ import annotations

import errno
import socket
import time

from edgevit.backend.errors import RunFailedError
from edgevit.errors import UserInputError

DEFAULT_BAUD = 115200
CONNECT_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 5.0
_RETRY_SLEEP_S = 0.05


class PortError(UserInputError):
    """A port that cannot be opened for a reason the user fixes (path, permissions, busy). Exit code 2."""


class PortConnectError(RunFailedError):
    """Nothing accepts connections at a socket:// URL (the emulator or board server is not running). Exit code 1."""


class LinkClosedError(RunFailedError):
    """The device or the connection went away while the link was in use. Exit code 1."""


class ByteLink:
    """A bidirectional byte stream to a board over a pyserial port object.

    `write(data)` sends all bytes; `read(max_bytes, timeout)` returns between 1 and `max_bytes`
    bytes as soon as any arrive, or b"" after `timeout` seconds; `bytes_written` / `bytes_read`
    count every byte that crossed the link; `byte_time` is the seconds one byte takes on the line
    (10 bits at the baud rate for a UART, 0 for a socket, whose emulated UART has no baud limit).
    Use as a context manager or call `close()`."""

    def __init__(self, port, name: str, byte_time: float = 0.0) -> None:
        """port: an open pyserial Serial (or URL handler) instance; name: the port or URL, for messages;
        byte_time: seconds per byte on the line (0: no line limit)."""
        self.port, self.name, self.byte_time = port, name, byte_time
        self.bytes_written = 0
        self.bytes_read = 0
        self._timeout: float | None = -1.0

    def write(self, data: bytes) -> None:
        """Send every byte of `data`; LinkClosedError when the device or connection is gone."""
        try:
            self.port.write(bytes(data))
        except Exception as exc:  # serial.SerialException, SerialTimeoutException, OSError
            raise self._closed(f"writing {len(data)} bytes failed: {exc}") from exc
        self.bytes_written += len(data)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Up to `max_bytes` bytes: waits at most `timeout` seconds for the first one, then takes
        whatever else is already waiting. b"" on timeout; LinkClosedError when the link is gone."""
        try:
            self._set_timeout(max(0.0, timeout))
            data = self.port.read(1)
            if data and max_bytes > 1:
                self._set_timeout(0)
                data += self.port.read(max_bytes - 1)
        except Exception as exc:
            raise self._closed(f"reading failed: {exc}") from exc
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        """Close the port (idempotent)."""
        try:
            self.port.close()
        except Exception:  # closing a port whose device vanished must not mask the real error
            pass

    def __enter__(self) -> "ByteLink":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ByteLink({self.name!r}, written={self.bytes_written}, read={self.bytes_read})"

    def _set_timeout(self, timeout: float) -> None:
        if timeout != self._timeout:  # reconfiguring a real tty costs a tcsetattr: only on change
            self.port.timeout = timeout
            self._timeout = timeout

    def _closed(self, what: str) -> LinkClosedError:
        return LinkClosedError(f"the link to {self.name} broke: {what}. The board was reset or unplugged, or the "
                               f"emulator / proxy behind the URL stopped")


def open_link(url: str, baud: int = DEFAULT_BAUD, *, connect_timeout: float = CONNECT_TIMEOUT_S) -> ByteLink:
    """Open `url` (a device path like /dev/ttyACM0 or a pyserial URL like socket://127.0.0.1:5555)
    at `baud` 8N1 and return a ByteLink. A socket:// server that refuses connections is retried
    for `connect_timeout` seconds. PortError / PortConnectError naming the port otherwise."""
    import serial  # pyserial: imported here so that edgevit starts without it for other commands

    url = str(url).strip()
    if not url:
        raise PortError("no serial port given: pass --port /dev/ttyACM0 (a board) or --port socket://HOST:PORT "
                        "(an emulated board, `edgevit emulate DIR`)")
    is_url = "://" in url
    if url.lower().startswith("socket://"):
        _check_socket_url(url)
    options = dict(baudrate=int(baud), timeout=0, write_timeout=WRITE_TIMEOUT_S)
    if not is_url:
        options["exclusive"] = True  # a second program on the same tty would steal bytes: refuse (busy)
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            port = serial.serial_for_url(url, **options)
            _no_delay(port)
            return ByteLink(port, url, 0.0 if is_url else 10.0 / int(baud))
        except ValueError as exc:  # unknown URL scheme, a bad baud rate
            raise PortError(f"cannot open port {url!r}: {exc}. Use a device path (/dev/ttyACM0) or a URL such as "
                            f"socket://127.0.0.1:5555") from exc
        except serial.SerialException as exc:
            cause = _os_error(exc)
            if is_url and isinstance(cause, ConnectionRefusedError) and time.monotonic() < deadline:
                time.sleep(_RETRY_SLEEP_S)
                continue
            raise _open_error(url, exc, cause, connect_timeout) from exc


def _no_delay(port) -> None:
    """Turn off Nagle's algorithm on a socket:// port: a resent frame would otherwise wait for the
    peer's delayed TCP ACK (40 ms on Linux) behind the unanswered one, like QEMU's `nodelay=on`."""
    sock = getattr(port, "_socket", None)  # pyserial's protocol_socket keeps the socket here
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _check_socket_url(url: str) -> None:
    """PortError unless `url` is socket://HOST:PORT with a port number in 1..65535."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
        parts = None
    if parts is None or not parts.hostname or port is None or not 0 < port < 65536:
        raise PortError(f"malformed URL {url!r}: expected socket://HOST:PORT, e.g. socket://127.0.0.1:5555")


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind a SerialException: its errno (device paths) or the exception it was raised
    while handling (socket:// URLs)."""
    seen = exc  # SerialException is itself an OSError, with an errno only for device paths
    while seen is not None:
        if isinstance(seen, OSError) and isinstance(seen.errno, int):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _open_error(url: str, exc: Exception, cause: OSError | None, connect_timeout: float) -> Exception:
    """The user-facing error for a port that did not open."""
    code = getattr(cause, "errno", None)
    if url.lower().startswith("socket://"):
        if isinstance(cause, ConnectionRefusedError):
            return PortConnectError(
                f"nothing accepts connections at {url} (connection refused for {connect_timeout:g} s): start the "
                f"emulated board first (`edgevit emulate DIR --port PORT`) or the fault proxy, and check the port")
        if isinstance(cause, (TimeoutError, ConnectionError)) or code in (errno.ETIMEDOUT, errno.EHOSTUNREACH,
                                                                          errno.ENETUNREACH):
            return PortConnectError(f"cannot connect to {url}: {cause}. Check the host and that its port is reachable")
        return PortError(f"cannot open {url}: {cause or exc}. Check the host name")
    if "://" in url:
        return PortError(f"cannot open port {url}: {exc}")
    if code == errno.ENOENT or code == errno.ENODEV or code == errno.ENXIO:
        return PortError(f"serial port {url} does not exist: is the board plugged in and powered? "
                         f"{_available_ports()}")
    if code in (errno.EACCES, errno.EPERM):
        return PortError(f"permission denied opening serial port {url}: add your user to the group owning it "
                         f"(usually dialout: `sudo usermod -aG dialout $USER`, then log in again)")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return PortError(f"serial port {url} is busy: another program has it open (a serial monitor, screen, "
                         f"minicom, an IDE, a second edgevit run); close it and retry")
    if code in (errno.ENOTTY, errno.EINVAL) or "configure port" in str(exc):
        return PortError(f"{url} is not a serial port ({exc}); pass the board's tty, e.g. /dev/ttyACM0")
    return PortError(f"cannot open serial port {url}: {exc}")


def _available_ports() -> str:
    """'Serial ports present: ...' (or that there is none), for a message about a missing port."""
    try:
        from serial.tools import list_ports

        names = sorted(p.device for p in list_ports.comports())
    except Exception:  # listing is a courtesy; it must never hide the real error
        return ""
    if not names:
        return "No serial port is present on this machine."
    return "Serial ports present: " + ", ".join(names) + "."
