"""Static memory planner: liveness, in-place reuse, chunked row-wise chains, offsets in one arena.

See docs/mcu-backend.md ("Memory plan") for the contract. The planner knows no backend: it
reads each op's `PlanTraits` (edgevit/lower/ops/traits.py) and a target's `ArenaConfig`; what a
target adds around the arena (stack, weights, code) is the target's. How `plan_program` works:

1. Units. A tensor and its `alias` outputs (reshape) are one unit: one buffer, live from the
   first definition to the last read of any member. Program inputs live from step 0, program
   outputs to the last step (the driver copies them in and out).
2. Steps. Runs of consecutive row-wise kernels whose tensors all have the same R >= 3 rows may
   be cut into chains. In a chain [a, b] run chunk by chunk, a tensor produced inside whose every
   reader is inside is private: it is a `chunk` buffer of chunk_rows rows, except when the
   producer may write it in place over a whole input that dies there (then it stays whole and
   costs nothing: the residual stream of a ViT lives in one buffer). Everything else is whole.
   In-place (traits.inplace of output 0): the input's unit dies at the kernel, same kind, same
   bytes (chunk: same row bytes). A step's live bytes are the whole units live at it, the chunk
   buffers and the scratch of its kernels (`traits.scratch(kernel, ins, outs, chunk_rows)`).
   Segmentation, two dynamic programs per run: first the least achievable peak of live bytes
   with the smallest chunk (2 rows); T = the largest such peak over the program (the best lower
   bound this model of the code allows); then, with every step's live bytes <= T, the fewest
   kernel calls (largest chunks; chains only where memory needs them), ties to fewer steps.
3. Offsets (`allocate.allocate`): greedy, largest first, each buffer at the lowest offset aligned
   to `ArenaConfig.alignment` (8 by default) free of every placed buffer whose lifetime overlaps,
   with other orders tried while the arena is above the live-bytes bound. If the arena A still
   exceeds T, step 2 is redone with A as the bound (larger chunks, same arena) and kept when the
   arena does not grow.
4. `naive_bytes` (`naive.naive_plan`): the TFLite-Micro-style baseline on the same allocator.
Layout: this module (facts, steps, buffers, the plan), `allocate.py` (offsets), `naive.py` (the
baseline). TVM is never imported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgevit.backend.allocate import ALIGN, align, allocate, live_timeline
from edgevit.backend.naive import naive_plan
from edgevit.lower.ops import get_op
from edgevit.lower.ops.traits import no_scratch

_ITEMSIZE = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "int64": 8}


@dataclass(frozen=True)
class ArenaConfig:
    """What a target may vary in the arena plan: `alignment` (bytes) of every buffer's offset."""

    alignment: int = ALIGN


@dataclass(frozen=True)
class Buffer:
    """A region of the arena: [offset, offset + size), live from step `first` to step `last` (inclusive).

    kind: "tensor" (a whole tensor), "chunk" (a chain intermediate, chunk_rows rows) or "scratch".
    """

    name: str
    offset: int
    size: int
    first: int
    last: int
    kind: str = "tensor"


@dataclass(frozen=True)
class Step:
    """What the driver executes: program kernels `kernels` (indices, in order); with `chunk_rows`
    they form a chain of row-wise kernels run on `chunk_rows` rows at a time over `rows` rows."""

    kernels: tuple[int, ...]
    chunk_rows: int | None = None
    rows: int | None = None


@dataclass
class MemoryPlan:
    """The planner's result: the arena's steps, buffers and offsets and its figures (bytes)."""

    steps: list[Step]
    buffers: dict[str, Buffer]
    tensor_buffer: dict[str, str]  # tensor name -> buffer name (aliases and in-place share)
    scratch_buffer: dict[str, str]  # kernel name -> its scratch buffer name (kernels with scratch)
    arena_bytes: int
    lower_bound_bytes: int
    naive_bytes: int
    timeline: list[int] = field(default_factory=list)  # live bytes per step
    naive_timeline: list[int] = field(default_factory=list)  # live bytes per kernel, naive plan
    budget: int | None = None  # arena bytes the caller allows (recorded; the plan never depends on it)

    @property
    def fits_budget(self) -> bool:
        """True when no budget was given or the arena fits it."""
        return self.budget is None or self.arena_bytes <= self.budget

    def offset_of(self, tensor: str) -> int:
        """Arena offset of a tensor's buffer."""
        return self.buffers[self.tensor_buffer[tensor]].offset

    def is_chunked(self, tensor: str) -> bool:
        """True when `tensor` exists only chunk_rows rows at a time (a chain's private intermediate)."""
        return self.buffers[self.tensor_buffer[tensor]].kind == "chunk"


# ---- program facts -------------------------------------------------------------------------------
class Facts:
    """Per-program facts the planner reads: units (alias groups), their bytes, definition and
    last use (kernel indices; -1 = program input, K = program output), the ops' PlanTraits,
    chainable rows. ProgramError for an op no OpDef declares."""

    def __init__(self, program) -> None:
        self.program, ks = program, program.kernels
        self.K = len(ks)
        self.traits = [get_op(k.op, k.name).traits for k in ks]
        t = program.tensors
        self.unit = {n: n for n in t}
        for k, tr in zip(ks, self.traits):
            if tr.alias:
                self.unit[k.outputs[0]] = self.unit[k.inputs[0]]
        self.ins = [tuple(self.unit[x] for x in k.inputs) for k in ks]
        self.outs = [() if tr.alias else tuple(k.outputs) for k, tr in zip(ks, self.traits)]
        self.nbytes = {n: math.prod(x.shape) * _ITEMSIZE[x.dtype] for n, x in t.items()}
        self.row_bytes = {n: self.nbytes[n] // t[n].shape[0] for n in t}
        self.d = {n: -1 for n in program.inputs}
        for i, k in enumerate(ks):
            for o in self.outs[i]:
                self.d[o] = i
        self.last = {u: max(i, 0) for u, i in self.d.items()}
        for i, k in enumerate(ks):
            for u in self.ins[i]:
                self.last[u] = max(self.last[u], i)
        for o in program.outputs:
            self.last[self.unit[o]] = self.K
        self.in_infos = [[t[x] for x in k.inputs] for k in ks]
        self.out_infos = [[t[x] for x in k.outputs] for k in ks]
        self.rows = [self._chain_rows(i) for i in range(self.K)]
        self._scratch: dict[tuple[int, int | None], int] = {}

    def _chain_rows(self, i: int) -> int | None:
        """R when kernel i may join a chain (row-wise, every tensor R >= 3 rows), else None."""
        if not self.traits[i].row_wise:
            return None
        rows = {x.shape[0] for x in self.in_infos[i] + self.out_infos[i]}
        r = rows.pop() if len(rows) == 1 else None
        return r if r is not None and r >= 3 else None

    def scratch(self, i: int, rows: int | None) -> int:
        """Scratch bytes of kernel i run on `rows` rows (None = all); memoised."""
        got = self._scratch.get((i, rows))
        if got is None:
            k = self.program.kernels[i]
            got = self._scratch[i, rows] = int(self.traits[i].scratch(k, self.in_infos[i], self.out_infos[i], rows))
        return got

    def runs(self) -> list[tuple[int, int]]:
        """Maximal [s, e] ranges (e > s) of consecutive chainable kernels with the same rows."""
        out, i = [], 0
        while i < self.K:
            j = i
            while self.rows[i] is not None and j + 1 < self.K and self.rows[j + 1] == self.rows[i]:
                j += 1
            if j > i:
                out.append((i, j))
            i = j + 1
        return out


def classify(f: Facts, a: int, b: int, chunked: bool) -> dict[str, tuple[str, str | None]]:
    """Outputs of kernels a..b (one step; a chain when `chunked`) -> (kind "whole" | "chunk",
    the input unit it is written in place over, or None). See the module docstring."""
    res: dict[str, tuple[str, str | None]] = {}
    for k in range(a, b + 1):
        for oi, t in enumerate(f.outs[k]):
            private = chunked and f.last[t] <= b
            cands = [f.ins[k][i] for i in f.traits[k].inplace if i < len(f.ins[k])] if oi == 0 else []
            cands = [u for u in cands if f.last[u] == k]
            kind_of = {u: res.get(u, ("whole", None))[0] for u in cands}
            into = next((u for u in cands if kind_of[u] == "whole" and f.nbytes[u] == f.nbytes[t]), None)
            if into is not None or not private:
                res[t] = ("whole", into)
                continue
            into = next((u for u in cands if kind_of[u] == "chunk" and f.row_bytes[u] == f.row_bytes[t]), None)
            res[t] = ("chunk", into)
    return res


class _StepCost:
    """Live bytes of a candidate step [a, b]: whole + chunk_rows * chunk_row_bytes + scratch."""

    def __init__(self, f: Facts, units: list[str], a: int, b: int, chunked: bool) -> None:
        self.f, self.a, self.b, self.chunked, self.memo = f, a, b, chunked, {}
        self.scratchy = [k for k in range(a, b + 1) if f.traits[k].scratch is not no_scratch]
        cls = classify(f, a, b, chunked)
        self.whole = self.chunk_row = 0
        for u in units:
            if f.d[u] > b or f.last[u] < a:
                continue
            kind, into = cls.get(u, ("whole", None))
            if into is not None:
                continue
            if kind == "chunk":
                self.chunk_row += f.row_bytes[u]
            else:
                self.whole += f.nbytes[u]

    def bytes(self, chunk: int | None) -> int:
        """Live bytes at this step with `chunk` rows per chunk (None for a single kernel)."""
        got = self.memo.get(chunk)
        if got is None:
            got = self.memo[chunk] = (self.whole + (chunk or 0) * self.chunk_row
                                      + sum(self.f.scratch(k, chunk) for k in self.scratchy))
        return got


def chunk_candidates(rows: int) -> list[int]:
    """Balanced chunk sizes ceil(rows / m) in [2, rows), largest first."""
    return sorted({-(-rows // m) for m in range(2, rows + 1)} - {1}, reverse=True)


def _segment_min_peak(costs: dict, s: int, e: int, cmin: int) -> int:
    """Least achievable max live bytes over the steps of run [s, e] (chains at `cmin` rows)."""
    best = [0] * (e - s + 2)
    for j in range(s, e + 1):
        best[j - s + 1] = min(max(best[i - s], costs[i, j].bytes(cmin if i < j else None)) for i in range(s, j + 1))
    return best[-1]


def _largest_chunk(cost: _StepCost, cands: list[int], bound: int) -> int | None:
    """The largest candidate chunk whose live bytes stay <= bound (binary search; bytes grow with chunk)."""
    lo, hi = 0, len(cands) - 1  # cands descending
    if cost.bytes(cands[hi]) > bound:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if cost.bytes(cands[mid]) <= bound:
            hi = mid
        else:
            lo = mid + 1
    return cands[lo]


def _segment_fewest_calls(f: Facts, costs: dict, s: int, e: int, bound: int) -> list[Step]:
    """Steps for run [s, e]: every step's live bytes <= bound, fewest kernel calls, then fewest steps."""
    rows = f.rows[s]
    cands = chunk_candidates(rows)
    inf = (math.inf, math.inf)
    best: list[tuple] = [(0, 0, None)] + [(math.inf, math.inf, None)] * (e - s + 1)
    for j in range(s, e + 1):
        for i in range(s, j + 1):
            prev = best[i - s]
            if prev[:2] == inf:
                continue
            if i == j:
                chunk, calls = None, (1 if costs[i, j].bytes(None) <= bound else math.inf)
            else:
                chunk = _largest_chunk(costs[i, j], cands, bound)
                calls = math.inf if chunk is None else (j - i + 1) * -(-rows // chunk)
            cand = (prev[0] + calls, prev[1] + 1, (i, chunk))
            if cand[:2] < best[j - s + 1][:2]:
                best[j - s + 1] = cand
    steps, j = [], e
    if best[-1][2] is None:  # bound below this run's best peak: cannot happen when bound >= its min peak
        return [Step((k,)) for k in range(s, e + 1)]
    while j >= s:
        i, chunk = best[j - s + 1][2]
        steps.append(Step(tuple(range(i, j + 1)), chunk, rows if chunk else None))
        j = i - 1
    return steps[::-1]


# ---- steps -> buffers -> offsets -------------------------------------------------------------------
def choose_steps(f: Facts, bound: int | None = None) -> tuple[list[Step], int]:
    """Steps of the whole program and T, the least peak of live bytes they can reach: with `bound`
    (>= T) the fewest-calls segmentation within `bound`, else within T."""
    runs = f.runs()
    in_run = {k for s, e in runs for k in range(s, e + 1)}
    units = list(f.d)
    peak, costs = 0, {}
    for k in range(f.K):
        if k not in in_run:
            peak = max(peak, _StepCost(f, units, k, k, False).bytes(None))
    for s, e in runs:
        near = [u for u in units if f.d[u] <= e and f.last[u] >= s]
        for i in range(s, e + 1):
            for j in range(i, e + 1):
                costs[i, j] = _StepCost(f, near, i, j, i < j)
        peak = max(peak, _segment_min_peak(costs, s, e, chunk_candidates(f.rows[s])[-1]))
    limit = peak if bound is None else max(bound, peak)
    steps, k = [], 0
    for s, e in runs + [(f.K, f.K)]:
        steps += [Step((i,)) for i in range(k, s)]
        if s < f.K:
            steps += _segment_fewest_calls(f, costs, s, e, limit)
        k = e + 1
    return steps, peak


def layout(f: Facts, steps: list[Step]) -> tuple[dict[str, list], dict[str, str], dict[str, str]]:
    """Buffers of a step list: name -> [size, first step, last step, kind]; tensor -> buffer;
    kernel -> scratch buffer. See the module docstring for the rules."""
    n = max(len(steps), 1)
    step_of = [0] * f.K
    for s, st in enumerate(steps):
        for k in st.kernels:
            step_of[k] = s

    def last_step(u: str) -> int:
        return n - 1 if f.last[u] >= f.K else step_of[f.last[u]] if f.K else 0

    root: dict[str, str] = {}
    bufs: dict[str, list] = {}
    for x in f.program.inputs:
        root[x], bufs[x] = x, [f.nbytes[x], 0, last_step(x), "tensor"]
    scratch: dict[str, str] = {}
    for s, st in enumerate(steps):
        cls = classify(f, st.kernels[0], st.kernels[-1], st.chunk_rows is not None)
        for k in st.kernels:
            for t in f.outs[k]:
                kind, into = cls[t]
                if into is not None:
                    root[t] = r = root[into]
                    bufs[r][2] = max(bufs[r][2], last_step(t) if kind == "whole" else s)
                elif kind == "chunk":
                    root[t], bufs[t] = t, [st.chunk_rows * f.row_bytes[t], s, s, "chunk"]
                else:
                    root[t], bufs[t] = t, [f.nbytes[t], s, last_step(t), "tensor"]
            size = f.scratch(k, st.chunk_rows)
            if size > 0:
                name = scratch[f.program.kernels[k].name] = f"{f.program.kernels[k].name}.scratch"
                bufs[name] = [size, s, s, "scratch"]
    tensor_buffer = {t: root[f.unit[t]] for t in f.program.tensors}
    return bufs, tensor_buffer, scratch


# ---- the plan -------------------------------------------------------------------------------------------
def _placed(f: Facts, steps: list[Step], alignment: int) -> tuple:
    """(steps, buffers, tensor_buffer, scratch_buffer, offsets, arena) of a step list."""
    bufs, tensor_buffer, scratch = layout(f, steps)
    items = [(name, b[0], b[1], b[2]) for name, b in bufs.items()]
    offsets, arena = allocate(items, lower=max(live_timeline([it[1:] for it in items], len(steps)), default=0),
                              alignment=alignment)
    return steps, bufs, tensor_buffer, scratch, offsets, arena


def plan_program(program, config: ArenaConfig = ArenaConfig(), budget: int | None = None) -> MemoryPlan:
    """Plan `program`'s arena (module docstring): steps, buffers and offsets (multiples of
    `config.alignment`), arena / lower bound / naive bytes and the live-bytes timelines. `budget`
    (arena bytes) is recorded in the plan (`fits_budget`) and never changes it: the plan is the
    smallest arena this planner finds, so the figure NAS optimises is the one the firmware uses."""
    f, alignment = Facts(program), config.alignment
    steps, peak = choose_steps(f)
    best = _placed(f, steps, alignment)
    if best[-1] > align(peak, alignment) and any(s.chunk_rows for s in steps):  # chunks may grow up to the arena
        again = _placed(f, choose_steps(f, bound=best[-1])[0], alignment)
        best = again if again[-1] <= best[-1] else best
    steps, bufs, tensor_buffer, scratch, offsets, arena = best
    buffers = {name: Buffer(name, offsets[name], b[0], b[1], b[2], b[3]) for name, b in bufs.items()}
    timeline = live_timeline([(b.size, b.first, b.last) for b in buffers.values()], len(steps))
    naive_bytes, naive_timeline = naive_plan(f, alignment)
    return MemoryPlan(steps=steps, buffers=buffers, tensor_buffer=tensor_buffer, scratch_buffer=scratch,
                      arena_bytes=arena, lower_bound_bytes=max(timeline, default=0), naive_bytes=naive_bytes,
                      timeline=timeline, naive_timeline=naive_timeline, budget=budget)


def largest_buffers(plan: MemoryPlan, program, n: int = 5) -> str:
    """The largest buffers live at the plan's peak step, e.g. "at step 5 (blocks.0.attn.core), 9,600 B live:
    t0.qkv (9,600 B), ..."."""
    bufs = list(plan.buffers.values())
    where = ""
    if plan.timeline:
        peak = max(range(len(plan.timeline)), key=lambda i: (plan.timeline[i], -i))
        bufs = [b for b in bufs if b.first <= peak <= b.last] or bufs
        names = ", ".join(program.kernels[k].name for k in plan.steps[peak].kernels)
        where = f"at step {peak} ({names}), {plan.timeline[peak]:,} B live: "
    bufs = sorted(bufs, key=lambda b: (-b.size, b.name))[:n]
    return where + ", ".join(f"{b.name} ({b.size:,} B)" for b in bufs)


def step_calls(step) -> list[int | None]:
    """The `rows` of every call a plan step makes per kernel: [None] for a single kernel; for a
    chain its full chunks (chunk_rows rows each) and the shorter tail."""
    if step.chunk_rows is None:
        return [None]
    full, tail = divmod(step.rows, step.chunk_rows)
    return [step.chunk_rows] * full + ([tail] if tail else [])
