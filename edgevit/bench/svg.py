"""Horizontal bar charts as inline SVG text (no JavaScript, no fonts, no external files).

    svg = bar_chart("latency", [Bar("fmnist-tiny/int8/host/host", 0.12, color=0, hatched=False),
                                Bar("fmnist-tiny/int8/nrf52840/qemu", 241.0, hatched=True)],
                    unit="ms", legend=[(0, False, "measured"), (0, True, "estimated")])

One row per bar: the label on the left, the bar, its value (and `note`) at its end; a bar without a
value shows "n/a". The axis is linear from 0, or logarithmic (decades) when `log` is True or, with
log=None, when the largest value is more than LOG_RATIO times the smallest positive one (latencies of
a host and a 64 MHz MCU differ by 10^4). `limit` draws a budget mark on the bar's row when it lies
on the axis. Every bar carries a <title> (a tooltip with the exact value). Colors come from PALETTE
by index; `hatched` bars (estimates) get diagonal stripes. Chart ids must be unique in a page
(pattern ids derive from them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#bab0ac")
LOG_RATIO = 100.0
ROW = 22
BAR = 14
CHAR_W = 6.6  # average width of a 12px sans-serif character, for layout
FONT = "font-family=\"sans-serif\" font-size=\"12\""


@dataclass(frozen=True)
class Bar:
    """One row: `label`, `value` (None: n/a), palette `color` index, `hatched` (an estimate), an
    optional `note` after the value, an optional `limit` (budget) mark."""

    label: str
    value: float | None
    color: int = 0
    hatched: bool = False
    note: str = ""
    limit: float | None = None


def fmt(value: float) -> str:
    """A value with 3 significant digits, thousands separated ("0.123", "87.8", "1,086", "779,232")."""
    if value == 0:
        return "0"
    if abs(value) < 0.001:
        return f"{value:.2g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{digits}f}"


def tick_text(value: float) -> str:
    """An axis tick: "0.01", "2.5", "10,000"."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 5 x 10^k) up to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    n = int(math.ceil(top / step - 1e-9))
    return [i * step for i in range(n + 1)]


def decade_ticks(low: float, high: float) -> list[float]:
    """Powers of ten from below `low` to above `high`."""
    lo, hi = math.floor(math.log10(low)), math.ceil(math.log10(high))
    if hi == lo:
        hi += 1
    return [10.0 ** e for e in range(lo, hi + 1)]


def _use_log(values: list[float], log: bool | None) -> bool:
    positive = [v for v in values if v > 0]
    if log is not None:
        return log and bool(positive)
    return len(positive) >= 2 and max(positive) / min(positive) > LOG_RATIO


def bar_chart(chart_id: str, bars: list[Bar], unit: str, title: str = "", log: bool | None = None,
              legend: list[tuple[int, bool, str]] = (), width: int = 760) -> str:
    """An <svg> element (text) drawing `bars` (module docstring); `unit` labels the axis and values;
    `legend`: (color index, hatched, text) swatches drawn under the axis."""
    values = [b.value for b in bars if b.value is not None]
    use_log = _use_log(values, log)
    label_w = min(360, max([len(b.label) for b in bars] + [4]) * CHAR_W + 12)
    value_w = max([len(_value_text(b, unit)) for b in bars] + [4]) * CHAR_W + 10
    plot_x, plot_w = label_w, max(120.0, width - label_w - value_w)
    top = 24 if title else 8
    height = top + ROW * len(bars) + 30 + (20 if legend else 0)
    if use_log:
        positive = [v for v in values if v > 0]
        ticks = decade_ticks(min(positive), max(positive))
        lo, hi = math.log10(ticks[0]), math.log10(ticks[-1])

        def x_of(v: float) -> float:
            return plot_x + (0 if v <= 0 else (math.log10(max(v, ticks[0])) - lo) / (hi - lo) * plot_w)
    else:
        ticks = nice_ticks(max(values + [b.limit for b in bars if b.limit and b.limit <= 2 * max(values + [0])] + [0]))

        def x_of(v: float) -> float:
            return plot_x + v / ticks[-1] * plot_w
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" role="img" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-labelledby="{escape(chart_id)}-t">',
           f'<title id="{escape(chart_id)}-t">{escape(title or chart_id)} ({escape(unit)}'
           f'{", log scale" if use_log else ""})</title>',
           '<defs>' + "".join(_pattern(chart_id, i) for i in sorted({b.color for b in bars if b.hatched} |
                                                                    {c for c, h, _ in legend if h})) + '</defs>']
    if title:
        out.append(f'<text x="0" y="15" {FONT} font-weight="bold">{escape(title)}</text>')
    axis_y = top + ROW * len(bars)
    for t in ticks:
        x = x_of(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{axis_y + 14}" {FONT} text-anchor="middle" fill="#555">{tick_text(t)}</text>')
    out.append(f'<text x="{plot_x + plot_w:.1f}" y="{axis_y + 27}" {FONT} text-anchor="end" fill="#555">'
               f'{escape(unit)}{" (log scale)" if use_log else ""}</text>')
    for i, b in enumerate(bars):
        y = top + i * ROW
        out.append(f'<text x="{plot_x - 6:.1f}" y="{y + ROW / 2 + 4:.1f}" {FONT} text-anchor="end">'
                   f'{escape(_clip(b.label, label_w))}<title>{escape(b.label)}</title></text>')
        end = plot_x
        if b.value is not None:
            end = x_of(b.value)
            fill = f"url(#{escape(chart_id)}-h{b.color})" if b.hatched else PALETTE[b.color % len(PALETTE)]
            out.append(f'<rect x="{plot_x:.1f}" y="{y + (ROW - BAR) / 2:.1f}" width="{max(1.0, end - plot_x):.1f}" '
                       f'height="{BAR}" fill="{fill}" stroke="{PALETTE[b.color % len(PALETTE)]}">'
                       f'<title>{escape(b.label)}: {escape(_value_text(b, unit))}</title></rect>')
        if b.limit is not None and (use_log or b.limit <= ticks[-1]) and b.limit > 0:
            lx = x_of(b.limit)
            out.append(f'<line x1="{lx:.1f}" y1="{y + 2}" x2="{lx:.1f}" y2="{y + ROW - 2}" stroke="#c00" '
                       f'stroke-width="2"><title>budget {fmt(b.limit)} {escape(unit)}</title></line>')
        out.append(f'<text x="{max(end, plot_x) + 4:.1f}" y="{y + ROW / 2 + 4:.1f}" {FONT}>'
                   f'{escape(_value_text(b, unit))}</text>')
    out.append(f'<line x1="{plot_x:.1f}" y1="{top}" x2="{plot_x:.1f}" y2="{axis_y}" stroke="#333"/>')
    x = plot_x
    for color, hatched, text in legend:
        fill = f"url(#{escape(chart_id)}-h{color})" if hatched else PALETTE[color % len(PALETTE)]
        out.append(f'<rect x="{x:.1f}" y="{height - 14}" width="12" height="12" fill="{fill}" '
                   f'stroke="{PALETTE[color % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 16:.1f}" y="{height - 4}" {FONT}>{escape(text)}</text>')
        x += 16 + len(text) * CHAR_W + 16
    out.append("</svg>")
    return "\n".join(out)


def _pattern(chart_id: str, color: int) -> str:
    c = PALETTE[color % len(PALETTE)]
    return (f'<pattern id="{escape(chart_id)}-h{color}" patternUnits="userSpaceOnUse" width="6" height="6" '
            f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
            f'<rect width="3" height="6" fill="{c}"/></pattern>')


def _value_text(b: Bar, unit: str) -> str:
    text = "n/a" if b.value is None else f"{fmt(b.value)} {unit}"
    return f"{text} {b.note}".strip() if b.note else text


def _clip(label: str, width: float) -> str:
    room = int(round((width - 12) / CHAR_W))
    return label if len(label) <= room else label[:max(1, room - 1)] + "\u2026"
