"""User strings made safe to show: layer and tensor names, messages and diagnoses come from
user code (or a hand-edited JSON report) and may hold terminal escape sequences.

An ANSI or OSC sequence (``"\\x1b[2J"`` clears the screen, ``"\\x1b]0;...\\x07"`` retitles the
window, OSC 8 forges links) printed raw would act on the reader's terminal; so would a carriage
return that overwrites a line, or a bidirectional override that reorders what is shown. Each
such character is replaced by its Python escape, shown as text (``\\x1b``), never emitted.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls except tab and newline, DEL, C1 controls, bidirectional marks and overrides,
# and lone surrogates (a JSON "\ud800" that no UTF-8 writer could encode)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_BREAKS = str.maketrans({"\n": "\\n", "\t": "\\t"})


def _escape(m: re.Match) -> str:
    code = ord(m.group())
    if code == 0x0D:
        return "\\r"  # as Python writes it: a stray carriage return is the common case (Windows text)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: Any, *, one_line: bool = False) -> str:
    """``text`` as a string whose control characters are shown as escapes (``\\x1b``).
    Newlines and tabs are kept (a traceback in a message stays readable) unless ``one_line``
    (a name in a table cell), where they are escaped too."""
    s = _CONTROL.sub(_escape, str(text).replace("\r\n", "\n"))
    return s.translate(_BREAKS) if one_line else s


__all__ = ["visible"]
