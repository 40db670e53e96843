"""A log-log line plot written as SVG by hand (matplotlib is not a dependency)."""

from __future__ import annotations

import math
from html import escape

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f")

# one series: label -> [(x, y, hollow)]; hollow marks an extrapolated point
Series = dict[str, list[tuple[float, float, bool]]]


def _decades(lo: float, hi: float) -> list[int]:
    """Decades covering [lo, hi]; a value just above a power of ten does not open a new one."""
    return list(range(math.floor(math.log10(lo) + 0.02), math.ceil(math.log10(hi) - 0.02) + 1))


def _tick_label(e: int) -> str:
    return {-3: "1 ms", -2: "10 ms", -1: "0.1 s", 0: "1 s", 1: "10 s", 2: "100 s", 3: "1e3 s", 4: "1e4 s", 5: "1e5 s",
            6: "1e6 s"}.get(e, f"1e{e}")


def loglog_svg(series: Series, *, title: str, xlabel: str, ylabel: str, y_seconds: bool = True,
               dashed: tuple[str, ...] = (), width: int = 800, height: int = 480) -> str:
    """The SVG text of a log-log plot: one coloured line with markers per series, filled
    markers for measured points, hollow ones for extrapolated points, a legend on the right;
    series named in ``dashed`` are drawn grey and dashed, without markers (a reference line)."""
    points = [(x, y) for pts in series.values() for x, y, _ in pts if x > 0 and y > 0]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xd, yd = _decades(min(xs), max(xs)), _decades(min(ys), max(ys))
    left, right, top, bottom = 70, 220, 40, 55
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (math.log10(x) - xd[0]) / max(xd[-1] - xd[0], 1) * pw

    def py(y: float) -> float:
        return top + ph - (math.log10(y) - yd[0]) / max(yd[-1] - yd[0], 1) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + pw / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for e in xd:
        x = px(10.0 ** e)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">1e{e}</text>')
    for e in yd:
        y = py(10.0 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        label = _tick_label(e) if y_seconds else f"1e{e}"
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 12}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    for i, (label, pts) in enumerate(series.items()):
        ref = label in dashed
        color = "#888" if ref else COLORS[i % len(COLORS)]
        dash = ' stroke-dasharray="6 4"' if ref else ""
        pts = sorted(p for p in pts if p[0] > 0 and p[1] > 0)
        if len(pts) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y, hollow in ([] if ref else pts):
            fill = "white" if hollow else color
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{fill}" stroke="{color}" stroke-width="2"/>')
        ly = top + 10 + 20 * i
        out.append(f'<line x1="{left + pw + 12}" y1="{ly}" x2="{left + pw + 36}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{left + pw + 42}" y="{ly + 4}">{escape(label)}</text>')
    ly = top + 10 + 20 * len(series) + 10
    out.append(f'<circle cx="{left + pw + 24}" cy="{ly}" r="4" fill="white" stroke="#333" stroke-width="2"/>')
    out.append(f'<text x="{left + pw + 42}" y="{ly + 4}">extrapolated</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["Series", "loglog_svg"]
