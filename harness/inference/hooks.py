"""Recording hooks on a network's layer objects while its own passes run.

:func:`watching` shadows each object's ``forward`` and ``backward`` by an instance attribute
(a class that aliases ``__call__ = forward`` gets a per-object subclass routing calls through
it), records every call (:class:`Call`: which object, the input and output, the call it ran
inside; :class:`BackCall`: the gradient handed in and the one returned), never changes what
the user's code computes, and removes everything in ``finally``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Call:
    """One watched forward call. ``x`` / ``y``: copies of the data argument and the result
    (user layout, None when not an array); ``x_id`` / ``y_id``: the identities of the arrays
    handed over (kept alive in ``_refs`` so they stay unique); ``parent``: the index of the
    call it ran inside, None at the top; ``kwargs``: keyword arguments of the call
    (a training flag); ``args``: positional arguments after the data."""

    index: int
    obj: Any
    path: str
    x: Any
    x_id: int
    parent: int | None
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    y: Any = None
    y_id: int = 0
    children: list[int] = field(default_factory=list)
    _refs: tuple = ()


@dataclass
class BackCall:
    """One watched backward call: the object's path, the upstream gradient it was handed
    (``g``) and the input gradient it returned (``dx``; the first array of a tuple), copies."""

    path: str
    g: Any
    dx: Any


def copy_array(value: Any) -> Any:
    try:
        return np.array(value, copy=True) if hasattr(value, "shape") else None
    except Exception:  # an array type numpy cannot read: nothing to compare
        return None


def _hook(obj: Any, path: str, original: Callable, calls: list[Call], stack: list[int]) -> Callable:
    """A recording stand-in for ``obj.forward``; never raises into the user's code."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        if stack and calls[stack[-1]].obj is obj:  # its own forward calling itself again: one call
            return original(*args, **kwargs)
        x = args[0] if args else next(iter(kwargs.values()), None)
        rest = {k: v for k, v in kwargs.items() if args or v is not x}
        parent = stack[-1] if stack else None
        c = Call(len(calls), obj, path, copy_array(x), id(x), parent, tuple(args[1:]), rest)
        calls.append(c)
        if parent is not None:
            calls[parent].children.append(c.index)
        stack.append(c.index)
        try:
            y = original(*args, **kwargs)
        finally:
            stack.pop()
        c.y, c.y_id, c._refs = copy_array(y), id(y), (x, y)
        return y

    return forward


def _shadow(attrs: dict[str, Any], name: str, hook: Callable) -> Callable[[], None]:
    """Put ``hook`` in as the instance's method ``name``; returns the undo."""
    had, before = name in attrs, attrs.get(name)
    attrs[name] = hook

    def undo() -> None:
        if had:
            attrs[name] = before
        else:
            attrs.pop(name, None)

    return undo


def _call_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    return self.forward(*args, **kwargs)


def _class_back(obj: Any, cls: type) -> Callable[[], None]:
    def undo() -> None:
        obj.__class__ = cls

    return undo


def _first_array(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        value = next((v for v in value if hasattr(v, "shape")), None)
    return copy_array(value)


def _back_hook(path: str, original: Callable, back: list[BackCall]) -> Callable:
    """A recording stand-in for ``obj.backward`` (outer calls only)."""
    depth = [0]

    def backward(*args: Any, **kwargs: Any) -> Any:
        if depth[0]:
            return original(*args, **kwargs)
        g = args[0] if args else next(iter(kwargs.values()), None)
        rec = BackCall(path, copy_array(g), None)
        depth[0] += 1
        try:
            dx = original(*args, **kwargs)
        finally:
            depth[0] -= 1
        rec.dx = _first_array(dx)
        back.append(rec)
        return dx

    return backward


@contextmanager
def watching(objects: dict[str, Any], calls: list[Call], back: list[BackCall]) -> Iterator[list[str]]:
    """Shadow every object's ``forward`` (and ``backward``) by an instance attribute while
    the block runs; yields the paths that could not be watched. Everything is put back in
    ``finally``."""
    stack: list[int] = []
    undo: list[Callable[[], None]] = []
    unwatched: list[str] = []
    try:
        for path, obj in objects.items():
            attrs = getattr(obj, "__dict__", None)
            if not isinstance(attrs, dict):
                unwatched.append(path)
                continue
            if getattr(obj, "forward", None) is None:  # layer(x) code: its class's __call__ is the forward
                cls = type(obj)
                try:
                    obj.__class__ = type(cls.__name__, (cls,), {"forward": cls.__call__, "__call__": _call_forward})
                except TypeError:
                    unwatched.append(path)
                    continue
                undo.append(_class_back(obj, cls))
            undo.append(_shadow(attrs, "forward", _hook(obj, path, obj.forward, calls, stack)))
            if callable(getattr(obj, "backward", None)):
                undo.append(_shadow(attrs, "backward", _back_hook(path, obj.backward, back)))
            cls = type(obj)
            fwd = getattr(cls, "forward", None)
            if fwd is not None and getattr(cls, "__call__", None) is fwd:  # noqa: B004 - __call__ = forward
                try:  # layer(x) looks __call__ up on the class: route it through the instance's forward
                    obj.__class__ = type(cls.__name__, (cls,), {"__call__": _call_forward})
                except TypeError:
                    unwatched.append(path)
                else:
                    undo.append(_class_back(obj, cls))
        yield unwatched
    finally:
        for restore in reversed(undo):
            restore()


__all__ = ["BackCall", "Call", "copy_array", "watching"]
