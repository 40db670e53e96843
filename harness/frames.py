"""Where in the user's code something failed: the innermost traceback frame outside trigrad."""

from __future__ import annotations

import traceback
from pathlib import Path

_HARNESS = str(Path(__file__).resolve().parent)


def user_frame(exc: BaseException) -> str:
    """``"Type: message at file:line in function"`` for the innermost frame of ``exc``'s
    traceback that is not trigrad's own (nor importlib's, when importing the user's file)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(_HARNESS) and "importlib" not in f.filename]
    where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


__all__ = ["user_frame"]
