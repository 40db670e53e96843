"""Where in the user's code something failed: the innermost traceback frame outside trigrad."""

from __future__ import annotations

import re
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

_HARNESS = str(Path(__file__).resolve().parent)
_REFERENCES = str(Path(__file__).resolve().parent.parent / "reference_models")
_STDLIB = sysconfig.get_paths()["stdlib"]
# the libraries the user's code calls into: an error raised inside numpy's einsum is reported
# at the user's line that called einsum
_LIBRARY = re.compile(r"[\\/](site|dist)-packages[\\/](numpy|scipy|torch|jax|jaxlib|cupy)[\\/]")


def _foreign(filename: str) -> bool:
    """A frame of the user's code: not trigrad's own (harness, reference_models), nor
    importlib's (importing the user's file), nor the ``exit()`` / ``quit()`` builtins'."""
    return (
        not filename.startswith((_HARNESS, _REFERENCES))
        and "importlib" not in filename
        and "_sitebuiltins" not in filename
    )


def _library(filename: str) -> bool:
    """Python's own library, a numeric library the user's code calls (numpy, torch, jax ...),
    or generated code (a dataclass's ``__init__`` is compiled from ``<string>``)."""
    return (
        bool(_LIBRARY.search(filename))
        or (filename.startswith(_STDLIB) and "-packages" not in filename)
        or filename == "<string>"
    )


def _innermost(items: list, filename: Callable[[Any], str]) -> Any:
    """The innermost of ``items`` in the user's own code, else in any library but trigrad's."""
    foreign = [i for i in items if _foreign(filename(i))]
    own = [i for i in foreign if not _library(filename(i))]
    return (own or foreign or [None])[-1]


def user_frame(exc: BaseException) -> str:
    """``"Type: message at file:line in function"`` for the innermost frame of ``exc``'s
    traceback in the user's code: not trigrad's own (nor importlib's, when importing the
    user's file), and not numpy's, torch's, jax's or the standard library's when the user's
    code called into them."""
    f = _innermost(traceback.extract_tb(exc.__traceback__), lambda f: f.filename)
    where = f" at {f.filename}:{f.lineno} in {f.name}" if f else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _describe(frame: FrameType, lineno: int) -> str:
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)  # Python 3.11+: Dense.backward, not backward
    what = f"at import of {Path(code.co_filename).name}" if name == "<module>" else f"in {name}"
    return f"{what} ({code.co_filename}:{lineno})"


def user_location(tb: TracebackType | None) -> str | None:
    """``"in Dense.backward (file.py:12)"`` (or ``"at import of file.py (...)"``) for the
    innermost frame of traceback ``tb`` in the user's code; None when there is none."""
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    found = _innermost(frames, lambda f: f[0].f_code.co_filename)
    return _describe(*found) if found else None


def caller_location(frame: FrameType | None) -> str | None:
    """The same description for the nearest frame up the stack from ``frame`` that is the
    user's code (e.g. who called ``os._exit``)."""
    stack: list[tuple[FrameType, int]] = []
    while frame is not None:
        stack.insert(0, (frame, frame.f_lineno))
        frame = frame.f_back
    found = _innermost(stack, lambda f: f[0].f_code.co_filename)
    return _describe(*found) if found else None


__all__ = ["caller_location", "user_frame", "user_location"]
