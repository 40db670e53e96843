"""The data flow of one watched forward (:class:`~.structure.Trace`) as a tree of layers.

Inside each scope (the network's forward, or a block object's forward that called other
layers) every value is traced to where it came from: the scope's input, a call's output
(by identity of the array handed over, else by equal values), an operation the code did
itself between calls (``np.maximum(0, h)``, ``h.reshape(len(h), -1)``: a parameter-free
kind confirmed by :func:`harness.inference.free.free_fits` on the two arrays), or the sum of two
values (a residual connection, possibly followed by such an operation). Reading back from
the scope's output gives the layers in forward order (:class:`Leaf`, :class:`Op`), blocks
(:class:`Block`, a nested Sequential) and residual connections (:class:`Res`:
``post(block(x) + shortcut(x))``; the branch with more layers is the block, the other the
shortcut, none the identity). What cannot be traced is an :class:`Op` with
``confirmed=False`` (the closest kind kept), never a guess.

Names are the attribute path relative to the enclosing block, made a valid spec name
(``layers[0]`` -> ``layers_0``); an object called twice gets ``relu``, ``relu_2``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..spec import Layer
from .confirm import rel_error, tolerance
from .free import free_fits
from .result import Fit
from .structure import Call, StructureError, Trace

RECENT = 2  # an operation between calls is looked for on the last RECENT values only


@dataclass
class Leaf:
    """A layer object's call: ``name`` local to the enclosing block."""

    call: Call
    name: str


@dataclass
class Op:
    """An operation the network's own code did: ``x`` -> ``y`` (user layout), the free kinds
    tried (best first), whether the best is within ``tol``."""

    name: str
    x: Any
    y: Any
    fits: list[Fit]
    confirmed: bool
    tol: float
    producer: Call | None = None  # the call whose output it alone takes, and the call that alone
    consumer: Call | None = None  # takes its output: their backward gradients are its own


@dataclass
class Block:
    """Layers run in order by a block object (``call``) or grouped as a shortcut (``call`` None)."""

    name: str
    call: Call | None
    items: list[Node]


@dataclass
class Res:
    """``post(block(x) + shortcut(x))``; ``shortcut`` None is the identity."""

    name: str
    block: list[Node]
    shortcut: Node | None
    post: list[Node] = field(default_factory=list)


Node = Leaf | Op | Block | Res
FitFn = Callable[[str, Any, Any], list[Fit]]


@dataclass
class _Value:
    kind: str  # "input", "call", "op", "add"
    array: Any
    ident: int
    src: tuple[int, ...] = ()
    call: Call | None = None
    op: Op | None = None


def spec_name(path: str) -> str:
    """An attribute path as a valid spec name: a dict entry is named by its key
    (``layers['conv1']`` -> ``conv1``), anything else by its path: ``layers[0]`` ->
    ``layers_0``, ``down.conv`` -> ``down_conv``."""
    key = re.search(r"\['([A-Za-z0-9_\-]+)'\]$", path)
    if key:
        return key.group(1)
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", path).strip("_") or "layer"


def renamed(spec: Layer, name: str) -> Layer:
    """The spec layer under another name."""
    return replace(spec, name=name)  # type: ignore[type-var]  # every concrete Layer is a dataclass


def tol_for(a: Any) -> float:
    """The forward's match tolerance for an array of ``a``'s dtype (:func:`.confirm.tolerance`)."""
    return tolerance(np.dtype(getattr(a, "dtype", np.float64)))


def _equal(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a.shape == b.shape and bool(np.array_equal(a, b))


def default_fits(name: str, x: Any, y: Any) -> list[Fit]:
    """The parameter-free layers an inline operation may be (:func:`~.free.free_fits`)."""
    return list(free_fits(name, x, y)) if x is not None and y is not None else []


class _Scope:
    """One forward's (the network's or a block's) values and names."""

    def __init__(self, trace: Trace, prefix: str, fits: FitFn, notes: list[str]) -> None:
        self.trace, self.prefix, self.fits, self.notes = trace, prefix, fits, notes
        self.names: set[str] = set()
        self.values: list[_Value] = []
        self.call_names: dict[int, str] = {}

    def unique(self, name: str) -> str:
        out, k = name, 2
        while out in self.names:
            out, k = f"{name}_{k}", k + 1
        self.names.add(out)
        return out

    def local(self, path: str) -> str:
        p = self.prefix
        rel = (
            path[len(p) :].lstrip(".") if p and path.startswith(p) and path[len(p) : len(p) + 1] in (".", "[") else path
        )
        return self.unique(spec_name(rel))

    def _op(self, src: int, y: Any, ident: int, fits: list[Fit], ok: bool) -> int:
        kind = fits[0].spec.kind.lower() if fits else "op"
        fits = [replace(f, spec=renamed(f.spec, "_")) for f in fits]  # named when placed
        op = Op(kind, self.values[src].array, y, fits, ok, tol_for(y))
        self.values.append(_Value("op", y, ident, (src,), op=op))
        return len(self.values) - 1

    def _then_flatten(self, arr: Any, ident: int, tol: float) -> int | None:
        """An elementwise operation and a flatten in one line (``np.maximum(h, 0).reshape(n, -1)``):
        the flatten undone on ``arr`` must be an operation on the latest 4-D value."""
        i = len(self.values) - 1
        x = self.values[i].array
        if x is None or x.ndim != 4 or arr.ndim != 2 or arr.size != x.size:
            return None
        mid = arr.reshape(x.shape)  # the raw reshape: a flatten in the array's own axis order
        first = self.fits("_", x, mid)
        if not first or first[0].error > tol or first[0].spec.kind == "Flatten":
            return None
        second = self.fits("_", mid, arr)
        if not second or second[0].error > tol:
            return None
        j = self._op(i, mid, 0, first, True)
        return self._op(j, arr, ident, second, True)

    def resolve(self, arr: Any, ident: int) -> int:
        """The value ``arr`` (handed over as the object ``ident``) is: an existing one, an
        operation on one, a sum of two, or an unconfirmed operation on the latest."""
        vals = self.values
        for i in reversed(range(len(vals))):
            if vals[i].ident == ident and _equal(vals[i].array, arr):
                return i
        for i in reversed(range(len(vals))):
            if _equal(vals[i].array, arr):
                return i
        if arr is None:
            return len(vals) - 1
        tol = tol_for(arr)
        shaped = [i for i, v in enumerate(vals) if v.array is not None and v.array.shape == arr.shape]
        pairs = [(i, j) for a, i in enumerate(shaped) for j in shaped[a + 1 :]]
        for i, j in reversed(pairs):  # a sum first: cheap, and never a coincidence within tol
            if rel_error(np.asarray(vals[i].array + vals[j].array, np.float64), np.asarray(arr, np.float64)) <= tol:
                vals.append(_Value("add", arr, ident, (j, i)))
                return len(vals) - 1
        tried: dict[int, list[Fit]] = {}
        for i in [j for j in reversed(range(len(vals))) if vals[j].array is not None][:RECENT]:
            fits = tried[i] = self.fits("_", vals[i].array, arr)
            if fits and fits[0].error <= tol:
                return self._op(i, arr, ident, fits, True)
        flat = self._then_flatten(arr, ident, tol)
        if flat is not None:
            return flat
        last = len(vals) - 1
        for i in [p for p in range(last) if vals[last].array is not None and vals[p].array is not None]:
            if vals[i].array.shape != vals[last].array.shape:
                continue
            s = vals[last].array + vals[i].array
            fits = self.fits("_", s, arr)
            if fits and fits[0].error <= tol:
                vals.append(_Value("add", s, 0, (last, i)))
                return self._op(len(vals) - 1, arr, ident, fits, True)
        fits = tried[last] if last in tried else self.fits("_", vals[last].array, arr)
        return self._op(last, arr, ident, fits, False)


def _ancestors(values: list[_Value], v: int) -> set[int]:
    out, todo = set(), [v]
    while todo:
        i = todo.pop()
        if i not in out:
            out.add(i)
            todo.extend(values[i].src)
    return out


def _items(scope: _Scope, v: int, stop: int) -> list[Node]:
    """The layers from value ``stop`` (exclusive) to value ``v``, in forward order."""
    out: list[Node] = []
    while v != stop:
        val = scope.values[v]
        if val.kind == "input":
            raise StructureError(
                f"infer_network: a value in '{scope.prefix or 'the network'}' does not come from "
                "the branch it should (a residual whose two paths cross); cannot read the data flow"
            )
        if val.kind == "add":
            res, v = _residual(scope, v)
            out.append(res)
            continue
        if val.kind == "op":
            assert val.op is not None
            out.append(val.op)
        else:
            assert val.call is not None
            out.append(_call_node(scope, val.call))
        v = val.src[0]
    return out[::-1]


def _first_call(items: list[Node]) -> int:
    for n in items:
        if isinstance(n, Leaf):
            return n.call.index
        if isinstance(n, Block) and n.call is not None:
            return n.call.index
    return 1 << 30


def _residual(scope: _Scope, v: int) -> tuple[Res, int]:
    a, b = scope.values[v].src
    branch = max(_ancestors(scope.values, a) & _ancestors(scope.values, b))
    main, side = _items(scope, a, branch), _items(scope, b, branch)
    if (len(side), -_first_call(side)) > (len(main), -_first_call(main)):
        main, side = side, main
    short: Node | None = None
    if len(side) == 1:
        short = side[0]
    elif side:
        short = Block(scope.unique("shortcut"), None, side)
    return Res(scope.unique("res"), main, short), branch


def _holds_arrays(obj: Any) -> bool:
    return any(isinstance(v, np.ndarray) and v.size > 1 for v in getattr(obj, "__dict__", {}).values())


def _unconfirmed(items: list[Node]) -> bool:
    return any(isinstance(n, Op) and not n.confirmed for n in items)


def _call_node(scope: _Scope, call: Call) -> Node:
    """A leaf, or the block a call with sub-calls is (a residual block when its whole flow is one)."""
    name = scope.call_names[call.index]
    if not call.children:
        return Leaf(call, name)
    kids = [scope.trace.calls[i] for i in call.children]
    inner = _Scope(scope.trace, call.path, scope.fits, scope.notes)
    items = read_scope(inner, kids, call.x, call.x_id, call.y, call.y_id)
    if _unconfirmed(items) and _holds_arrays(call.obj):  # its own arithmetic with its own arrays: one layer
        return Leaf(call, name)
    if items and isinstance(items[0], Res) and not items[0].post:
        return Res(name, items[0].block, items[0].shortcut, items[1:])
    return Block(name, call, items)


def _link_ops(values: list[_Value]) -> None:
    """An operation between two calls, each of whose values has no other use, learns them."""
    uses = [0] * len(values)
    for v in values:
        for i in v.src:
            uses[i] += 1
    for i, v in enumerate(values):
        if v.kind != "op" or v.op is None or uses[v.src[0]] != 1 or uses[i] != 1:
            continue
        src = values[v.src[0]]
        after = [w.call for w in values if w.kind == "call" and w.src == (i,)]
        if src.kind == "call" and after:
            v.op.producer, v.op.consumer = src.call, after[0]


def read_scope(scope: _Scope, kids: list[Call], x: Any, x_id: int, y: Any, y_id: int) -> list[Node]:
    """The layers a forward (its calls ``kids``, input ``x``, output ``y``) runs, in order."""
    scope.values = [_Value("input", x, x_id)]
    scope.call_names = {c.index: scope.local(c.path) for c in kids}  # in call order: relu, then relu_2
    for c in kids:
        src = scope.resolve(c.x, c.x_id)
        scope.values.append(_Value("call", c.y, c.y_id, (src,), call=c))
    out = scope.resolve(y, y_id)
    _link_ops(scope.values)
    used = _ancestors(scope.values, out)
    for i, val in enumerate(scope.values):
        if val.kind == "call" and i not in used:
            assert val.call is not None
            scope.notes.append(
                f"'{val.call.path}' is called but its output does not reach "
                f"{'the output of ' + repr(scope.prefix) if scope.prefix else 'the network output'}; "
                "left out of the spec"
            )
    return _items(scope, out, 0)


def read_flow(trace: Trace, fits: FitFn | None = None) -> tuple[list[Node], list[str]]:
    """The network's layers in forward order, as a tree (see the module docstring), and
    notes on what was odd (objects called twice, outputs not used)."""
    notes: list[str] = []
    top = [c for c in trace.calls if c.parent is None]
    counts: dict[str, int] = {}
    for c in trace.calls:
        counts[c.path] = counts.get(c.path, 0) + 1
    for path, n in counts.items():
        if n > 1:
            notes.append(
                f"'{path}' is called {n} times in one forward (one object at {n} places in the network); "
                "each call is a layer of its own in the spec, all mapped to that object, which is "
                "only right if it keeps no cache one call overwrites for another's backward"
            )
    scope = _Scope(trace, "", fits or default_fits, notes)
    items = read_scope(scope, top, trace.x, trace.x_id, trace.y, trace.y_id)
    first, rest = (items[0], items[1:]) if items else (None, [])
    whole = (
        isinstance(first, Res) and not first.post and len(rest) <= 2 and all(isinstance(n, (Leaf, Op)) for n in rest)
    )
    if trace.root_runs and whole and isinstance(first, Res):  # a residual block given as the network
        return [Res(first.name, first.block, first.shortcut, rest)], notes
    return items, notes


__all__ = ["Block", "Leaf", "Node", "Op", "Res", "read_flow", "spec_name", "tol_for"]
