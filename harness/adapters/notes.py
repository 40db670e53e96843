"""Hints the adapters give about what the user's code returned: a float dtype other than the
one it computes in, a data shape that another layout explains; a name that is close to a
valid one."""

from __future__ import annotations

import difflib

import numpy as np

from .arrays import is_float_dtype
from .layouts import Layout, user_data_shape


def dtype_note(name: str, found: np.dtype, expected: np.dtype, computes_in: str) -> str | None:
    """``"output: is float32 while the parameters are float64: a silent downcast ..."`` when a
    floating-point tensor the code returned is not in the dtype it computes in, else None."""
    found, expected = np.dtype(found), np.dtype(expected)
    if found == expected or not (is_float_dtype(found) and is_float_dtype(expected)):
        return None
    if found.itemsize < expected.itemsize:
        return (
            f"{name}: is {found} while {computes_in}: a silent downcast (likely cause: an array allocated or "
            f"cast as {found}, e.g. np.zeros(shape, np.{found}); its values keep only {found}'s precision)"
        )
    return (
        f"{name}: is {found} while {computes_in}: a silent upcast (likely cause: a {found} array or constant "
        f"mixed in; the tolerances follow {expected})"
    )


def _data_hint(found: tuple[int, ...], expected: tuple[int, ...], layout: Layout) -> str:
    found = tuple(found)
    if len(found) == 4 and len(expected) == 4:
        for other in ("NCHW", "NHWC"):
            if other != layout.data and user_data_shape(expected, Layout(data=other)) == found:
                return f"; looks like {other}: pass Layout(data={other!r})"
    return ""


def _close(name: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _listing(names: list[str], limit: int = 24) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"


__all__ = ["_close", "_data_hint", "_listing", "dtype_note"]
