"""memory.png: live activation bytes per kernel of a planned arena vs the naive plan, with a budget.

Backend-neutral: the caller passes the figures (per-kernel live bytes, arena and naive bytes, the
budget line and what it is). Drawn with matplotlib's Agg backend and saved without the "Software"
metadata, so the same figures give the same PNG bytes.
"""

from __future__ import annotations

import io

OFF_SCALE = 4.0  # the budget line is drawn when it is at most this many times the largest plotted value


def planned_per_kernel(steps: list[dict], n_kernels: int, kernel_index: dict[str, int]) -> list[int]:
    """Live bytes of our plan per Program kernel: each kernel gets the live bytes of its step
    (`steps`: manifest-style {"kernels": [names], "live_bytes": int | None} rows)."""
    live = [0] * n_kernels
    for s in steps:
        for name in s["kernels"]:
            live[kernel_index[name]] = int(s["live_bytes"] or 0)
    return live


def memory_png(*, title: str, planned: list[int], naive: list[int], arena_bytes: int, naive_bytes: int,
               budget_bytes: int, budget_what: str) -> bytes:
    """PNG bytes of the arena timeline titled `title`: `planned` and `naive` live bytes per kernel,
    horizontal lines at the planned arena (`arena_bytes`) and at the arena budget `budget_bytes`
    (labelled "budget: <budget_what>"; noted in the title instead when far off the scale)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    xs = list(range(len(planned)))
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    try:
        if naive:
            ax.step(list(range(len(naive))), [b / 1024 for b in naive], where="mid",
                    color="tab:gray", label=f"naive plan (arena {naive_bytes / 1024:.1f} KiB)")
        ax.step(xs, [b / 1024 for b in planned], where="mid", color="tab:blue", linewidth=2,
                label=f"edgevit plan, live (arena {arena_bytes / 1024:.1f} KiB)")
        ax.axhline(arena_bytes / 1024, color="tab:blue", linestyle=":", linewidth=1)
        top = max([arena_bytes, naive_bytes, *naive, *planned])
        if budget_bytes <= OFF_SCALE * top:
            ax.axhline(budget_bytes / 1024, color="tab:red", linestyle="--",
                       label=f"budget: {budget_what} ({budget_bytes / 1024:.1f} KiB)")
        else:  # a line far above the data would flatten it
            title += f"\n(arena budget, {budget_what}: {budget_bytes / 1024:.1f} KiB, off the scale)"
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
