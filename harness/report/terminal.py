"""The report as a person reads it in a terminal: a rich table and the findings under it.

One row per compared tensor, grouped by layer: errors against torch, jax and finite
differences, the tolerance, and where the worst element is. The first failure is bold
and marked, layers that fail only because of it are dimmed, and each failing layer's
diagnosis follows the table, first failure first. Works on a :class:`Report` or on its
``to_dict()`` (a JSON file read back), checked against the schema first (:class:`ReportError`).

Every user string (layer, tensor and kind names, messages, diagnoses) reaches rich as a
``Text``, never as markup, with its control characters made visible (:mod:`.safe_text`).
Layer names and verdicts are never cut: when the table does not fit the console it drops the
worst-element column, then stacks each layer's name over its rows.
"""

from __future__ import annotations

import io
from typing import Any

from .safe_text import visible
from .validate import report_data

VERDICT_STYLE = {
    "pass": "green",
    "forward": "red",
    "backward": "red",
    "both": "red",
    "inconclusive": "yellow",
    "reference": "magenta",
    "error": "bold red",
}
NUMBERS = ["vs torch", "vs jax", "vs FD", "tol"]
MESSAGE_CELL = 40  # characters of a message shown in the table; the findings under it give it whole
INDENT = 2  # of the tensor rows under a layer's name when stacked
WORST_WIDTH = 110  # the worst-element column only on a console at least this wide (and only if it fits)


def caption() -> str:
    import numpy as np

    from ..check import FD_TOL

    return (
        "relative errors; tol applies to the torch and jax columns; vs FD is your backward against finite "
        f"differences of your own forward (tolerance {FD_TOL[np.dtype(np.float64)]:g} in float64, "
        f"{FD_TOL[np.dtype(np.float32)]:g} in float32)"
    )


def _data(report: Any) -> dict:
    return report_data(report)


def _name(value: Any) -> str:
    """A user's name for one table cell or line: control characters and line breaks escaped."""
    return visible(value, one_line=True)


def _missing(value: Any) -> bool:
    return value is None or value != value  # JSON null, or nan in a Report object


def _num(value: Any, spec: str = ".1e") -> str:
    return "-" if _missing(value) else format(float(value), spec)


def _fd(t: dict) -> Any:
    """Finite differences of the user's own forward against the user's backward: red when
    they disagree (the backward does not differentiate the forward)."""
    from rich.text import Text

    fd = t.get("fd")
    if not fd:
        return Text("-")
    if fd.get("consistent") is None:
        text = f"kinks ({fd.get('kinks', 0)}/{fd.get('probes', 0)})" if fd.get("kinks") else "noisy"
        return Text(text, style="yellow")
    return Text(_num(fd.get("worst")), style="" if fd["consistent"] else "red")


def _worst(t: dict) -> str:
    if t.get("ok") or _missing(t.get("worst_user")):
        return ""
    idx = ",".join(str(i) for i in t.get("worst_index") or [])
    return f"[{idx}] {_num(t['worst_user'], '.4g')} vs {_num(t.get('worst_ref'), '.4g')}"


def headline(report: Any) -> str:
    """One line: all pass, or the layer to fix first and how many layers fail (user names made
    safe to print; the caller must not treat it as markup)."""
    d = _data(report)
    failing = [layer["name"] for layer in d["layers"] if layer["verdict"] != "pass"]
    if not failing:
        n = len(d["layers"])
        return f"{'the entry passes' if n == 1 else f'all {n} entries pass'} (seed {d['seed']})"
    first = next((layer for layer in d["layers"] if layer["name"] == d["first_failure"]), None)
    side = (
        ""
        if not first
        else (
            f" (error in the {first['error_side']})"
            if first["verdict"] == "error" and first.get("error_side")
            else f" ({first['verdict']})"
        )
    )
    return (
        f"fix first: {_name(d['first_failure'])}{side}; {len(failing)} of {len(d['layers'])} entries fail "
        f"(seed {d['seed']})"
    )


def verdict_text(layer: dict) -> str:
    """The verdict as shown: ``"error (backward)"`` names the side of the code that failed."""
    side = layer.get("error_side")
    return f"{layer['verdict']} ({side})" if layer["verdict"] == "error" and side else layer["verdict"]


def _ratio(t: dict) -> float:
    errors = [e for e in (t.get("error_torch"), t.get("error_jax")) if e is not None and not _missing(e)]
    return max(errors, default=0.0) / max(t.get("tolerance") or 1e-300, 1e-300)


def _snippet(message: str) -> str:
    """A message's first line, cut for a table cell (the findings print it whole)."""
    lines = [line for line in message.split("\n") if line.strip()]
    if not lines:
        return ""
    line = _name(lines[0])
    if len(line) > MESSAGE_CELL:
        return line[: MESSAGE_CELL - 1] + "\u2026"
    return line + (" \u2026" if len(lines) > 1 else "")


def _rows(d: dict, full: bool) -> list[tuple[dict, list[list[Any]]]]:
    """Per layer, the cells of its rows: tensor, vs torch, vs jax, vs FD, tol, worst element.
    Without ``full`` a passing layer shrinks to its closest call (marked ``~``) and a layer
    failing downstream of another to its failing tensors."""
    from rich.text import Text

    out = []
    for layer in d["layers"]:
        tensors = layer["tensors"]
        mark = ""
        if not full and layer["verdict"] == "pass" and len(tensors) > 1:
            tensors, mark = [max(tensors, key=_ratio)], "~"
        elif not full and layer.get("downstream_of"):  # only what fails, and that only because of another layer
            tensors = [t for t in tensors if not t["ok"]] or tensors
        rows = [
            [
                Text(mark + _name(t["name"]), style="" if t["ok"] else "red"),
                *(Text(_num(t[k]), style="" if t["ok"] else "red") for k in ("error_torch", "error_jax")),
                _fd(t),
                Text(_num(t["tolerance"])),
                Text(_worst(t)),
            ]
            for t in tensors
        ]
        out.append((layer, rows or [[Text(_snippet(layer["message"]), style="red")] + [Text("")] * 5]))
    return out


def _label(d: dict, layer: dict) -> tuple[Any, Any]:
    """The layer's name and verdict, the first failure bold and marked."""
    from rich.text import Text

    first = layer["name"] == d["first_failure"]
    verdict = Text(verdict_text(layer), style=VERDICT_STYLE.get(layer["verdict"], ""))
    if first:
        verdict.append(" <", style="bold red")
    return Text(_name(layer["name"]), style="bold red" if first else ""), verdict


def _natural_width(renderable: Any) -> int:
    """Columns ``renderable`` takes when nothing has to wrap."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=100_000, file=io.StringIO())
    return Measurement.get(console, console.options, renderable).maximum


def table(report: Any, *, full: bool = False, width: int = 120) -> Any:
    """The compared tensors as a rich renderable: every one with ``full``, else a passing
    layer shrinks to its closest call (the tensor nearest its tolerance, marked ``~``).
    A ``rich.table.Table`` with the worst element's column when ``width`` (the console's) is
    at least :data:`WORST_WIDTH` and it fits, without it when only that fits, else each layer's
    name and verdict on a line of their own over its rows (a ``rich.console.Group``): names
    and verdicts are never cut."""
    d = _data(report)
    rows = _rows(d, full)
    for worst in (True, False) if width >= WORST_WIDTH else (False,):
        # a message in the tensor column may wrap: whether the table fits is decided without it
        if _natural_width(_wide(d, rows, worst, messages=False)) <= width:
            return _wide(d, rows, worst)
    return _stacked(d, rows, width)


def _wide(d: dict, rows: list, worst: bool, messages: bool = True) -> Any:
    """One table: layer, verdict, tensor, the figures and (``worst``) the worst element. Only the
    tensor column may wrap, and only a layer's message wraps in it (names are single words)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = Table(
        title=Text(headline(d)),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption=Text(caption(), style="dim"),
        caption_justify="left",
    )
    for name in ["layer", "verdict", "tensor", *NUMBERS] + (["worst element"] if worst else []):
        out.add_column(name, justify="right" if name in NUMBERS else "left", no_wrap=name != "tensor")
    for layer, cells in rows:
        head, style = _label(d, layer), "dim" if layer.get("downstream_of") else ""
        if not messages and not layer["tensors"]:
            cells = [[Text("")] * 6]
        for i, row in enumerate(cells):
            out.add_row(
                *(head if i == 0 else ("", "")),
                *(row if worst else row[:-1]),
                style=style,
                end_section=(len(cells) > 1 and i == len(cells) - 1) or not layer["tensors"],
            )
    return out


def _stacked(d: dict, rows: list, width: int) -> Any:
    """For a narrow console: each layer's name and verdict on a line, its tensors in a table
    under it; the tables share column widths, so the figures line up down the page."""
    from rich import box
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    widths = [
        max([len(h)] + [row[k].cell_len for _, cells in rows for row in cells])
        for k, h in enumerate(["tensor", *NUMBERS])
    ]

    def grid(header: bool) -> Table:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_header=header, show_edge=False, header_style="bold")
        for k, name in enumerate(["tensor", *NUMBERS]):
            t.add_column(name, width=widths[k], justify="left" if k == 0 else "right", no_wrap=k > 0, overflow="fold")
        return t

    # the tensor column gives way (a long message wraps there) so the figures keep their width
    spare = width - INDENT - _natural_width(grid(True))
    widths[0] = max(6, widths[0] + min(spare, 0))
    parts: list[Any] = [Text(headline(d)), Padding(grid(True), (1, 0, 0, INDENT))]
    for layer, cells in rows:
        name, verdict = _label(d, layer)
        style = "dim" if layer.get("downstream_of") else ""
        parts.append(Text.assemble(name, "  ", verdict, style=style))
        sub = grid(False)
        for row in cells:
            sub.add_row(*row[:-1], style=style)
        parts.append(Padding(sub, (0, 0, 0, INDENT)))
    parts.append(Text(caption(), style="dim"))
    return Group(*parts)


def findings(report: Any) -> list[tuple[str, str, str]]:
    """``(layer, style, line)`` for every message and diagnosis, the first failure first; the
    strings have their control characters made visible (they are still not markup)."""
    d = _data(report)
    order = sorted(d["layers"], key=lambda layer: layer["name"] != d["first_failure"])
    out = []
    for layer in order:
        if layer["verdict"] == "pass" and not layer["message"]:
            continue
        name, style = _name(layer["name"]), "dim" if layer.get("downstream_of") else ""
        if layer.get("downstream_of"):
            out.append((name, style, f"fails only because of {_name(layer['downstream_of'])}: fix that first"))
        if layer["message"]:
            out.append((name, style, visible(layer["message"])))
        out += [(name, style, visible(line)) for line in layer["diagnosis"]]
        if not layer.get("downstream_of"):
            bad = [t for t in layer["tensors"] if not t["ok"] and _worst(t)]
            out += [(name, style, f"{_name(t['name'])}: worst element {_worst(t)} (yours vs torch)") for t in bad[:3]]
            if len(bad) > 3:
                out.append((name, style, f"... and {len(bad) - 3} more failing tensors (--full, --json)"))
    return out


def render_terminal(report: Any, console: Any = None, *, full: bool = False) -> None:
    """Print the table (``full``: every tensor of passing layers too) and the findings to
    ``console`` (a ``rich.console.Console``; stdout by default, colour only on a terminal).
    Raises :class:`~harness.report.ReportError` for a report dict that does not follow the schema."""
    from rich.console import Console
    from rich.text import Text

    d = _data(report)  # checked before anything is printed: no half-rendered report
    console = console or Console()
    console.print(table(d, full=full, width=console.width))
    for name, style, line in findings(d):
        console.print(Text.assemble((f"{name}: ", style or "bold"), (line, style)))
    if d.get("inferred"):  # no spec was given: what was inferred, and how sure (pin it with `trigrad infer`)
        inf = d["inferred"]
        style = "" if inf["status"] == "exact" else "yellow"
        console.print(Text.assemble(("spec inferred from the code: ", "bold"), (inf["status"], style)))
        for line in inf["layers"]:
            console.print(Text(f"  {line}"))


__all__ = ["findings", "headline", "render_terminal", "table", "verdict_text"]
