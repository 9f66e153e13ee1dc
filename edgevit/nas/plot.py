"""The search's picture: accuracy vs the memory objective (the target's first pool, MCU: SRAM) of every
evaluated candidate, the Pareto front, the budget.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch), written
atomically (edgevit/atomic_write.py: temp file + rename, a killed writer's leftovers removed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from edgevit.atomic_write import write_file_atomically


def _kib(n: float) -> float:
    return n / 1024.0


def plot_front(path: Path, candidates: Sequence, front: Sequence, best, budget: int | None, pool: str = "sram",
               title: str = "") -> Path:
    """Write a PNG to `path`: every candidate (accuracy vs its use of the memory pool `pool`, KiB) faint,
    the front as a highlighted step line, the pool's `budget` (bytes; None: none) as a vertical line,
    the best spec marked. Returns `path`.

    candidates / front: objects with `accuracy` (0..1) and `memory_bytes`; best: one of them or None.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = [_kib(c.memory_bytes) for c in candidates]
    ys = [100.0 * c.accuracy for c in candidates]
    ax.scatter(xs, ys, s=14, color="tab:gray", alpha=0.35, linewidths=0, label=f"evaluated ({len(xs)})")
    if front:
        fx = [_kib(c.memory_bytes) for c in front]
        fy = [100.0 * c.accuracy for c in front]
        ax.step(fx, fy, where="post", color="tab:blue", linewidth=1.4, alpha=0.8)
        ax.scatter(fx, fy, s=30, color="tab:blue", zorder=3, label=f"Pareto front ({len(front)})")
    limit = _kib(budget) if budget is not None else None
    if limit is not None:
        ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1.2, label=f"{pool} budget {limit:,.0f} KiB")
    if best is not None:
        ax.scatter([_kib(best.memory_bytes)], [100.0 * best.accuracy], s=160, marker="*", color="tab:orange",
                   edgecolors="black", linewidths=0.6, zorder=4,
                   label=f"best {best.spec.name}: {100 * best.accuracy:.1f}%" if hasattr(best, "spec") else "best")
    ax.set_xlabel(f"{pool}, KiB — the target's estimate")
    ax.set_ylabel("supernet validation top-1, %")
    ax.set_title(title or f"NAS: accuracy vs {pool}")
    ax.grid(True, alpha=0.3)
    marks = xs + ([limit] if limit is not None else [])
    right = max(marks) if marks else 1.0
    if xs and limit is not None and limit > 4 * max(xs):  # far below the budget: log scale keeps both visible
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.3, right * 1.3)
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "1235" else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
    else:
        ax.set_xlim(0, right * 1.08)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return write_file_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
