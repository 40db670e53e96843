"""Where in the user's code something failed: the innermost traceback frame outside trigrad."""

from __future__ import annotations

import traceback
from pathlib import Path
from types import FrameType, TracebackType

_HARNESS = str(Path(__file__).resolve().parent)


def _foreign(filename: str) -> bool:
    """A frame of the user's code: not trigrad's own, nor importlib's (importing the user's
    file), nor the ``exit()`` / ``quit()`` builtins'."""
    return not filename.startswith(_HARNESS) and "importlib" not in filename and "_sitebuiltins" not in filename


def user_frame(exc: BaseException) -> str:
    """``"Type: message at file:line in function"`` for the innermost frame of ``exc``'s
    traceback that is not trigrad's own (nor importlib's, when importing the user's file)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _foreign(f.filename)]
    where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _describe(frame: FrameType, lineno: int) -> str:
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)  # Python 3.11+: Dense.backward, not backward
    what = f"at import of {Path(code.co_filename).name}" if name == "<module>" else f"in {name}"
    return f"{what} ({code.co_filename}:{lineno})"


def user_location(tb: TracebackType | None) -> str | None:
    """``"in Dense.backward (file.py:12)"`` (or ``"at import of file.py (...)"``) for the
    innermost frame of traceback ``tb`` in the user's code; None when there is none."""
    found = None
    while tb is not None:
        if _foreign(tb.tb_frame.f_code.co_filename):
            found = (tb.tb_frame, tb.tb_lineno)
        tb = tb.tb_next
    return _describe(*found) if found else None


def caller_location(frame: FrameType | None) -> str | None:
    """The same description for the nearest frame up the stack from ``frame`` that is the
    user's code (e.g. who called ``os._exit``)."""
    while frame is not None:
        if _foreign(frame.f_code.co_filename):
            return _describe(frame, frame.f_lineno)
        frame = frame.f_back
    return None


__all__ = ["caller_location", "user_frame", "user_location"]
