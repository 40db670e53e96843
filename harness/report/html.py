"""A check's report as one self-contained HTML page: the verdict, a table of every compared tensor,
error bars on a log scale and heatmaps of failing tensors. All inline (CSS, SVG drawn here, a few lines of
JavaScript; a Content Security Policy forbids fetching anything), so the file opens offline; built from
``Report.to_dict()`` only, so a saved JSON report renders too."""

from __future__ import annotations

import html
import math
import os
from collections import Counter
from typing import Any

import numpy as np

from .files import write_atomic
from .paths import HTML_MARKER
from .safe_text import visible
from .validate import report_data

VERDICT_COLOURS = {
    "pass": "#1a7f37",
    "forward": "#cf222e",
    "backward": "#cf222e",
    "both": "#cf222e",
    "inconclusive": "#bf8700",
    "reference": "#8250df",
    "error": "#82071e",
    "unknown": "#6e7781",
}
AXIS_FLOOR = 1e-17  # an error of exactly 0 has no logarithm: drawn at the bottom of the axis
MAP_LO, MAP_HI = 1e-6, 1.0  # heatmap colour range; below 1e-6 is as good as right for a mistake hunt
MAX_TILES = 64  # per heatmap axis: beyond this the drawing stops being readable anyway
MAX_CELLS = 160  # per tile side; larger tiles are max-pooled so the worst cell stays visible
# inferno-like: dark for small errors, bright for large, so wrong cells catch the eye
RAMP = [(0, 0, 4), (66, 10, 104), (147, 38, 103), (221, 81, 58), (252, 165, 10), (252, 255, 164)]
COLUMNS = [
    "layer",
    "kind",
    "verdict",
    "tensor",
    "side",
    "shape",
    "vs torch",
    "vs jax",
    "tolerance",
    "FD",
    "worst at",
    "user",
    "reference",
]
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:14px;margin:16px 0 4px} h3,svg text,.mono,.num{font-family:ui-monospace,monospace}
.status{font-size:18px;font-weight:600;margin:6px 0} .ok{color:#1a7f37} .bad{color:#cf222e;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.fix{border-left:4px solid #cf222e;background:#fff8f8;padding:6px 12px;margin:8px 0} .muted{color:#6e7781}
table{border-collapse:collapse;font-size:12.5px} th{background:#f6f8fa;text-align:left;position:sticky;top:0}
th,td{border-bottom:1px solid #eaeef2;padding:3px 7px;vertical-align:top} .num{text-align:right}
.num,.mono{white-space:nowrap} #trigrad-table tbody{border-top:2px solid #d0d7de} .scroll{overflow-x:auto}
tbody.downstream{opacity:.55} #trigrad-table.only-failing tbody.v-pass{display:none}
tr.note td{padding-left:24px;background:#fbfbfb} .msg{white-space:pre-wrap} .downnote{font-style:italic}
tbody.first-failure td{background:#fff5d6} tbody.first-failure td.lname{box-shadow:inset 4px 0 #cf222e}
.diag::before{content:"diagnosis: ";font-weight:600} table.boundaries{margin:6px 0 4px}
table.boundaries caption{text-align:left;font-weight:600;padding:2px 0} svg.legend{vertical-align:middle}
figure{margin:8px 0 20px} figcaption{font-size:12.5px;color:#57606a}
""" + "".join(f".b-{v}{{background:{c}}}" for v, c in VERDICT_COLOURS.items())

# proves in a browser that scripts ran (the Chromium test reads data-ready) and filters the table
SCRIPT = """document.body.dataset.ready = "1";
var box = document.getElementById("only-failing");
box.addEventListener("change", function () {
  document.getElementById("trigrad-table").classList.toggle("only-failing", box.checked); });"""


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute: names and messages are user code's.
    Control characters are shown as escapes too (``\\x1b``): a page read with ``cat`` or
    ``less -R`` must not act on the terminal."""
    return html.escape(visible(value), quote=True)


def _num(value: Any) -> float | None:
    """A figure as a float; None when missing (JSON null, nan: not computed or not finite)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _fmt(value: Any, spec: str = ".2e") -> str:
    """A figure for the page: "n/a" when missing, "inf" when infinite."""
    v = _num(value)
    return "n/a" if v is None else ("inf" if v > 0 else "-inf") if math.isinf(v) else format(v, spec)


def _pow10(e: int) -> str:
    """10^e as an axis label, with a superscript exponent."""
    return {0: "1", 1: "10"}.get(e, "10" + str(e).translate(SUPERSCRIPT))


def _shape(t: dict) -> str:
    """A tensor's shape, escaped, as Python prints a tuple."""
    return _e("(" + ", ".join(str(s) for s in t.get("shape") or []) + ")")


def _verdict(layer: dict) -> str:
    """The layer's verdict as a safe CSS class suffix."""
    return v if (v := str(layer.get("verdict", "unknown"))) in VERDICT_COLOURS else "unknown"


def _verdict_text(layer: dict, verdict: str) -> str:
    """The verdict as shown: ``error (backward)`` names the side of the user's code that failed."""
    text, side = str(layer.get("verdict", verdict)), layer.get("error_side")
    return f"{text} ({side})" if text == "error" and side else text


def _badge(verdict: str, text: str) -> str:
    """A pill coloured by verdict."""
    return f'<span class="badge b-{verdict}">{_e(text)}</span>'


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


# ---------------------------------------------------------------------- header and table


def _header(data: dict, layers: list[dict], title: str) -> str:
    """Title, overall result (linked to the layer to fix), seed, verdict counts and what to fix first."""
    first = data.get("first_failure")
    where = next((i for i, layer in enumerate(layers) if layer.get("name") == first), None)
    if data.get("ok", all(_verdict(layer) == "pass" for layer in layers)):
        status = '<p class="status ok">All layers pass</p>'
    else:
        status = (
            '<p class="status bad">Some layers fail</p>'
            if where is None
            else f'<p class="status bad">First '
            f'failure: <a href="#layer-{where}">{_e(first)}</a> &mdash; fix this layer first</p>'
        )
    chips = " ".join(_badge(v, f"{n} {v}") for v, n in Counter(_verdict(layer) for layer in layers).most_common())
    down = sum(1 for layer in layers if layer.get("downstream_of"))
    chips += f' <span class="muted">({down} failing only downstream of another layer)</span>' if down else ""
    fix = _notes(layers[where]) if where is not None else ""
    fix = f'<div class="fix"><b>{_e(first)}</b>: {fix}</div>' if fix else ""
    count = f"{len(layers)} layer{'' if len(layers) == 1 else 's'}"
    return f"<h1>{_e(title)}</h1>{status}<p>seed {_e(data.get('seed', 'n/a'))} &middot; {count}: {chips}</p>{fix}"


def _notes(layer: dict) -> str:
    """What the check says about a layer in words: downstream note, message, diagnoses."""
    parts = (
        [
            f'<div class="downnote">fails only because of <b>{_e(layer["downstream_of"])}</b> &mdash; fix that '
            "layer first</div>"
        ]
        if layer.get("downstream_of")
        else []
    )
    parts += [f'<div class="msg">{_e(layer["message"])}</div>'] if layer.get("message") else []
    parts += [f'<div class="diag">{_e(d)}</div>' for d in layer.get("diagnosis") or []]
    if _verdict(layer) == "reference":
        parts.append(f"<div>PyTorch and JAX disagree with each other ({_fmt(layer.get('refs_error'))})</div>")
    return "".join(parts)


def _td(text: str, cls: str = "num", bad: bool = False, extra: str = "") -> str:
    """A table cell; ``text`` must already be escaped."""
    return f'<td class="{cls}{" bad" if bad else ""}"{extra}>{text}</td>'


def _tensor_cells(t: dict) -> str:
    """The cells of one tensor's row, from its name to the worst element's values."""
    tol, fd = _num(t.get("tolerance")), t.get("fd") or {}
    errs = [
        _td(_fmt(t.get(k)), bad=(_num(t.get(k)) or 0.0) > (tol if tol is not None else math.inf))
        for k in ("error_torch", "error_jax")
    ]
    fd_text = "-" if not fd else "kinks" if fd.get("consistent") is None else _fmt(fd.get("worst"), ".1e")
    fd_title = f' title="{_e(fd.get("probes"))} probes, {_e(fd.get("kinks"))} kinks"' if fd else ""
    index = t.get("worst_index") or []
    return "".join(
        [
            _td(_e(t.get("name", "?")), "mono", not t.get("ok", True)),
            _td(_e(t.get("side", "")), ""),
            _td(_shape(t), "mono"),
            *errs,
            _td(_fmt(tol, ".1e")),
            _td(fd_text, bad=fd.get("consistent") is False, extra=fd_title),
            _td(_e(list(index)) if index else "-", "mono"),
            _td(_fmt(t.get("worst_user"), ".6g")),
            _td(_fmt(t.get("worst_ref"), ".6g")),
        ]
    )


def _boundaries(layer: dict) -> str:
    """The (network) entry's layer boundaries, flagged against the tolerance the check uses for
    them (the largest of the entry's tensors)."""
    rows = layer.get("boundaries") or []
    if not rows:
        return ""
    tol = max((_num(t.get("tolerance")) or 0.0 for t in layer.get("tensors") or []), default=0.0) or 1e-6
    body = "".join(
        f"<tr>{_td(_e(b.get('name', '?')), 'mono')}"
        + "".join(_td(_e(b.get(k)), bad=b.get(k) != 1) for k in ("forward_calls", "backward_calls"))
        + "".join(
            _td(_fmt(b.get(k)), bad=(_num(b.get(k)) or 0.0) > tol)
            for k in ("input_error", "output_error", "grad_error")
        )
        + "</tr>"
        for b in rows
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("layer", "forward calls", "backward calls", "input error", "output error", "upstream grad error")
    )
    return (
        '<table class="boundaries"><caption>What the network\'s own pass fed each layer (relative error '
        f"against the reference; calls other than 1 and errors above {_fmt(tol, '.1e')} in red)</caption>"
        f"<tr>{head}</tr>{body}</table>"
    )


def _layer_block(i: int, layer: dict, first: str | None) -> str:
    """A layer's rows: one per tensor (layer cells spanning them), then its notes and boundaries."""
    verdict, name, tensors = _verdict(layer), layer.get("name", "?"), layer.get("tensors") or [None]
    cls = (
        f"layer v-{verdict}"
        + (" first-failure" if name == first else "")
        + (" downstream" if layer.get("downstream_of") else "")
    )
    span, rows = f' rowspan="{len(tensors)}"' if len(tensors) > 1 else "", []
    for j, t in enumerate(tensors):
        head = (
            (
                f'<td class="lname mono"{span}><b>{_e(name)}</b></td><td{span}>{_e(layer.get("kind", ""))}</td>'
                f"<td{span}>{_badge(verdict, _verdict_text(layer, verdict))}</td>"
            )
            if j == 0
            else ""
        )
        body = _tensor_cells(t) if t else '<td colspan="10" class="muted">no tensor compared</td>'
        rows.append(f'<tr class="{cls}" data-layer="{_e(name)}">{head}{body}</tr>')
    if extra := _notes(layer) + _boundaries(layer):
        rows.append(f'<tr class="{cls} note" data-layer="{_e(name)}"><td colspan="{len(COLUMNS)}">{extra}</td></tr>')
    return f'<tbody class="{cls}" id="layer-{i}">{"".join(rows)}</tbody>'


def _table(data: dict, layers: list[dict]) -> str:
    """The table of every tensor of every layer (id trigrad-table), with a filter for failing layers."""
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    blocks = "".join(_layer_block(i, layer, data.get("first_failure")) for i, layer in enumerate(layers))
    return (
        '<h2>Layers</h2><label><input type="checkbox" id="only-failing"> show only failing layers</label>'
        f'<div class="scroll"><table id="trigrad-table"><thead><tr>{head}</tr></thead>{blocks}</table></div>'
    )


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


# ---------------------------------------------------------------------- the page


def render_html(report: Any, *, title: str = "trigrad report") -> str:
    """The report (a ``Report`` or its ``to_dict()``, e.g. loaded from JSON) as one
    self-contained HTML5 page. A dict that does not follow ``schema.json`` raises
    :class:`~harness.report.ReportError` naming the bad field's JSON path."""
    data = report_data(report)
    layers = list(data["layers"])
    bars = _bars_svg(layers)
    body = (
        _header(data, layers, title)
        + _table(data, layers)
        + (f"<h2>Errors per tensor</h2><figure>{bars}</figure>" if bars else "")
        + _heatmaps(layers)
    )
    # the policy makes any accidental external reference fail loudly (a console error) rather
    # than silently reach for the network
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        + HTML_MARKER
        + '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>{body}\n"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_html(report: Any, path: str | os.PathLike, *, title: str = "trigrad report") -> None:
    """Write :func:`render_html` to ``path`` atomically (a temporary file in the same folder,
    then a rename), so a reader never sees half a page; a bad report (:class:`ReportError`)
    writes nothing."""
    write_atomic(path, render_html(report, title=title))


__all__ = ["render_html", "write_html", "plotted_error"]
