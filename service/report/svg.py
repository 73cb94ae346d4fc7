"""Tiny inline-SVG charts (no plotting library: the report must stay one dependency-free file).

Each chart is drawn in a fixed 560x260 box: a plot area with axes, ticks and a legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H = 560, 260
L, R, TOP, B = 48, 24, 24, 40  # margins: room for tick labels and the legend
COLORS = ("#2b6cb0", "#dd6b20", "#c53030", "#38a169", "#805ad5")


def _x(v: float, lo: float, hi: float) -> float:
    return L + (v - lo) / ((hi - lo) or 1.0) * (W - L - R)


def _y(v: float, lo: float, hi: float) -> float:
    return H - B - (v - lo) / ((hi - lo) or 1.0) * (H - B - TOP)


def _ticks(n: int, most: int = 7) -> range:
    """Indexes of the labels to print: at most `most`, evenly spaced, so they never overlap."""
    return range(0, n, max(1, -(-n // most)))


def _frame(title: str, body: list[str], y_hi: float, x_labels: Sequence[tuple[float, str]], legend: Sequence[str]) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#333"/>',
             f'<line x1="{L}" y1="{TOP}" x2="{L}" y2="{H - B}" stroke="#333"/>']  # fmt: skip
    for i in range(5):
        v = y_hi * i / 4
        y = _y(v, 0, y_hi)
        parts.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#eee"/>')
        text = f"{v:,.0f}" if y_hi >= 10 else f"{v:.2g}"
        parts.append(f'<text x="{L - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{text}</text>')
    for x, label in x_labels:
        parts.append(f'<text x="{x:.1f}" y="{H - B + 14}" font-size="10" text-anchor="middle">{escape(label)}</text>')
    for i, name in enumerate(legend):
        x = L + 8 + i * 150
        parts.append(f'<rect x="{x}" y="{H - 14}" width="10" height="10" fill="{COLORS[i % len(COLORS)]}"/>')
        parts.append(f'<text x="{x + 14}" y="{H - 5}" font-size="11">{escape(name)}</text>')
    return "\n".join(parts + body + ["</svg>"])


def bars(title: str, labels: Sequence[str], series: dict[str, Sequence[float]], stacked: bool = False) -> str:
    """Grouped (or stacked) bars, one group per label."""
    n, k = len(labels), len(series)
    values = list(series.values())
    y_hi = max([sum(col) for col in zip(*values, strict=True)] if stacked else [max(v, default=0) for v in values], default=0)
    y_hi = y_hi or 1.0
    slot = (W - L - R) / max(n, 1)
    width = slot * 0.8 / (1 if stacked else k)
    body: list[str] = []
    for j in range(n):
        base = 0.0
        for i, vals in enumerate(values):
            x = L + j * slot + slot * 0.1 + (0 if stacked else i * width)
            y0, y1 = _y(base, 0, y_hi), _y(base + vals[j], 0, y_hi)
            body.append(f'<rect x="{x:.1f}" y="{y1:.1f}" width="{width:.1f}" height="{y0 - y1:.1f}" fill="{COLORS[i % len(COLORS)]}"/>')
            base = base + vals[j] if stacked else 0.0
    ticks = [(L + (j + 0.5) * slot, labels[j]) for j in _ticks(n, 16 if n <= 16 and max(map(len, labels), default=0) <= 5 else 7)]
    return _frame(title, body, y_hi, ticks, list(series))


def lines(title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]], y_hi: float = 1.0) -> str:
    """Polylines over evenly spaced labels; a gap (None) ends one and the next value starts
    another, so no line is drawn across hours without a value."""
    n = len(labels)
    body = []
    for i, vals in enumerate(series.values()):
        color = COLORS[i % len(COLORS)]
        runs: list[list[str]] = [[]]
        for j, v in enumerate(vals):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{_x(j, 0, max(n - 1, 1)):.1f},{_y(v, 0, y_hi):.1f}")
        for pts in (r for r in runs if r):
            body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="2"/>')
            body += [f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{color}"/>' for p in pts]
    ticks = [(_x(j, 0, max(n - 1, 1)), labels[j]) for j in _ticks(n)]
    return _frame(title, body, y_hi, ticks, list(series))


def reliability(title: str, bins: Sequence[tuple[float, float, float | None, int]]) -> str:
    """Accuracy per confidence bin against the diagonal of perfect calibration; bins are (lo, hi, accuracy, count)."""
    body = [f'<line x1="{_x(0, 0, 1)}" y1="{_y(0, 0, 1)}" x2="{_x(1, 0, 1)}" y2="{_y(1, 0, 1)}" stroke="#999" stroke-dasharray="4"/>']
    for lo, hi, acc, count in bins:
        if acc is None or count == 0:
            continue
        x0, x1, y = _x(lo, 0, 1), _x(hi, 0, 1), _y(acc, 0, 1)
        body.append(f'<rect x="{x0 + 1:.1f}" y="{y:.1f}" width="{x1 - x0 - 2:.1f}" height="{_y(0, 0, 1) - y:.1f}" fill="{COLORS[0]}" opacity="0.8"><title>{count} requests</title></rect>')
    ticks = [(_x(v, 0, 1), f"{v:.1f}") for v in (0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    return _frame(title, body, 1.0, ticks, ["accuracy per confidence bin (dashed: perfect calibration)"])
