"""The HTML report's figures as inline SVG (:mod:`harness.report.html`): every tensor's error as a
bar on a log axis against its tolerance, and a heatmap of each failing tensor's error map."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .html_text import _e, _fmt, _num, _pow10, _shape

AXIS_FLOOR = 1e-17  # an error of exactly 0 has no logarithm: drawn at the bottom of the axis
MAP_LO, MAP_HI = 1e-6, 1.0  # heatmap colour range; below 1e-6 is as good as right for a mistake hunt
MAX_TILES = 64  # per heatmap axis: beyond this the drawing stops being readable anyway
MAX_CELLS = 160  # per tile side; larger tiles are max-pooled so the worst cell stays visible
# inferno-like: dark for small errors, bright for large, so wrong cells catch the eye
RAMP = [(0, 0, 4), (66, 10, 104), (147, 38, 103), (221, 81, 58), (252, 165, 10), (252, 255, 164)]


def plotted_error(t: dict) -> float | None:
    """The error drawn for a tensor: the larger of the two references' figures, or None when it
    is off the chart. A missing figure is usually one not computed (the network pass has no JAX
    figure), but if the tensor failed while what is left passes, the missing one was the
    non-finite error that failed it (JSON writes inf as null)."""
    vals = [_num(t.get("error_torch")), _num(t.get("error_jax"))]
    finite = [v for v in vals if v is not None and math.isfinite(v)]
    if not finite or len(finite) < sum(v is not None for v in vals):
        return None
    worst, tol = max(finite), _num(t.get("tolerance"))
    return None if not t.get("ok", True) and tol is not None and worst <= tol else worst


# ---------------------------------------------------------------------- error bars


def _bar(y: float, layer: dict, t: dict, label: str, x: Any, right: float) -> str:
    """One tensor's bar: its error from the left of the axis, a black tick at its tolerance,
    a triangle at the top of the axis when the error is not finite."""
    v, tol, name = plotted_error(t), _num(t.get("tolerance")), f"{layer.get('name', '?')}.{t.get('name', '?')}"
    end, h = right if v is None else x(v), 10
    tip = f"{name}: {'not finite' if v is None else _fmt(v)} (tolerance {_fmt(tol)})"
    fade = ' opacity=".45"' if layer.get("downstream_of") else ""
    out = [
        f"<g{fade}><title>{_e(tip)}</title>"
        f'<text x="{x(0) - 6:.1f}" y="{y + 11}" text-anchor="end">{_e(label)}</text>'
        f'<rect x="{x(0):.1f}" y="{y + 3}" width="{max(end - x(0), 1):.1f}" height="{h}" '
        f'fill="{"#2da44e" if t.get("ok", True) else "#cf222e"}"/>'
    ]
    if v is None:
        out.append(f'<path d="M{end:.1f},{y + 1} l8,7 l-8,7 z" fill="#82071e"/>')
    if tol is not None and math.isfinite(tol):
        out.append(
            f'<line x1="{x(tol):.1f}" y1="{y + 1}" x2="{x(tol):.1f}" y2="{y + 14}" stroke="#000" stroke-width="2"/>'
        )
    return "".join(out) + "</g>"


def _bars_svg(layers: list[dict]) -> str:
    """Every tensor's error (the larger of vs torch and vs jax) as a bar on a log axis."""
    items = [(layer, t) for layer in layers for t in layer.get("tensors") or []]
    if not items:
        return ""
    figures = [plotted_error(t) for _, t in items] + [_num(t.get("tolerance")) for _, t in items]
    top = max([1.0] + [v for v in figures if v is not None and math.isfinite(v)])
    lo, hi = round(math.log10(AXIS_FLOOR)), max(0, math.ceil(math.log10(top)))
    left, width, row, pad = 250, 620, 15, 42
    height, step = pad + row * len(items) + 10, 1 if hi - lo <= 10 else 2

    def x(v: float) -> float:  # 0 (and anything below the floor) sits at the left end
        return left + (math.log10(max(v, AXIS_FLOOR)) - lo) / (hi - lo) * width

    out = [
        f'<svg id="error-bars" width="{left + width + 40}" height="{height}" font-size="11">'
        f'<text x="{left}" y="12" fill="#57606a">relative error, max(vs torch, vs jax); black tick: tolerance; '
        "\u25b6: not finite</text>"
    ]
    for e in range(lo, hi + 1):
        out.append(
            f'<line x1="{x(10.0**e):.1f}" y1="{pad - 4}" x2="{x(10.0**e):.1f}" y2="{height - 10}" stroke="#eaeef2"/>'
        )
        if (hi - e) % step == 0:
            out.append(
                f'<text x="{x(10.0**e):.1f}" y="{pad - 8}" text-anchor="middle" fill="#57606a">{_pow10(e)}</text>'
            )
    previous = None
    for k, (layer, t) in enumerate(items):
        name, y = str(layer.get("name", "?")), pad + k * row
        if name != previous and k:  # a rule between layers
            out.append(f'<line x1="0" y1="{y}" x2="{left + width}" y2="{y}" stroke="#d0d7de"/>')
        label = (f"{name} \u203a " if name != previous else "") + str(t.get("name", "?"))
        out.append(_bar(y, layer, t, label if len(label) <= 36 else label[:35] + "\u2026", x, left + width))
        previous = name
    return "".join(out) + "</svg>"


# ---------------------------------------------------------------------- heatmaps


def _colour(v: float) -> str:
    """Colour of a relative error on the RAMP, log-scaled between MAP_LO and MAP_HI."""
    f = math.log10(min(max(v, MAP_LO), MAP_HI) / MAP_LO) / math.log10(MAP_HI / MAP_LO) * (len(RAMP) - 1)
    i = min(int(f), len(RAMP) - 2)
    return "#" + "".join(f"{round(a + (b - a) * (f - i)):02x}" for a, b in zip(RAMP[i], RAMP[i + 1]))


def _legend(steps: int = 30) -> str:
    """The heatmap colour scale, 10^-6 to 1."""
    cells = "".join(
        f'<rect x="{10 + 8 * k}" y="4" width="8" height="12" fill="{_colour(10 ** (-6 + 6 * k / (steps - 1)))}"/>'
        for k in range(steps)
    )
    labels = "".join(
        f'<text x="{10 + 8 * steps * (e + 6) / 6:.0f}" y="28" text-anchor="middle">{_pow10(e)}</text>'
        for e in range(-6, 1, 2)
    )
    return f'<svg class="legend" width="{30 + 8 * steps}" height="32" font-size="10">{cells}{labels}</svg>'


def _tiles(t: dict) -> tuple[np.ndarray, int, list[str], tuple[int, ...]] | None:
    """The error map as (rows, cols, H, W) tiles (max-pooled if large), its own rank, notes on
    what was cut, and the worst element's position in the tiles (or ())."""
    try:
        arr = np.array(t["error_map"], dtype=np.float64)  # null cells become nan
    except (TypeError, ValueError):  # ragged or not numbers: nothing sensible to draw
        return None
    if arr.ndim < 2 or arr.size == 0:
        return None
    ndim, index = arr.ndim, tuple(int(i) for i in t.get("worst_index") or ())
    tiled = (1,) * (4 - ndim) + arr.shape if ndim < 4 else (-1,) + arr.shape[-3:]
    ok = len(index) == ndim and all(0 <= i < n for i, n in zip(index, arr.shape))
    index = (
        tuple(int(i) for i in np.unravel_index(np.ravel_multi_index(index, arr.shape), arr.reshape(tiled).shape))
        if ok
        else ()
    )
    arr = np.where(np.isfinite(arr), arr, MAP_HI).reshape(tiled)  # not finite: as wrong as can be
    grid: tuple[int, ...] = arr.shape[:2]  # numpy's stub reads reshape(tuple[int, ...]) as 0-d
    notes = [
        f"showing the first {MAX_TILES} of {n} {what}" for n, what in zip(grid, ("rows", "columns")) if n > MAX_TILES
    ]
    arr = arr[:MAX_TILES, :MAX_TILES]
    index = index if index and index[0] < MAX_TILES and index[1] < MAX_TILES else ()
    kh, kw = (math.ceil(n / MAX_CELLS) for n in arr.shape[2:])
    if kh * kw > 1:  # max-pool so a single wrong element still shows
        a, b, h, w = arr.shape
        arr = np.pad(arr, ((0, 0), (0, 0), (0, -h % kh), (0, -w % kw)))
        arr = arr.reshape(a, b, arr.shape[2] // kh, kh, arr.shape[3] // kw, kw).max(axis=(3, 5))
        notes.append(f"each cell is the worst of a {kh}\u00d7{kw} block")
        index = index[:2] + (index[2] // kh, index[3] // kw) if index else ()
    return arr, ndim, notes, index


def _heatmap(layer: dict, t: dict) -> str:
    """One failing tensor's error map: a grid of tiles, rows and columns its two leading axes, so
    a border pattern (padding) or a channel pattern (some rows bright) shows at a glance."""
    if (tiles := _tiles(t)) is None:
        return ""
    arr, ndim, notes, worst = tiles
    (rows, cols, h, w), weight = arr.shape, "weight" in str(t.get("name"))
    axes = ("out channel", "in channel", "kh\u00d7kw") if weight else ("sample", "channel", "H\u00d7W")
    # a tile gets what the page width (and, for many rows, a sane height) allows
    budget = 720 if rows * cols == 1 else max(12, min(112, 720 // cols, 1000 // rows))
    cell = max(1, min(14, budget // max(h, w)))
    gap, left, top = (2 if cell * max(h, w) < 24 else 4), 34, 16
    tw, th = w * cell + gap, h * cell + gap
    out = [f'<svg width="{left + cols * tw + 4}" height="{top + rows * th + 4}" font-size="10">']
    if ndim > 2:  # tile numbers, thinned so labels do not collide
        out += [
            f'<text x="{left + c * tw + tw / 2 - gap / 2:.1f}" y="11" text-anchor="middle">{c}</text>'
            for c in range(0, cols, math.ceil(14 / tw))
        ]
        out += [
            f'<text x="{left - 4}" y="{top + r * th + th / 2 + 2:.1f}" text-anchor="end">{r}</text>'
            for r in range(0, rows, math.ceil(14 / th))
        ]
    for (r, c), tile in ((rc, arr[rc]) for rc in np.ndindex(rows, cols)):
        x0, y0 = left + c * tw, top + r * th  # the tile's background is the colour of "no error"
        out.append(f'<rect x="{x0}" y="{y0}" width="{w * cell}" height="{h * cell}" fill="{_colour(0.0)}"/>')
        out += [
            f'<rect x="{x0 + j * cell}" y="{y0 + i * cell}" width="{cell}" height="{cell}" fill="{_colour(v)}"/>'
            for (i, j), v in np.ndenumerate(tile)
            if v > MAP_LO
        ]
    if worst:
        x0, y0 = left + worst[1] * tw + worst[3] * cell, top + worst[0] * th + worst[2] * cell
        out.append(
            f'<rect x="{x0 - 1}" y="{y0 - 1}" width="{cell + 2}" height="{cell + 2}" fill="none" '
            'stroke="#00d0ff" stroke-width="2"><title>worst element</title></rect>'
        )
    where = f"rows: {axes[0]}, columns: {axes[1]}, each tile {axes[2]}" if ndim > 2 else ""
    caption = "; ".join(s for s in (where, *notes, "blue outline: the worst element" if worst else "") if s)
    label = f"{layer.get('name', '?')}.{t.get('name', '?')}"
    return (
        f'<figure class="heatmap" data-tensor="{_e(label)}"><h3>{_e(label)} {_shape(t)}</h3>'
        f"{''.join(out)}</svg><figcaption>{_e(caption)}</figcaption></figure>"
    )


def _heatmaps(layers: list[dict]) -> str:
    """A heatmap for every failing tensor that carries an error map, under one colour legend."""
    maps = "".join(
        _heatmap(layer, t)
        for layer in layers
        for t in layer.get("tensors") or []
        if not t.get("ok", True) and t.get("error_map") is not None
    )
    return (
        (
            "<h2>Where the failing tensors are wrong</h2><p>|user &minus; reference| / max|reference| per "
            f"element, log scale {_legend()}</p>{maps}"
        )
        if maps
        else ""
    )
