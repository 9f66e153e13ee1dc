"""Offsets in one arena for buffers with lifetimes (the planner's step 3; also the naive plan's).

`allocate(items, lower, alignment)` places (name, size, first step, last step) items: greedy,
largest first (TensorFlow Lite Micro's greedy-by-size planner), each buffer at the lowest offset
that is a multiple of `alignment` (default ALIGN = 8) free of every placed buffer whose lifetime
overlaps. While the arena is above `lower` (the largest sum
of sizes live at one step, which no placement can beat), two other orders and a few seeded random
perturbations of the largest-first order are tried; the smallest arena wins. Deterministic: the
random orders come from a generator seeded with the number of items.
"""

from __future__ import annotations

import bisect
import random

ALIGN = 8  # the default alignment of arena offsets (bytes)

Item = tuple[str, int, int, int]  # (name, size in bytes, first step, last step), steps inclusive


def align(n: int, alignment: int = ALIGN) -> int:
    """n rounded up to a multiple of `alignment`."""
    return -(-n // alignment) * alignment


def live_timeline(items: list[tuple[int, int, int]], n: int) -> list[int]:
    """Live bytes per step 0..n-1 of (size, first, last) lifetimes (first/last inclusive)."""
    delta = [0] * (n + 1)
    for size, first, last in items:
        delta[first] += size
        delta[last + 1] -= size
    out, acc = [], 0
    for x in delta[:n]:
        acc += x
        out.append(acc)
    return out


_ORDERS = (lambda it: (-it[1], it[2], it[0]),  # largest first (TFLite Micro's greedy planner)
           lambda it: (-it[1] * (it[3] - it[2] + 1), it[2], it[0]),  # largest size x lifetime first
           lambda it: (it[2], -it[1], it[0]))  # earliest first


def greedy_offsets(items: list[Item], order, alignment: int = ALIGN) -> tuple[dict[str, int], int]:
    """Place `items` sorted by the key `order`, each at the lowest `alignment`-aligned offset free of
    every placed item whose lifetime overlaps; returns ({name: offset}, arena = max offset + size)."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, aligned end, first, last), by offset
    offsets, arena = {}, 0
    for name, size, first, last in sorted(items, key=order):
        off = 0
        for o, end, f0, l0 in placed:
            if f0 <= last and first <= l0:
                if o >= off + size:
                    break
                off = max(off, end)
        offsets[name] = off
        bisect.insort(placed, (off, align(off + size, alignment), first, last))
        arena = max(arena, off + size)
    return offsets, arena


def allocate(items: list[Item], lower: int = 0, tries: int = 12, alignment: int = ALIGN) -> tuple[dict[str, int], int]:
    """({name: offset}, arena bytes) for (name, size, first, last) items, offsets multiples of
    `alignment`: the best (smallest arena) of the greedy orders; while that is above `lower` (the
    live-bytes bound), also of up to `tries` seeded random perturbations of the largest-first order
    (deterministic)."""
    bound = align(lower, alignment)
    best = greedy_offsets(items, _ORDERS[0], alignment)
    for order in _ORDERS[1:]:
        if best[1] <= bound:
            break
        got = greedy_offsets(items, order, alignment)
        best = got if got[1] < best[1] else best
    rng = random.Random(len(items))
    jitter = {it[0]: 1.0 for it in items}
    for _ in range(tries if best[1] > bound else 0):
        jitter = {name: rng.uniform(0.5, 1.5) for name in jitter}
        got = greedy_offsets(items, lambda it: (-it[1] * jitter[it[0]], it[2], it[0]), alignment)
        if got[1] < best[1]:
            best = got
            if best[1] <= bound:
                break
    return best
