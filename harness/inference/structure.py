"""Which sub-objects of a network are layers, and what one forward pass does with them.

:func:`layer_objects` finds the candidates: every object reachable from the network through
attributes, list / tuple items and dict entries (``self.fc1``, ``self.layers[0]``,
``self.blocks['b1'].conv1``) that has a ``forward`` method. :func:`watch_forward` then runs
ONE forward of the network's own code (or, for a plain list / dict of layers, each layer in
order) on a deep copy of the network, with every candidate's ``forward`` shadowed by a
recording hook, and returns the :class:`Trace`: each call in order, which object, its
input and output (copies, plus the identities of the arrays handed over), and which call it
ran inside (a block calling its sub-layers). The network's own backward then runs once on
the same copy (a fixed random upstream gradient) with every ``backward`` watched too: the
gradients around an operation of the network's own code are evidence for its kind
(:mod:`.ops`). What the calls mean — who consumed whose output,
the operations the network's code did between calls, residual additions — is read from the
trace by :mod:`.flow`.

Paths are in ``wrap_layer``'s ``params=`` syntax relative to the network: ``"fc1"``,
``"layers[0]"``, ``"blocks['b1'].conv1"``. The user's network is never changed: the pass runs
on ``copy.deepcopy(net)``, also when the user's forward raises; a network that cannot be
copied is refused (running it in place could change it in ways no snapshot restores).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..faults import call_user
from .hooks import BackCall, Call, copy_array, watching

MAX_DEPTH = 6  # containers nest this deep at most (net.blocks['b1'].down.layers[0])


class StructureError(ValueError):
    """The network's structure cannot be read: what was expected, what was found, the likely cause."""


@dataclass
class Trace:
    """One watched forward: ``calls`` in call order; ``x`` / ``y``: the network's input and
    output (copies); ``objects``: ``{path: the user's object}`` (the originals, not the copy
    that ran); ``uncalled``: candidate paths whose forward never ran; ``root_runs``: whether the
    network's own forward ran (False for a plain list / dict run in order)."""

    calls: list[Call]
    x: np.ndarray
    y: Any
    x_id: int
    y_id: int
    objects: dict[str, Any]
    uncalled: list[str]
    root_runs: bool
    notes: list[str] = field(default_factory=list)
    backward: list[BackCall] = field(default_factory=list)
    _refs: tuple = ()


def call_only(value: Any) -> bool:
    """An object whose class defines ``__call__`` as its forward (no ``forward`` method) and
    has a ``backward``: ``layer(x)`` code."""
    try:
        return (
            getattr(value, "forward", None) is None
            and "__call__" in {k for c in type(value).__mro__[:-1] for k in vars(c)}
            and callable(getattr(value, "backward", None))
        )
    except Exception:  # a property that raises: not a layer we can use
        return False


def forward_of(value: Any) -> Any:
    """The bound method that is ``value``'s forward: ``forward``, else its ``__call__``."""
    return value.__call__ if call_only(value) else value.forward


def is_layer(value: Any) -> bool:
    """An object with a callable ``forward``, or a class-defined ``__call__`` and a
    ``backward`` (not a class, a function or an array)."""
    if isinstance(value, (type, np.ndarray, str, bytes, int, float)) or inspect.isroutine(value):
        return False
    try:
        return callable(getattr(value, "forward", None)) or call_only(value)
    except Exception:  # a property that raises: not a layer we can use
        return False


def _members(holder: Any) -> list[tuple[str, Any]]:
    """``(path suffix, value)`` of a holder's attributes, list items or dict entries."""
    if isinstance(holder, (list, tuple)):
        return [(f"[{i}]", v) for i, v in enumerate(holder)]
    if isinstance(holder, dict):
        return [(f"[{k!r}]", v) for k, v in holder.items() if isinstance(k, (str, int))]
    attrs = getattr(holder, "__dict__", None)
    if not isinstance(attrs, dict):
        return []
    return [(k, v) for k, v in attrs.items() if not k.startswith("__")]


def join(prefix: str, suffix: str) -> str:
    """``join("blocks", "['b1']")`` -> ``"blocks['b1']"``; ``join("b", "conv1")`` -> ``"b.conv1"``."""
    if not prefix or suffix.startswith("["):
        return prefix + suffix
    return f"{prefix}.{suffix}"


def layer_objects(root: Any) -> dict[str, Any]:
    """``{path: object}`` of every layer-like object reachable from ``root`` (not ``root``
    itself), in discovery order (attribute order, then list order); an object reachable at
    several paths is listed at the first."""
    found: dict[str, Any] = {}
    ids: set[int] = set()
    seen: set[int] = set()

    def visit(holder: Any, prefix: str, depth: int) -> None:
        if id(holder) in seen or depth > MAX_DEPTH:
            return
        seen.add(id(holder))
        for suffix, value in _members(holder):
            path = join(prefix, suffix)
            if is_layer(value):
                if id(value) not in ids:
                    ids.add(id(value))
                    found[path] = value
                visit(value, path, depth + 1)
            elif isinstance(value, (list, tuple, dict)):
                visit(value, path, depth + 1)

    visit(root, "", 0)
    return found


def _run(root: Any, x: Any) -> tuple[Any, bool]:
    """The network's own forward, or each layer of a plain list / dict in order."""
    if isinstance(root, (list, tuple, dict)):
        layers = list(root.values()) if isinstance(root, dict) else list(root)
        for layer in layers:
            x = call_user(forward_of(layer), x)
        return x, False
    return call_user(forward_of(root), x), True


def _run_backward(root: Any, y: Any) -> str | None:
    """One backward of the network's own code (its layers' backward calls are recorded) with
    a fixed random upstream gradient; what it raised, in words, or None."""
    if not callable(getattr(root, "backward", None)) or not hasattr(y, "shape"):
        return None
    g = np.random.default_rng(0).standard_normal(np.shape(y)).astype(getattr(y, "dtype", np.float64))
    try:
        root.backward(g)
    except Exception as e:  # the check will report it; inference only loses the backward's evidence
        return f"{type(e).__name__}: {e}"
    return None


def _check_target(net: Any) -> None:
    """A network object with a forward, or a list / dict holding only layer objects."""
    if not isinstance(net, (list, tuple, dict)) and not is_layer(net):
        raise StructureError(
            f"infer_network: a {type(net).__name__} has no forward method and is not a list or dict of layers; "
            "pass the network object (with forward/backward), or its layers as a list in forward order"
        )
    if isinstance(net, (list, tuple, dict)):
        bad = [(p, v) for p, v in _members(net) if not is_layer(v)]
        if bad:
            raise StructureError(
                f"infer_network: the layers given hold {bad[0][0]} = {bad[0][1]!r}, which has no forward "
                "method; every entry of a list or dict of layers must be a layer object"
            )


def watch_forward(net: Any, x: Any) -> Trace:
    """Run one forward of ``net`` on ``x`` (user layout), then its backward, and record every
    layer call; see the module docstring. Raises :class:`StructureError` when ``net`` has no forward and is not a
    list / dict of layers, or when no layer object is called; the user's exception when its
    forward raises (the network is unchanged either way)."""
    _check_target(net)
    originals = layer_objects(net)
    try:
        run_on = copy.deepcopy(net)
    except Exception as e:  # running the user's own network could change it in ways no snapshot restores
        raise StructureError(
            f"infer_network: a {type(net).__name__} cannot be copied ({type(e).__name__}: {e}); inference runs "
            "the network's forward on a copy so the network is never changed: make it copyable "
            "(copy.deepcopy), or write the spec by hand (harness.wrap_network)"
        ) from None
    objects = layer_objects(run_on)
    calls: list[Call] = []
    bcalls: list[BackCall] = []
    x_in = np.array(x, copy=True)
    with watching(objects, calls, bcalls) as unwatched:
        y, root_runs = _run(run_on, x_in)
        failed = _run_backward(run_on, y) if root_runs else None
    mapped = {p: originals[p] for p in objects if p in originals}  # the copy's layers by path: the user's
    for c in calls:
        c.obj = mapped.get(c.path, c.obj)
    called = {c.path for c in calls}
    trace = Trace(
        calls,
        np.array(x, copy=True),
        copy_array(y),
        id(x_in),
        id(y),
        originals,
        [p for p in originals if p not in called],
        root_runs,
    )
    trace.notes += [
        f"'{p}' could not be watched (no instance __dict__ or a fixed class); its calls are not seen" for p in unwatched
    ]
    trace.backward = bcalls
    if failed:
        trace.notes.append(
            f"the network's backward raised {failed}; operations of its own code are read from the forward alone"
        )
    trace._refs = (x_in, y)  # the identities stay unique while the trace lives
    if not calls:
        raise StructureError(
            f"infer_network: the forward of the {type(net).__name__} called no layer object (found "
            f"{list(originals) or 'none'}); a single layer is inferred with infer_layer, a network's layers must "
            "be objects with a forward method held as attributes, in a list or in a dict"
        )
    return trace


__all__ = [
    "BackCall",
    "Call",
    "StructureError",
    "Trace",
    "call_only",
    "forward_of",
    "is_layer",
    "join",
    "layer_objects",
    "watch_forward",
]
