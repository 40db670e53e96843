"""Counting calls into the user's code: wrappers installed on every user layer's forward /
backward and on a network's own passes, so each peer's cost can be given in calls."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass
class CallCounts:
    """Calls into the user's code: ``forward`` / ``backward`` of its layers (every layer
    object or function pair, summed), ``net_forward`` / ``net_backward`` of the network's
    own passes (which call the layers in turn)."""

    forward: int = 0
    backward: int = 0
    net_forward: int = 0
    net_backward: int = 0

    def reset(self) -> None:
        self.forward = self.backward = self.net_forward = self.net_backward = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


def _counted(fn: Callable, counts: CallCounts, what: str) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        setattr(counts, what, getattr(counts, what) + 1)
        return fn(*args, **kwargs)
    return call


def _count_object(obj: Any, forward: str, backward: str, counts: CallCounts) -> None:
    """Count ``obj``'s forward/backward through a subclass made for it (as trigrad's own
    watcher does), so the methods stay class attributes and the watcher still works."""
    cls = type(obj)
    fwd, bwd = getattr(cls, forward), getattr(cls, backward)
    obj.__class__ = type(cls.__name__, (cls,), {forward: _counted(fwd, counts, "forward"),
                                                 backward: _counted(bwd, counts, "backward")})


def count_calls(subject: Any) -> CallCounts:
    """Install counters on every user layer of ``subject`` (a wrapped layer or network) and
    on the network's own forward/backward; returns the live :class:`CallCounts`."""
    from harness.adapters.layer import FunctionLayer, ObjectLayer
    from harness.adapters.network import WrappedNetwork

    counts = CallCounts()
    layers = list(subject.layers.values()) if isinstance(subject, WrappedNetwork) else [subject]
    for w in layers:
        if isinstance(w, ObjectLayer):
            _count_object(w.obj, w._forward_name, w._backward_name, counts)
        elif isinstance(w, FunctionLayer):
            w._f, w._b = _counted(w._f, counts, "forward"), _counted(w._b, counts, "backward")
    if isinstance(subject, WrappedNetwork) and subject.end_to_end:
        subject._net_forward = _counted(subject._net_forward, counts, "net_forward")
        subject._net_backward = _counted(subject._net_backward, counts, "net_backward")
    return counts
