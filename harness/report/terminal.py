"""The report as a person reads it in a terminal: a rich table and the findings under it.

One row per compared tensor, grouped by layer: errors against torch, jax and finite
differences, the tolerance, and where the worst element is. The first failure is bold
and marked, layers that fail only because of it are dimmed, and each failing layer's
diagnosis follows the table, first failure first. Works on a :class:`Report` or on its
``to_dict()`` (a JSON file read back).
"""

from __future__ import annotations

from typing import Any

VERDICT_STYLE = {"pass": "green", "forward": "red", "backward": "red", "both": "red", "inconclusive": "yellow",
                 "reference": "magenta", "error": "bold red"}


def caption() -> str:
    import numpy as np

    from ..check import FD_TOL

    return ("relative errors; tol applies to the torch and jax columns; vs FD is your backward against finite "
            f"differences of your own forward (tolerance {FD_TOL[np.dtype(np.float64)]:g} in float64, "
            f"{FD_TOL[np.dtype(np.float32)]:g} in float32)")


def _data(report: Any) -> dict:
    return report.to_dict() if hasattr(report, "to_dict") else report


def _num(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:.1e}"


def _fd(t: dict) -> Any:
    """Finite differences of the user's own forward against the user's backward: red when
    they disagree (the backward does not differentiate the forward)."""
    from rich.text import Text

    fd = t.get("fd")
    if not fd:
        return "-"
    if fd.get("consistent") is None:
        return Text(f"kinks ({fd.get('kinks', 0)}/{fd.get('probes', 0)})" if fd.get("kinks") else "noisy", style="yellow")
    return Text(_num(fd.get("worst")), style="" if fd["consistent"] else "red")


def _worst(t: dict) -> str:
    if t.get("ok"):
        return ""
    idx = ",".join(str(i) for i in t.get("worst_index") or [])
    return f"[{idx}] {t['worst_user']:.4g} vs {t['worst_ref']:.4g}" if t.get("worst_user") is not None else ""


def headline(report: Any) -> str:
    """One line: all pass, or the layer to fix first and how many layers fail."""
    d = _data(report)
    failing = [layer["name"] for layer in d["layers"] if layer["verdict"] != "pass"]
    if not failing:
        n = len(d["layers"])
        return f"{'the entry passes' if n == 1 else f'all {n} entries pass'} (seed {d['seed']})"
    first = next((layer for layer in d["layers"] if layer["name"] == d["first_failure"]), None)
    side = f" ({first['verdict']})" if first else ""
    return (f"fix first: {d['first_failure']}{side}; {len(failing)} of {len(d['layers'])} entries fail "
            f"(seed {d['seed']})")


def _ratio(t: dict) -> float:
    errors = [e for e in (t.get("error_torch"), t.get("error_jax")) if e is not None and e == e]
    return max(errors, default=0.0) / max(t.get("tolerance") or 1e-300, 1e-300)


def table(report: Any, *, full: bool = False, width: int = 120) -> Any:
    """A ``rich.table.Table`` of the compared tensors: every one with ``full``, else a passing
    layer shrinks to its closest call (the tensor nearest its tolerance, marked ``~``). The
    worst element's column is shown when ``width`` (the console's) leaves room for it."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    d = _data(report)
    wide = width >= 110
    out = Table(title=headline(d), title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                caption=caption(), caption_justify="left", caption_style="dim")
    columns = ["layer", "verdict", "tensor", "vs torch", "vs jax", "vs FD", "tol"] + (["worst element"] if wide else [])
    for name in columns:
        out.add_column(name, justify="right" if name.startswith("vs") or name == "tol" else "left",
                       no_wrap=name != "worst element")
    for layer in d["layers"]:
        first = layer["name"] == d["first_failure"]
        style = "dim" if layer.get("downstream_of") else ""
        verdict = Text(layer["verdict"], style=VERDICT_STYLE.get(layer["verdict"], ""))
        name = Text(layer["name"], style="bold red" if first else "")
        if first:
            verdict.append(" <", style="bold red")
        tensors = layer["tensors"] or [None]
        names = {}
        if not full and layer["verdict"] == "pass" and len(tensors) > 1:
            closest = max(tensors, key=_ratio)
            names = {closest["name"]: f"~{closest['name']}"}
            tensors = [closest]
        elif not full and layer.get("downstream_of"):  # only what fails, and that only because of another layer
            tensors = [t for t in tensors if t and not t["ok"]] or tensors
        for i, t in enumerate(tensors):
            head = (name, verdict) if i == 0 else ("", "")
            if t is None:
                out.add_row(*head, Text(layer.get("message", "")[:60], style="red"), "", "", "", "",
                            *([""] if wide else []), style=style, end_section=True)
                continue
            bad = "red" if not t["ok"] else ""
            out.add_row(*head, Text(names.get(t["name"], t["name"]), style=bad), Text(_num(t["error_torch"]), style=bad),
                        Text(_num(t["error_jax"]), style=bad), _fd(t), _num(t["tolerance"]),
                        *([_worst(t)] if wide else []), style=style,
                        end_section=len(tensors) > 1 and i == len(tensors) - 1)
    return out


def findings(report: Any) -> list[tuple[str, str, str]]:
    """``(layer, style, line)`` for every message and diagnosis, the first failure first."""
    d = _data(report)
    order = sorted(d["layers"], key=lambda layer: layer["name"] != d["first_failure"])
    out = []
    for layer in order:
        if layer["verdict"] == "pass" and not layer.get("message"):
            continue
        style = "dim" if layer.get("downstream_of") else ""
        if layer.get("downstream_of"):
            out.append((layer["name"], style, f"fails only because of {layer['downstream_of']}: fix that first"))
        if layer.get("message"):
            out.append((layer["name"], style, layer["message"]))
        out += [(layer["name"], style, line) for line in layer.get("diagnosis", [])]
        if not layer.get("downstream_of"):
            bad = [t for t in layer["tensors"] if not t["ok"] and t.get("worst_user") is not None]
            out += [(layer["name"], style, f"{t['name']}: worst element {_worst(t)} (yours vs torch)") for t in bad[:3]]
            if len(bad) > 3:
                out.append((layer["name"], style, f"... and {len(bad) - 3} more failing tensors (--full, --json)"))
    return out


def render_terminal(report: Any, console: Any = None, *, full: bool = False) -> None:
    """Print the table (``full``: every tensor of passing layers too) and the findings to
    ``console`` (a ``rich.console.Console``; stdout by default, colour only on a terminal)."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    console.print(table(report, full=full, width=console.width))
    for name, style, line in findings(report):
        console.print(Text.assemble((f"{name}: ", style or "bold"), (line, style)))


__all__ = ["findings", "headline", "render_terminal", "table"]
