"""Where every Program tensor lives in the ACT scratchpad: a liveness-based first-fit allocator.

Each ACT buffer is a tensor (a `reshape` output shares its input's buffer: one unit, live over the union
of the lifetimes) or a kernel's scratch (attention's probabilities, add_pos's positional embedding), live
from its first definition to its last read, in kernel indices (program inputs from -1, before kernel 0:
they are loaded first; program outputs to len(kernels): they are stored last). Every buffer starts at a
multiple of ACT_ALIGN and is followed by `bk` spare bytes, so GEMM may read `bk` bytes from any row
start. Buffers are placed largest first, each at the lowest aligned offset free of every placed buffer
whose lifetime overlaps. A Program whose activations do not fit ACT is refused (spilling to DDR is
later work).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgevit.lower.program import Program
from edgevit.targets.fpga.compiler.common import ACT_ALIGN, FpgaCompileError, align
from edgevit.targets.fpga.config import OverlayConfig


@dataclass
class ActLayout:
    """ACT byte address of each tensor (`addr`) and kernel scratch (`scratch[(kernel, key)]`); `peak` bytes."""

    addr: dict[str, int] = field(default_factory=dict)
    scratch: dict[tuple[str, str], int] = field(default_factory=dict)
    peak: int = 0


@dataclass
class _Unit:
    key: object
    size: int
    first: int
    last: int


def plan_act(program: Program, cfg: OverlayConfig, in_act: set[str],
             scratch: dict[tuple[int, str], int]) -> ActLayout:
    """Place the tensors named in `in_act` and the scratch buffers {(kernel index, key): bytes} in ACT.

    Returns an ActLayout; FpgaCompileError when the peak exceeds cfg.act_bytes."""
    root = {}
    for k in program.kernels:
        if k.op == "reshape":
            root[k.outputs[0]] = root.get(k.inputs[0], k.inputs[0])
    units: dict[object, _Unit] = {}
    first = {t: -1 for t in program.inputs}
    for i, k in enumerate(program.kernels):
        for t in k.outputs:
            first[t] = i
    last = program.last_uses()
    for t in in_act:
        r = root.get(t, t)
        info = program.tensors[t]
        lo, hi = first[t], max(last.get(t, first[t]), first[t])
        u = units.get(r)
        size = info.nbytes
        if u is None:
            units[r] = _Unit(r, size, lo, hi)
        else:
            u.size, u.first, u.last = max(u.size, size), min(u.first, lo), max(u.last, hi)
    for (i, key), size in scratch.items():
        units[(i, key)] = _Unit((i, key), size, i, i)
    placed: list[tuple[int, int, _Unit]] = []
    addr: dict[object, int] = {}
    for u in sorted(units.values(), key=lambda u: (-u.size, u.first, str(u.key))):
        need = align(u.size + cfg.bk, ACT_ALIGN)
        busy = sorted((s, e) for s, e, v in placed if v.first <= u.last and u.first <= v.last)
        offset = 0
        for s, e in busy:
            if s - offset >= need:
                break
            offset = max(offset, e)
        placed.append((offset, offset + need, u))
        addr[u.key] = offset
    peak = max((e for _, e, _ in placed), default=0)
    if peak > cfg.act_bytes:
        biggest = sorted(units.values(), key=lambda u: -u.size)[:3]
        names = ", ".join(f"{u.key} ({u.size} B)" for u in biggest)
        raise FpgaCompileError(f"program {program.name!r}: activations need {peak} bytes of ACT at their peak but the "
                               f"overlay has {cfg.act_bytes} (largest buffers: {names}); spilling to DDR is not "
                               "implemented: shrink the model (tome / prune / smaller embed_dim) or use a larger part")
    layout = ActLayout(peak=peak)
    for t in in_act:
        layout.addr[t] = addr[root.get(t, t)]
    names = {i: k.name for i, k in enumerate(program.kernels)}
    for (i, key) in scratch:
        layout.scratch[(names[i], key)] = addr[(i, key)]
    return layout
