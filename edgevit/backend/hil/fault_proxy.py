"""A TCP proxy that drops, duplicates, corrupts and delays bytes: put it between the serial runner
and an emulated board (QEMU's UART on a socket) to prove the link recovers from a bad line.

    with FaultProxy(("127.0.0.1", qemu_port), corrupt=0.01, seed=1) as proxy:
        run(..., port=proxy.url)                  # socket://127.0.0.1:<proxy.port>
    proxy.stats.to_target.corrupted, proxy.stats.bytes_forwarded()

    python -m edgevit.backend.hil.fault_proxy --target 127.0.0.1:5555 --corrupt 0.01 [--listen 6000]

Every byte meets each fault independently with its probability (`drop`, `duplicate`, `corrupt`:
flip one random bit, `delay`: hold the stream `delay_s` seconds before the byte; a dropped byte
is neither corrupted nor duplicated). A rate is a number for both directions or a mapping
{"to_target": p, "to_client": q}; `directions` limits the faults to one way. The faults come
from a random generator per direction seeded with `seed`, drawn as gaps between faults (a
geometric distribution), so a run's faults depend only on the bytes each direction carried.
The stats count per direction the bytes received, the bytes forwarded (what the other side
got: protocol overhead is measured on these) and each fault injected.
"""

from __future__ import annotations

import argparse
import math
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

DIRECTIONS = ("to_target", "to_client")
FAULTS = ("drop", "duplicate", "corrupt", "delay")
CONNECT_TIMEOUT_S = 5.0


@dataclass
class DirectionStats:
    """The bytes and faults of one direction."""

    bytes_received: int = 0  # read from the sender
    bytes_forwarded: int = 0  # written to the receiver (duplicates included, drops not)
    dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    delayed: int = 0

    @property
    def faults(self) -> int:
        """Faults injected in this direction."""
        return self.dropped + self.duplicated + self.corrupted + self.delayed


@dataclass
class ProxyStats:
    """Per-direction stats (to_target: client -> target, to_client: target -> client) and connections."""

    to_target: DirectionStats = field(default_factory=DirectionStats)
    to_client: DirectionStats = field(default_factory=DirectionStats)
    connections: int = 0

    def bytes_forwarded(self) -> int:
        """Bytes delivered in both directions: all the bytes on the line."""
        return self.to_target.bytes_forwarded + self.to_client.bytes_forwarded

    def as_dict(self) -> dict:
        """Plain dict (JSON)."""
        return asdict(self)

    def summary(self) -> str:
        """Two lines: bytes and faults per direction."""
        lines = []
        for name in DIRECTIONS:
            d = getattr(self, name)
            lines.append(f"{name.replace('_', ' ')}: {d.bytes_received} bytes received, {d.bytes_forwarded} "
                         f"forwarded; {d.dropped} dropped, {d.duplicated} duplicated, {d.corrupted} corrupted, "
                         f"{d.delayed} delayed")
        return "\n".join(lines)


class _Injector:
    """The faults of one direction: decides, byte by byte, what the other side receives."""

    def __init__(self, rates: dict[str, float], rng: random.Random, delay_s: float, stats: DirectionStats) -> None:
        self.rates, self.rng, self.delay_s, self.stats = rates, rng, delay_s, stats
        self.gaps = {kind: self._gap(p) for kind, p in rates.items()}
        self.lock = threading.Lock()

    def _gap(self, p: float) -> float:
        """Bytes that pass before the next fault of probability `p` per byte."""
        if p <= 0:
            return math.inf
        if p >= 1:
            return 0
        return math.floor(math.log(1.0 - self.rng.random()) / math.log(1.0 - p))

    def forward(self, data: bytes, send) -> None:
        """Send `data` through `send(bytes)` with this direction's faults applied."""
        with self.lock:
            events: dict[int, set[str]] = {}
            for kind, p in self.rates.items():
                pos = self.gaps[kind]
                while pos < len(data):
                    events.setdefault(int(pos), set()).add(kind)
                    pos += 1 + self._gap(p)
                self.gaps[kind] = pos - len(data)
            self.stats.bytes_received += len(data)
            out, start = bytearray(), 0
            for pos in sorted(events):
                kinds = events[pos]
                out += data[start:pos]
                start = pos + 1
                if "delay" in kinds:
                    self._send(out, send)
                    time.sleep(self.delay_s)
                    self.stats.delayed += 1
                if "drop" in kinds:
                    self.stats.dropped += 1
                    continue
                byte = data[pos]
                if "corrupt" in kinds:
                    byte ^= 1 << self.rng.randrange(8)
                    self.stats.corrupted += 1
                out.append(byte)
                if "duplicate" in kinds:
                    out.append(byte)
                    self.stats.duplicated += 1
            out += data[start:]
            self._send(out, send)

    def _send(self, out: bytearray, send) -> None:
        if out:
            send(bytes(out))
            self.stats.bytes_forwarded += len(out)
            out.clear()


class FaultProxy:
    """Listens on 127.0.0.1 (`.port`, `.url`) and relays each connection to `target` with faults
    (module docstring). A context manager; `close()` stops it. `.stats`: ProxyStats."""

    def __init__(self, target: tuple[str, int], *, drop=0.0, duplicate=0.0, corrupt=0.0, delay=0.0,
                 delay_s: float = 0.01, seed: int = 0, directions=DIRECTIONS, listen_port: int = 0) -> None:
        """target: (host, port) to relay to; drop/duplicate/corrupt/delay: probability per byte
        (a number, or {"to_target": p, "to_client": q}); delay_s: seconds per delay; seed: the
        faults' random seed; directions: which directions get faults; listen_port: 0 picks a free one."""
        self.target = (str(target[0]), int(target[1]))
        unknown = set(directions) - set(DIRECTIONS)
        if unknown:
            raise ValueError(f"unknown direction(s) {sorted(unknown)}; use {DIRECTIONS}")
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.stats = ProxyStats()
        self._injectors = {}
        given = dict(drop=drop, duplicate=duplicate, corrupt=corrupt, delay=delay)
        for direction in DIRECTIONS:
            rates = {kind: _rate(kind, value, direction) if direction in directions else 0.0
                     for kind, value in given.items()}
            self._injectors[direction] = _Injector({k: p for k, p in rates.items() if p > 0},
                                                   random.Random(f"{seed}/{direction}"), delay_s,
                                                   getattr(self.stats, direction))
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", int(listen_port)))
        self._server.listen(4)
        self._server.settimeout(0.05)
        self.port = self._server.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, name=f"fault-proxy-{self.port}", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> "FaultProxy":
        """Start accepting connections (idempotent); returns self."""
        if not self._accepter.is_alive() and not self._stop.is_set():
            self._accepter.start()
        return self

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, cut every relayed connection and wait for the threads."""
        self._stop.set()
        with self._lock:
            for sock in self._sockets:
                _shutdown(sock)
        if self._accepter.is_alive():
            self._accepter.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._server.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = self._connect_target()
            if upstream is None:
                client.close()
                continue
            self.stats.connections += 1
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            done = threading.Barrier(2, action=lambda c=client, u=upstream: (c.close(), u.close()))
            for src, dst, direction in ((client, upstream, "to_target"), (upstream, client, "to_client")):
                thread = threading.Thread(target=self._pump, args=(src, dst, self._injectors[direction], done),
                                          name=f"fault-proxy-{direction}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _connect_target(self) -> socket.socket | None:
        """A connection to the target, retried while it refuses (it may still be starting)."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not self._stop.is_set():
            try:
                return socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_S)
            except ConnectionRefusedError as exc:
                if time.monotonic() > deadline:
                    self.errors.append(f"target {self.target[0]}:{self.target[1]} refused the connection: {exc}")
                    return None
                time.sleep(0.05)
            except OSError as exc:
                self.errors.append(f"cannot connect to target {self.target[0]}:{self.target[1]}: {exc}")
                return None
        return None

    def _pump(self, src: socket.socket, dst: socket.socket, injector: _Injector, done: threading.Barrier) -> None:
        src.settimeout(None)
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                injector.forward(data, dst.sendall)
        except OSError:
            pass  # either side closed: end this direction
        _shutdown(dst, socket.SHUT_WR)
        try:
            done.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


def _rate(kind: str, value, direction: str) -> float:
    """The probability of fault `kind` in `direction` from a number or a per-direction mapping."""
    p = float(value.get(direction, 0.0)) if isinstance(value, dict) else float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{kind} rate must be a probability in [0, 1], got {p}")
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m edgevit.backend.hil.fault_proxy --target HOST:PORT [...]`: print the proxy's URL,
    relay until Ctrl-C / SIGTERM, then print the stats."""
    parser = argparse.ArgumentParser(prog="python -m edgevit.backend.hil.fault_proxy",
                                     description="Relay TCP with byte faults (drop, duplicate, corrupt, delay).")
    parser.add_argument("--target", required=True, help="HOST:PORT to relay to (e.g. an emulated board's UART)")
    parser.add_argument("--listen", type=int, default=0, help="port to listen on at 127.0.0.1 (0: a free one)")
    for kind, what in (("drop", "drop"), ("duplicate", "send twice"), ("corrupt", "flip one bit of"),
                       ("delay", "hold the stream before")):
        parser.add_argument(f"--{kind}", type=float, default=0.0, help=f"probability per byte to {what} a byte")
    parser.add_argument("--delay-s", type=float, default=0.01, help="seconds per delay (0.01)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the faults (0)")
    parser.add_argument("--direction", choices=("both", "to-target", "to-client"), default="both",
                        help="which direction gets the faults (both)")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--target must be HOST:PORT, got {args.target!r}")
    directions = DIRECTIONS if args.direction == "both" else (args.direction.replace("-", "_"),)
    try:
        proxy = FaultProxy((host, int(port)), drop=args.drop, duplicate=args.duplicate, corrupt=args.corrupt,
                           delay=args.delay, delay_s=args.delay_s, seed=args.seed, directions=directions,
                           listen_port=args.listen)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with proxy:
        print(f"listening on {proxy.url} -> {host}:{port}", flush=True)
        while not stopped.wait(0.2):
            pass
    print(proxy.stats.summary(), flush=True)
    for error in proxy.errors:
        print(f"error: {error}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
