"""The overlay's functional simulator: runs an instruction stream on NumPy memories (docs/fpga-isa.md).

    stats = run_stream(cfg, stream, ddr)                  # ddr: uint8 1-D, modified in place
    stats = run_stream(cfg, stream, ddr, order="load-first")

The machine is the overlay's: DDR, the four scratchpads (`fsim_ops.State`), three modules (load,
compute, store) each executing its own queue in stream order, and the four 8-bit token counters
l2c, c2l, c2s, s2c. `order` picks the interleaving of the modules:

- "in-order": the stream order (what a sequential reading of the stream means);
- "load-first": decoupled; after every instruction the scheduler runs the load module if its next
  instruction's tokens are available, else compute, else store (load runs as far ahead as it can);
- "store-first": decoupled, priority store, then compute, then load.

A stream whose tokens order every cross-module access gives the same DDR for every order; a missing
token shows up as a different result (or an error) under one of the decoupled orders (`check_orders`
runs all three). `check_tokens` checks the static rules first: legal flags per module, every pop
preceded in stream order by the push it consumes, no counter above 255, FINISH last.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.fsim_ops import OPS, FsimError, State
from edgevit.targets.fpga.isa import DEP_FLAGS, Insn, IsaError, decode_stream

__all__ = ["run_stream", "check_tokens", "check_orders", "FsimError", "FsimStats", "ORDERS"]

ORDERS = {"in-order": None, "load-first": ("load", "compute", "store"),
          "store-first": ("store", "compute", "load")}
COUNTER_MAX = 255
# (module, flag) -> the counter it pops / pushes
POPS = {("load", "pop_next"): "c2l", ("compute", "pop_prev"): "l2c", ("compute", "pop_next"): "s2c",
        ("store", "pop_prev"): "c2s"}
PUSHES = {("load", "push_next"): "l2c", ("compute", "push_prev"): "c2l", ("compute", "push_next"): "c2s",
          ("store", "push_prev"): "s2c"}
COUNTERS = ("l2c", "c2l", "c2s", "s2c")


@dataclass
class FsimStats:
    """What a run did: per-op instruction counts, GEMM steps and MACs (= gemm_steps * bm * bk), DMA bytes,
    elements written by vector instructions, tokens pushed and the peak of each counter, tokens left at the end."""

    order: str = "in-order"
    instructions: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    gemm_steps: int = 0
    macs: int = 0
    dma_load_bytes: int = 0
    dma_store_bytes: int = 0
    load_bytes: dict[str, int] = field(default_factory=dict)
    vector_elements: int = 0
    tokens_pushed: dict[str, int] = field(default_factory=dict)
    peak_tokens: dict[str, int] = field(default_factory=dict)
    tokens_left: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Every statistic as plain JSON-able values."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


def _pops(insn: Insn) -> list[str]:
    return [POPS[(insn.module, f)] for f in ("pop_prev", "pop_next") if insn.fields[f]]


def _pushes(insn: Insn) -> list[str]:
    return [PUSHES[(insn.module, f)] for f in ("push_prev", "push_next") if insn.fields[f]]


def check_tokens(insns: Sequence[Insn]) -> None:
    """Static token rules of a stream (FsimError naming the instruction): flags legal for the module,
    every pop preceded in stream order by a push it can consume, no counter above 255 in stream order,
    the stream non-empty and ending with its only FINISH."""
    counters = dict.fromkeys(COUNTERS, 0)
    if not insns:
        raise FsimError("the stream is empty; it must end with FINISH")
    for idx, insn in enumerate(insns):
        where = f"instruction {idx} ({insn.op})"
        for flag in DEP_FLAGS:
            if insn.fields[flag] and ((insn.module, flag) not in POPS and (insn.module, flag) not in PUSHES):
                raise FsimError(f"{where}: the {insn.module} module has no {flag.split('_')[1]} module ({flag})")
        if insn.op == "FINISH" and idx != len(insns) - 1:
            raise FsimError(f"{where}: FINISH must be the last instruction (the stream has {len(insns)})")
        for c in _pops(insn):
            if counters[c] == 0:
                raise FsimError(f"{where}: pops {c} but no earlier instruction pushed an unconsumed {c} token "
                                f"(token rule 1: every pop follows its push in stream order)")
            counters[c] -= 1
        for c in _pushes(insn):
            counters[c] += 1
            if counters[c] > COUNTER_MAX:
                raise FsimError(f"{where}: pushes {c} to {counters[c]} > {COUNTER_MAX} "
                                f"(token rule 2: 8-bit counters)")
    if insns[-1].op != "FINISH":
        raise FsimError(f"instruction {len(insns) - 1} ({insns[-1].op}): the stream must end with FINISH")


class _Machine:
    """The three modules' queues, the token counters and the memories of one run."""

    def __init__(self, cfg: OverlayConfig, insns: Sequence[Insn], ddr: np.ndarray, order: str) -> None:
        self.state = State(cfg, ddr)
        self.insns = insns
        self.queues = {m: [k for k, insn in enumerate(insns) if insn.module == m] for m in ("load", "compute", "store")}
        self.heads = dict.fromkeys(self.queues, 0)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.pushed = dict.fromkeys(COUNTERS, 0)
        self.peak = dict.fromkeys(COUNTERS, 0)
        self.order = order

    def ready(self, idx: int) -> str | None:
        """None when instruction idx can start, else the counter it waits for: a pop of an empty counter,
        or a push into a full one (the hardware stalls a module whose push would pass COUNTER_MAX)."""
        for c in _pops(self.insns[idx]):
            if self.counters[c] == 0:
                return c
        for c in _pushes(self.insns[idx]):
            if self.counters[c] >= COUNTER_MAX:
                return f"room in {c}"
        return None

    def execute(self, idx: int) -> None:
        """Pop, do the work, push (`ready` said the pushes fit)."""
        insn = self.insns[idx]
        where = f"instruction {idx} ({insn.op})"
        for c in _pops(insn):
            self.counters[c] -= 1
        OPS[insn.op](self.state, insn, where)
        for c in _pushes(insn):
            self.counters[c] += 1
            self.pushed[c] += 1
            self.peak[c] = max(self.peak[c], self.counters[c])

    def deadlock(self) -> FsimError:
        """The error describing what each unfinished module waits for."""
        waits, done = [], []
        for m, q in self.queues.items():
            if self.heads[m] == len(q):
                done.append(f"{m} finished")
            else:
                idx = q[self.heads[m]]
                waits.append(f"{m} waits for {self.ready(idx)} at instruction {idx}")
        return FsimError("deadlock: " + ", ".join(waits) + ("; " + ", ".join(done) if done else ""))

    def run_in_order(self) -> None:
        """Every instruction in stream order."""
        for idx, insn in enumerate(self.insns):
            if self.ready(idx) is not None:
                for m in self.queues:  # record progress so the message names the right waits
                    self.heads[m] = sum(1 for k in self.queues[m] if k < idx)
                raise self.deadlock()
            self.execute(idx)

    def run_priority(self, priority: tuple[str, ...]) -> None:
        """Decoupled modules: after each instruction, run the first module in `priority` whose next
        instruction's tokens are available; deadlock when none can run before all queues drain."""
        remaining = len(self.insns)
        while remaining:
            for m in priority:
                q, h = self.queues[m], self.heads[m]
                if h < len(q) and self.ready(q[h]) is None:
                    self.execute(q[h])
                    self.heads[m] = h + 1
                    remaining -= 1
                    break
            else:
                raise self.deadlock()


def _as_insns(stream) -> list[Insn]:
    if isinstance(stream, (bytes, bytearray, memoryview)):
        try:
            return decode_stream(bytes(stream))
        except IsaError as e:
            raise FsimError(f"cannot decode the stream: {e}") from e
    insns = list(stream)
    for idx, insn in enumerate(insns):
        if not isinstance(insn, Insn):
            raise FsimError(f"instruction {idx}: expected an Insn, got {type(insn).__name__}")
    return insns


def run_stream(cfg: OverlayConfig, stream: bytes | Sequence[Insn], ddr: np.ndarray, order: str = "in-order",
               *, static_check: bool = True) -> FsimStats:
    """Run `stream` (bytes, 32 per instruction, or Insn list) on overlay `cfg` with DDR `ddr` (uint8 1-D,
    modified in place) in `order` ("in-order", "load-first", "store-first"); FsimError on any breach.
    static_check=False skips `check_tokens` (to exercise the dynamic deadlock / counter checks)."""
    if order not in ORDERS:
        raise FsimError(f"unknown order {order!r}; use one of {sorted(ORDERS)}")
    if not (isinstance(ddr, np.ndarray) and ddr.dtype == np.uint8 and ddr.ndim == 1):
        raise FsimError("ddr must be a 1-D uint8 numpy array (modified in place)")
    insns = _as_insns(stream)
    if static_check:
        check_tokens(insns)
    m = _Machine(cfg, insns, ddr, order)
    if ORDERS[order] is None:
        m.run_in_order()
    else:
        m.run_priority(ORDERS[order])
    counts = m.state.counts
    return FsimStats(order=order, instructions=len(insns), op_counts=dict(Counter(i.op for i in insns)),
                     gemm_steps=counts["gemm_steps"], macs=counts["gemm_steps"] * cfg.bm * cfg.bk,
                     dma_load_bytes=counts["dma_load_bytes"], dma_store_bytes=counts["dma_store_bytes"],
                     load_bytes={k: counts[f"load_{k}_bytes"] for k in ("act", "wgt", "param")},
                     vector_elements=counts["vector_elements"], tokens_pushed=dict(m.pushed),
                     peak_tokens=dict(m.peak), tokens_left=dict(m.counters))


def check_orders(cfg: OverlayConfig, stream: bytes | Sequence[Insn], ddr: np.ndarray) -> FsimStats:
    """Token rule 3: run the stream in every order on copies of `ddr`; FsimError when a decoupled order's DDR
    differs from in-order's (a cross-module access without a token). Leaves the in-order result in `ddr`."""
    insns = _as_insns(stream)
    ref = ddr.copy()
    stats = run_stream(cfg, insns, ref)
    for order in ("load-first", "store-first"):
        other = ddr.copy()
        run_stream(cfg, insns, other, order)
        if not np.array_equal(other, ref):
            first = int(np.flatnonzero(other != ref)[0])
            raise FsimError(f"order {order!r} gives a different DDR than in-order (first at byte {first}): "
                            f"a load, compute or store touches scratchpad bytes another module uses without a "
                            f"token ordering them (token rule 3)")
    ddr[...] = ref
    return stats
