"""Small self-contained SVG plots for the HTML report (no JavaScript, no external files).

Every mark carries data attributes (row id, measured or estimated), so the page can be checked by
parsing it, and estimated points are drawn hollow and dashed, apart from the measured ones.
"""

from __future__ import annotations

import math
from html import escape

W, H = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 52
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # red means warning


def _scale(lo: float, hi: float, a: float, b: float, log: bool = False):
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    span = (hi - lo) or 1.0

    def f(v: float) -> float:
        v = math.log10(v) if log else v
        return a + (v - lo) / span * (b - a)

    return f


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10.0 ** e * m for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                for m in (1, 2, 5) if lo <= 10.0 ** e * m <= hi]
    step = 10 ** math.floor(math.log10((hi - lo) or 1.0))
    step = step / 2 if (hi - lo) / step < 4 else step
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _frame(name: str, title: str, x_label: str, y_label: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{name}" viewBox="0 0 {W} {H}" '
            f'width="{W}" height="{H}" role="img" aria-label="{escape(title)}">',
            f'<text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
            f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#333"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#333"/>',
            f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">{escape(x_label)}</text>',
            f'<text x="14" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2})">{escape(y_label)}</text>']


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"


def scatter(name: str, title: str, points: list[dict], x_label: str, y_label: str, log_x: bool = True) -> str:
    """points: {x, y, label, row, measured, pareto, warn, series}. Pareto points are joined by a line."""
    pts = [p for p in points if p["x"] and p["y"] is not None and (p["x"] > 0 or not log_x)]
    out = _frame(name, title, x_label, y_label)
    if not pts:
        return "\n".join(out + ['<text x="50%" y="50%" text-anchor="middle">no data</text>', "</svg>"])
    xs, ys = [p["x"] for p in pts], [p["y"] for p in pts]
    x_lo, x_hi = (min(xs) / 1.5, max(xs) * 1.5) if log_x else (min(xs), max(xs))
    y_pad = max(0.5, (max(ys) - min(ys)) * 0.1)
    y_lo, y_hi = min(ys) - y_pad, max(ys) + y_pad
    fx, fy = _scale(x_lo, x_hi, LEFT, W - RIGHT, log_x), _scale(y_lo, y_hi, H - BOTTOM, TOP)
    for t in _ticks(x_lo, x_hi, log_x):
        out.append(f'<text x="{fx(t):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" font-size="11">{_fmt(t)}</text>')
    for t in _ticks(y_lo, y_hi, False):
        out.append(f'<text x="{LEFT - 6}" y="{fy(t) + 4:.1f}" text-anchor="end" font-size="11">{_fmt(round(t, 6))}</text>')
    front = sorted((p for p in pts if p.get("pareto")), key=lambda p: p["x"])
    if len(front) > 1:
        line = " ".join(f"{fx(p['x']):.1f},{fy(p['y']):.1f}" for p in front)
        out.append(f'<polyline class="pareto" points="{line}" fill="none" stroke="#2ca02c" stroke-width="2"/>')
    series = sorted({p.get("series", "") for p in pts})
    for p in pts:
        color = "#d62728" if p.get("warn") else PALETTE[series.index(p.get("series", "")) % len(PALETTE)]
        style = (f'fill="{color}" stroke="{color}"' if p["measured"] else
                 f'fill="white" stroke="{color}" stroke-dasharray="2,2" stroke-width="1.5"')
        out.append(f'<circle class="point" cx="{fx(p["x"]):.1f}" cy="{fy(p["y"]):.1f}" r="5" {style} '
                   f'data-row="{p["row"]}" data-measured="{str(p["measured"]).lower()}">'
                   f'<title>{escape(p["label"])}: {_fmt(p["x"])} {escape(x_label)}, {_fmt(p["y"])}</title></circle>')
        if p["measured"] and (p.get("pareto") or p.get("warn")):  # the rest are named in their tooltips
            out.append(f'<text x="{fx(p["x"]) + 7:.1f}" y="{fy(p["y"]) - 6:.1f}" font-size="10">{escape(p["label"])}</text>')
    out.append(f'<text x="{W - RIGHT}" y="{TOP + 4}" text-anchor="end" font-size="11">filled: measured; hollow: estimated; '
               'green line: Pareto front (measured)</text>')
    return "\n".join(out + ["</svg>"])


def bars(name: str, title: str, items: list[dict], y_label: str) -> str:
    """items: {label, value, row, measured, series, warn}; one bar each, grouped in the given order."""
    out = _frame(name, title, "", y_label)
    if not items:
        return "\n".join(out + ['<text x="50%" y="50%" text-anchor="middle">no data</text>', "</svg>"])
    lo, hi = min(0.0, *(i["value"] for i in items)), max(0.0, *(i["value"] for i in items))
    hi, lo = (hi or 1.0) * 1.1, lo * 1.1
    fy = _scale(lo, hi, H - BOTTOM, TOP)
    slot = (W - LEFT - RIGHT) / len(items)
    for t in _ticks(lo, hi, False):
        out.append(f'<text x="{LEFT - 6}" y="{fy(t) + 4:.1f}" text-anchor="end" font-size="11">{_fmt(round(t, 6))}</text>')
    out.append(f'<line x1="{LEFT}" y1="{fy(0):.1f}" x2="{W - RIGHT}" y2="{fy(0):.1f}" stroke="#999"/>')
    series = list(dict.fromkeys(i.get("series", "") for i in items))
    if any(series):
        legend = " · ".join(f'<tspan fill="{PALETTE[k % len(PALETTE)]}">■ {escape(name)}</tspan>' for k, name in enumerate(series))
        out.append(f'<text x="{W - RIGHT}" y="{TOP + 4}" text-anchor="end" font-size="11">{legend}</text>')
    for k, item in enumerate(items):
        x = LEFT + k * slot + slot * 0.15
        y0, y1 = sorted((fy(0), fy(item["value"])))
        color = "#d62728" if item.get("warn") else PALETTE[series.index(item.get("series", "")) % len(PALETTE)]
        fill = color if item.get("measured", True) else "white"
        out.append(f'<rect class="bar" x="{x:.1f}" y="{y0:.1f}" width="{slot * 0.7:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                   f'fill="{fill}" stroke="{color}" data-row="{item.get("row", "")}" data-label="{escape(item["label"])}" '
                   f'data-value="{item["value"]:.6g}" data-measured="{str(item.get("measured", True)).lower()}">'
                   f'<title>{escape(item["label"])}: {_fmt(item["value"])}</title></rect>')
        out.append(f'<text x="{x + slot * 0.35:.1f}" y="{H - BOTTOM + 14}" text-anchor="end" font-size="10" '
                   f'transform="rotate(-30 {x + slot * 0.35:.1f} {H - BOTTOM + 14})">{escape(item["label"])}</text>')
    return "\n".join(out + ["</svg>"])
