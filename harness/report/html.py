"""A check's report as one self-contained HTML page: the verdict, a table of every compared tensor,
error bars on a log scale and heatmaps of failing tensors. All inline (CSS, SVG, a few lines of
JavaScript; a Content Security Policy forbids fetching anything), so the file opens offline; built from
``Report.to_dict()`` only, so a saved JSON report renders too.

This module is the page: its skeleton, CSS and script. The parts come from
:mod:`~harness.report.html_table` (header and table) and :mod:`~harness.report.html_figures`
(error bars, heatmaps), both writing text through :mod:`~harness.report.html_text`."""

from __future__ import annotations

import os
from typing import Any

from .files import write_atomic
from .html_figures import _bars_svg, _heatmaps, plotted_error
from .html_table import _header, _table
from .html_text import VERDICT_COLOURS, _e
from .paths import HTML_MARKER
from .validate import report_data

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
