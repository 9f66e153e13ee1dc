"""memory.png: live arena bytes per kernel for the planned arena vs the naive plan, with the budget.

Drawn with matplotlib's Agg backend and saved without the "Software" metadata, so the same
plan gives the same PNG bytes.
"""

from __future__ import annotations

import io

OFF_SCALE = 4.0  # the budget line is drawn when it is at most this many times the largest plotted value


def planned_per_kernel(steps: list[dict], n_kernels: int, kernel_index: dict[str, int]) -> list[int]:
    """Live bytes of our plan per Program kernel: each kernel gets the live bytes of its step."""
    live = [0] * n_kernels
    for s in steps:
        for name in s["kernels"]:
            live[kernel_index[name]] = int(s["live_bytes"] or 0)
    return live


def memory_png(manifest: dict, naive_timeline: list[int]) -> bytes:
    """PNG bytes of the arena timeline: planned live bytes (from manifest["steps"]) and the naive plan's
    per kernel, horizontal lines at the planned arena and at the arena budget (SRAM - stack)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    kernels = manifest["kernels"]
    index = {k["name"]: i for i, k in enumerate(kernels)}
    ours = planned_per_kernel(manifest["steps"], len(kernels), index)
    mem, budget = manifest["memory"], manifest["budget"]["sram_bytes"] - manifest["memory"]["stack_bytes"]
    xs = list(range(len(kernels)))
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    try:
        if naive_timeline:
            ax.step(list(range(len(naive_timeline))), [b / 1024 for b in naive_timeline], where="mid",
                    color="tab:gray", label=f"naive plan (arena {mem['naive_bytes'] / 1024:.1f} KiB)")
        ax.step(xs, [b / 1024 for b in ours], where="mid", color="tab:blue", linewidth=2,
                label=f"edgevit plan, live (arena {mem['arena_bytes'] / 1024:.1f} KiB)")
        ax.axhline(mem["arena_bytes"] / 1024, color="tab:blue", linestyle=":", linewidth=1)
        top = max([mem["arena_bytes"], mem["naive_bytes"], *naive_timeline, *ours])
        title = f"{manifest['program']['name']} on {manifest['profile']['name']}: activation memory"
        if budget <= OFF_SCALE * top:
            ax.axhline(budget / 1024, color="tab:red", linestyle="--",
                       label=f"budget: SRAM - stack ({budget / 1024:.1f} KiB)")
        else:  # a line far above the data would flatten it
            title += f"\n(arena budget, SRAM - stack: {budget / 1024:.1f} KiB, off the scale)"
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("kernel (execution order)")
        ax.set_ylabel("arena bytes live (KiB)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)
