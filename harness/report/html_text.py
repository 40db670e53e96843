"""Text for the HTML report (:mod:`harness.report.html`): user strings escaped, figures
formatted, verdicts as CSS classes and coloured badges. Shared by the table and the figures."""

from __future__ import annotations

import html
import math
from typing import Any

from .safe_text import visible

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
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


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
