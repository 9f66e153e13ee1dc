"""A Python AXI4 slave DDR model for amaranth.sim tests of the overlay's masters (DMA, fetch).

`AxiDdr(mem, base)` serves reads and writes of `mem` (a bytearray at byte address `base`) with a random
read latency, random ready back-pressure and a bandwidth cap (the share of cycles a data beat may move).
It checks the AXI4 rules the masters must keep and records every burst: INCR only, len <= 255, size =
the bus, no burst crossing 4 KB, WLAST on the burst's last beat, no W beat without its AW.
"""

from __future__ import annotations

import random
from collections import deque

PAGE = 4096


class AxiDdr:
    """The DDR model; `read_process(port)` / `write_process(port)` are amaranth.sim processes."""

    def __init__(self, mem: bytearray, base: int, bus_bytes: int, seed: int = 0, latency: tuple[int, int] = (1, 12),
                 ready_prob: float = 0.7, bandwidth: float = 1.0):
        self.mem, self.base, self.bus_bytes = mem, base, bus_bytes
        self.rng = random.Random(seed)
        self.latency, self.ready_prob, self.bandwidth = latency, ready_prob, bandwidth
        self.bursts: list[tuple[str, int, int]] = []       # (kind, address, beats)
        self.errors: list[str] = []
        self._last: dict[str, tuple] = {}

    def _check_burst(self, kind: str, addr: int, alen: int, size: int, burst: int) -> None:
        beats = alen + 1
        self.bursts.append((kind, addr, beats))
        if burst != 1:
            self.errors.append(f"{kind} burst type {burst}, not INCR")
        if 1 << size != self.bus_bytes:
            self.errors.append(f"{kind} size {1 << size} != bus {self.bus_bytes}")
        if addr % self.bus_bytes:
            self.errors.append(f"{kind} address {addr:#x} not aligned to the bus")
        if addr // PAGE != (addr + beats * self.bus_bytes - 1) // PAGE:
            self.errors.append(f"{kind} burst {addr:#x} x {beats} crosses 4 KB")
        if not self.base <= addr or addr + beats * self.bus_bytes > self.base + len(self.mem):
            self.errors.append(f"{kind} burst {addr:#x} x {beats} outside the DDR model")

    def _check_held(self, channel: str, now: tuple) -> None:
        """A master's valid, once raised, stays with the same payload until ready (AXI4 A3.2.1)."""
        before = self._last.get(channel)
        if before is not None and before[0] and not before[1] and (not now[0] or now[2:] != before[2:]):
            self.errors.append(f"{channel}: valid dropped or payload changed before ready")
        self._last[channel] = now

    def _word(self, addr: int) -> int:
        off = addr - self.base
        return int.from_bytes(bytes(self.mem[off:off + self.bus_bytes]).ljust(self.bus_bytes, b"\0"), "little")

    def read_process(self, port):
        """An amaranth.sim process serving the read master `port` (AR and R channels)."""
        async def process(ctx):
            pending: deque = deque()          # [ready_cycle, addr, beats left]
            cycle = 0
            ctx.set(port.arready, self.rng.random() < self.ready_prob)
            async for _, _, arvalid, arready, araddr, arlen, arsize, arburst, rvalid, rready in ctx.tick().sample(
                    port.arvalid, port.arready, port.araddr, port.arlen, port.arsize, port.arburst,
                    port.rvalid, port.rready):
                cycle += 1
                if arvalid and arready:
                    self._check_burst("read", araddr, arlen, arsize, arburst)
                    pending.append([cycle + self.rng.randint(*self.latency), araddr, arlen + 1])
                if rvalid and rready:
                    head = pending[0]
                    head[1] += self.bus_bytes
                    head[2] -= 1
                    if head[2] == 0:
                        pending.popleft()
                self._check_held("AR", (arvalid, arready, araddr, arlen))
                ctx.set(port.arready, self.rng.random() < self.ready_prob)
                if rvalid and not rready:
                    pass                      # a valid beat stays until taken (AXI4 A3.2.1)
                elif pending and pending[0][0] <= cycle and self.rng.random() < self.bandwidth:
                    ctx.set(port.rvalid, 1)
                    ctx.set(port.rdata, self._word(pending[0][1]))
                    ctx.set(port.rlast, pending[0][2] == 1)
                else:
                    ctx.set(port.rvalid, 0)
        return process

    def write_process(self, port):
        """An amaranth.sim process serving the write master `port` (AW, W and B channels)."""
        async def process(ctx):
            bursts: deque = deque()           # [addr, beats left] of accepted AWs
            responses: deque = deque()        # cycles at which a B response may be given
            cycle = 0
            async for _, _, awvalid, awready, awaddr, awlen, awsize, awburst, wvalid, wready, wdata, wstrb, wlast, \
                    bvalid, bready in ctx.tick().sample(
                        port.awvalid, port.awready, port.awaddr, port.awlen, port.awsize, port.awburst,
                        port.wvalid, port.wready, port.wdata, port.wstrb, port.wlast, port.bvalid, port.bready):
                cycle += 1
                if awvalid and awready:
                    self._check_burst("write", awaddr, awlen, awsize, awburst)
                    bursts.append([awaddr, awlen + 1])
                if wvalid and wready:
                    if not bursts:
                        self.errors.append("W beat before its AW")
                    else:
                        head = bursts[0]
                        off = head[0] - self.base
                        for i in range(self.bus_bytes):
                            if wstrb >> i & 1:
                                self.mem[off + i] = (wdata >> (8 * i)) & 0xFF
                        head[0] += self.bus_bytes
                        head[1] -= 1
                        if bool(wlast) != (head[1] == 0):
                            self.errors.append(f"WLAST {wlast} with {head[1]} beats left")
                        if head[1] == 0:
                            bursts.popleft()
                            responses.append(cycle + self.rng.randint(*self.latency))
                if bvalid and bready:
                    responses.popleft()
                self._check_held("AW", (awvalid, awready, awaddr, awlen))
                self._check_held("W", (wvalid, wready, wdata, wstrb, wlast))
                ctx.set(port.awready, self.rng.random() < self.ready_prob)
                ctx.set(port.wready, self.rng.random() < self.ready_prob * self.bandwidth)
                ctx.set(port.bvalid, bool(responses) and responses[0] <= cycle)
        return process
