"""Watching the user's own network pass at every layer boundary.

While the user's network runs its own ``forward`` / ``backward``, each object-style layer's
methods are shadowed by recording hooks, so the end-to-end pass can be compared with the
reference layer by layer: how often each layer was called, and the input, output and
upstream gradient it saw. The hooks go in through a per-object subclass (so class-level
aliases such as ``__call__ = forward`` are seen too), never change what the user's code
computes, never raise into it, and are removed on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from .arrays import to_float64
from .layer import ObjectLayer, WrappedLayer
from .layouts import data_from_user


class Calls:
    """What one layer saw during the user's own network passes: canonical float64
    ``inputs`` / ``outputs`` of each forward call and ``grads`` (upstream) of each backward
    call. Calls a layer makes to itself (a backward that re-runs its forward) are not
    counted: ``depth`` tracks them."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray | None] = []
        self.outputs: list[np.ndarray | None] = []
        self.grads: list[np.ndarray | None] = []
        self.depth = 0


def _canonical(w: WrappedLayer, value: Any, features: Any) -> np.ndarray | None:
    try:
        v, _ = to_float64(value, "recorded")
        return data_from_user(np.array(v, copy=True), w.layout, features)
    except Exception:  # not an array, or an odd shape: nothing to compare; the pass reports it
        return None


def _data(args: tuple, kwargs: dict) -> Any:
    """The data argument of a call: the first positional one, else the first keyword one."""
    return args[0] if args else next(iter(kwargs.values()), None)


def _hooks(w: WrappedLayer, c: Calls, forward: Callable, backward: Callable) -> tuple[Callable, Callable]:
    """Recording versions of the (unbound) ``forward`` and ``backward``."""

    def fwd(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = c.depth == 0
        c.depth += 1
        try:
            x = _canonical(w, _data(args, kwargs), w.features_in) if outer else None
            y = forward(self, *args, **kwargs)
        finally:
            c.depth -= 1
        if outer:
            c.inputs.append(x)
            c.outputs.append(_canonical(w, y, w._output_features(x.shape, None)) if x is not None else None)
        return y

    def bwd(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = c.depth == 0
        if outer:
            shape = c.inputs[-1].shape if c.inputs and c.inputs[-1] is not None else None
            c.grads.append(_canonical(w, _data(args, kwargs), w._output_features(shape, None) if shape else None))
        c.depth += 1
        try:
            result = backward(self, *args, **kwargs)
        finally:
            c.depth -= 1
        if outer and hasattr(w, "keep_returned"):  # gradients it returned to the network (dx, dW, db) ...
            w.keep_returned(result)
        return result

    return fwd, bwd


def _install(w: ObjectLayer, c: Calls) -> Callable[[], None] | None:
    """Put the hooks on ``w.obj`` through a subclass made for it; returns the undo, or None
    when the object cannot be watched (methods set on the instance, a class that refuses
    ``__class__`` assignment)."""
    obj, cls = w.obj, type(w.obj)
    names = (w._forward_name, w._backward_name)
    if any(n in getattr(obj, "__dict__", {}) for n in names):
        return None  # an instance attribute would shadow the hook
    forward, backward = (getattr(cls, n, None) for n in names)
    if not (callable(forward) and callable(backward)):
        return None
    fwd, bwd = _hooks(w, c, forward, backward)
    namespace: dict[str, Any] = {"__slots__": (), names[0]: fwd, names[1]: bwd, "_trigrad_watched": True}
    if getattr(cls, "__call__", None) is forward:  # noqa: B004 - __call__ = forward: layer(x) goes through the hook too
        namespace["__call__"] = fwd
    try:
        obj.__class__ = type(cls.__name__, (cls,), namespace)
    except Exception:  # a metaclass or layout that refuses: leave this layer unwatched
        return None

    def undo() -> None:
        obj.__class__ = cls

    return undo


@contextmanager
def watching(layers: Mapping[str, WrappedLayer]) -> Iterator[dict[str, Calls]]:
    """Record the calls of every watchable layer while the block runs: ``{path: Calls}``.
    Function pairs, per-example code and an object mapped at several paths are left out."""
    objs = [id(w.obj) for w in layers.values() if isinstance(w, ObjectLayer)]
    calls: dict[str, Calls] = {}
    undo: list[Callable[[], None]] = []
    try:
        for path, w in layers.items():
            if not isinstance(w, ObjectLayer) or not w.batched or objs.count(id(w.obj)) > 1:
                continue
            c = Calls()
            restore = _install(w, c)
            if restore is not None:
                undo.append(restore)
                calls[path] = c
        yield calls
    finally:
        for restore in reversed(undo):
            restore()


@contextmanager
def returns_kept(layers: Mapping[str, WrappedLayer]) -> Iterator[None]:
    """While the user's network runs its own backward: keep what each object layer's backward
    returns to it (gradients returned as (dx, dW, db) ...), for ``param_grads``; layers a
    :func:`watching` block already watches keep theirs through it."""
    todo = {
        p: w for p, w in layers.items() if isinstance(w, ObjectLayer) and not getattr(w.obj, "_trigrad_watched", False)
    }
    with watching(todo):
        yield


__all__ = ["Calls", "returns_kept", "watching"]
