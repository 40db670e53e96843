"""Inference for a whole network: :func:`infer_network` and :func:`wrap_inferred`.

One forward of the network's own code is watched (:mod:`.structure`) and its data flow read
(:mod:`.flow`); every layer object called is then inferred alone
(:func:`harness.inference.layer.infer_layer`) at the very input it received, in the user's
layout; operations the network's code does itself between calls become parameter-free
layers without a user object. The spec is the root :class:`~harness.Sequential` of these in
forward order, blocks as nested Sequentials, residual connections as
:class:`~harness.Residual`. One data layout for the network: the one every layer with 4-D
input accepts (each layer's confirmed candidates are searched for it); the flatten order
comes from the Flatten, every layer then carries the network's data and flatten order.

``LayerInference.name`` is the spec path (``"b1.conv1"``, as ``wrap_network`` and the
report name it), ``LayerInference.path`` the attribute path in the user's code
(``"blocks['b1'].conv1"``; ``""`` for an operation of the network's own code, whose
``target`` is None). The user's network is never changed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..adapters.layouts import Layout
from ..spec import Conv2d, Flatten, Layer, Residual, Sequential, join_path
from .flow import Block, Leaf, Node, Op, Res, read_flow, renamed
from .layer import infer_layer
from .ops import op_inference, variants
from .result import Fit, Inference, LayerInference
from .spans import split
from .structure import StructureError, Trace, call_only, forward_of, watch_forward


def _leaves(nodes: list[Node]) -> list[Leaf]:
    out: list[Leaf] = []
    for n in nodes:
        if isinstance(n, Leaf):
            out.append(n)
        elif isinstance(n, Block):
            out += _leaves(n.items)
        elif isinstance(n, Res):
            out += _leaves([*n.block, *([n.shortcut] if n.shortcut else []), *n.post])
    return out


def _accepted(li: LayerInference) -> list[Fit]:
    """The confirmed candidates of a layer (the best first) and their equals in the other
    data layout, or the best alone."""
    ok = [v for f in [li.best, *li.candidates] if f.error <= li.tol for v in variants(f)]
    return ok or [li.best]


def _data_layout(four_d: list[LayerInference], notes: list[str]) -> str:
    """The data layout every layer with a 4-D input accepts; a conflict is noted."""
    if not four_d:
        return "NCHW"
    common = {"NCHW", "NHWC"}
    for li in four_d:
        common &= {f.layout.data for f in _accepted(li)}
    first = four_d[0].best.layout.data
    if first in common:
        return first
    if common:
        return sorted(common)[0]
    seen = {li.name: li.best.layout.data for li in four_d}
    notes.append(
        f"the layers do not agree on one data layout ({seen}); the network is read in {first}, "
        "the first layer's; a layer whose code reads its input in another order is likely wrong there"
    )
    return first


def _settle(li: LayerInference, data: str, flatten: str | None, four_d: bool) -> None:
    """Make the layer's best candidate one under the network's data layout when it has one
    confirmed, then give it the network's data and flatten order."""
    # a doubt about the kind (a conflict chose best, or other kinds fit): the network's layout
    # settles the data order only, never the kind
    doubted = li.best.error > li.tol or bool(li.why) or any(f.spec != li.best.spec for f in li.ambiguous)
    if four_d and li.best.layout.data != data:
        if doubted:  # the same reading in the network's layout, where the kind has one
            match = [v for v in variants(li.best) if v.layout.data == data]
        else:
            match = [f for f in _accepted(li) if f.layout.data == data and f.error <= li.tol]
        if not match:
            return  # noted by _data_layout; its own layout stays (wrap_network then checks it)
        li.best = match[0]
    if four_d and li.ambiguous:  # alternatives in the other data layout: read in the network's instead
        moved = [next((v for v in variants(f) if v.layout.data == data), None) for f in li.ambiguous]
        li.ambiguous = [f for f in moved if f is not None and f != li.best]
        if not li.ambiguous and li.status == "ambiguous" and not doubted:
            li.status = "exact"
    lay = replace(li.best.layout, data=data, flatten=flatten or li.best.layout.flatten)
    li.best = replace(li.best, layout=lay)


class _Assembly:
    """Builds the spec tree and the forward-ordered layer list from the flow's nodes."""

    def __init__(
        self, trace: Trace, inferred: dict[int, LayerInference], data: str, flatten: str | None, notes: list[str]
    ) -> None:
        self.trace, self.inferred, self.data, self.flatten, self.notes = trace, inferred, data, flatten, notes
        self.layers: list[LayerInference] = []
        self.seed, self.kw = 0, dict[str, Any]()

    def spec(self, n: Node, prefix: str) -> Layer:
        if isinstance(n, Leaf):
            li = self.inferred[id(n)]
            li.best = replace(li.best, spec=renamed(li.best.spec, n.name))
            li.name = join_path(prefix, n.name)
            kw = {**self.kw, **{k: v for k, v in li.wrap_kwargs.items() if k != "params"}}
            parts = split(li, n.call.x, self.seed, kw)  # an Affine that flattens: two spec layers
            self.layers += parts or [li]
            return li.best.spec
        if isinstance(n, Op):
            li = op_inference(n, n.name, join_path(prefix, n.name), self.data, self.notes, self.trace)
            _settle(li, self.data, self.flatten, getattr(n.x, "ndim", 0) == 4)
            self.layers.append(li)
            return li.best.spec
        path = join_path(prefix, n.name)
        if isinstance(n, Block):
            return Sequential([self.spec(k, path) for k in n.items], name=n.name)
        block = [self.spec(k, path) for k in n.block]
        short = self.spec(n.shortcut, path) if n.shortcut is not None else None
        return Residual(n.name, block, short, [self.spec(k, path) for k in n.post])


def _name_ops(nodes: list[Node], taken: set[str]) -> None:
    """Ops get a name from their kind (``relu``, ``flatten``), unique among their siblings."""
    for n in nodes:
        if isinstance(n, Op):
            base, k = n.name, 2
            while n.name in taken:
                n.name, k = f"{base}_{k}", k + 1
            taken.add(n.name)
        elif isinstance(n, Block):
            _name_ops(n.items, {k.name for k in n.items if not isinstance(k, Op)})
        elif isinstance(n, Res):
            kids = [*n.block, *([n.shortcut] if n.shortcut else []), *n.post]
            _name_ops(kids, {k.name for k in kids if not isinstance(k, Op)})


def _infer_leaves(trace: Trace, leaves: list[Leaf], seed: int, kw: dict[str, Any]) -> dict[int, LayerInference]:
    out = {}
    for leaf in leaves:
        c = leaf.call
        extra = dict(kw)
        if c.kwargs:
            extra.setdefault("forward_kwargs", dict(c.kwargs))
        if c.args:
            extra.setdefault("forward_args", tuple(c.args))
        if call_only(c.obj):  # layer(x) code: its __call__ is the forward
            extra.setdefault("forward", "__call__")
        li = infer_layer(c.obj, c.x, name=leaf.name, seed=seed, **extra)
        li.path = c.path
        out[id(leaf)] = li
    return out


def _assemble(
    trace: Trace, nodes: list[Node], notes: list[str], seed: int, kw: dict[str, Any]
) -> tuple[Layer, Layout, list[LayerInference]]:
    """Every layer inferred at its own input, one data layout settled, the spec tree built."""
    leaves = _leaves(nodes)
    inferred = _infer_leaves(trace, leaves, seed, kw)
    four_d = [inferred[id(lf)] for lf in leaves if getattr(lf.call.x, "ndim", 0) == 4]
    data = _data_layout(four_d, notes)
    for lf in leaves:
        _settle(inferred[id(lf)], data, None, getattr(lf.call.x, "ndim", 0) == 4)
    flats = [li.best.layout.flatten for li in inferred.values() if isinstance(li.best.spec, Flatten)]
    flatten = flats[0] if flats else ("HWC" if data == "NHWC" else "CHW")
    _name_ops(nodes, {n.name for n in nodes if not isinstance(n, Op)})
    asm = _Assembly(trace, inferred, data, flatten, notes)
    asm.seed, asm.kw = seed, kw
    items = [asm.spec(n, "") for n in nodes]
    for li in asm.layers:
        _settle(li, data, flatten, False)
    _mixed_flips(asm.layers)
    spec = items[0] if len(items) == 1 and isinstance(items[0], Residual) else Sequential(items)
    return spec, _network_layout(asm.layers, data, flatten), asm.layers


def _mixed_flips(layers: list[LayerInference]) -> None:
    """Convolutions of one network that read as true convolutions (flipped kernels) where the
    others read as cross-correlations: one of the two is written wrong, and each forward
    alone cannot say which. The fewer (on a tie, the flipped ones) become ambiguous and are
    checked as the others read (the same kernel order, the other flip)."""
    convs = [li for li in layers if isinstance(li.spec, Conv2d) and li.exact and max(li.spec.kernel_size) > 1]
    flipped, plain = [li for li in convs if li.layout.flip], [li for li in convs if not li.layout.flip]
    if not flipped or not plain:
        return
    odd, usual = (flipped, plain) if len(flipped) <= len(plain) else (plain, flipped)
    for li in odd:
        want = replace(li.layout, flip=not li.layout.flip)
        other = next(
            (
                f
                for f in li.candidates
                if f.spec == li.spec and (f.layout.kernel, f.layout.flip) == (want.kernel, want.flip)
            ),
            None,
        )
        if other is None:
            continue
        other = replace(other, layout=want)  # the network's data layout and flatten order, as settled
        was = li.best
        li.best, li.status, li.ambiguous = other, "ambiguous", [was]
        how = "a true convolution (kernel flipped)" if was.layout.flip else "a cross-correlation"
        li.why.append(
            f"its forward reads as {how}, the other way from {', '.join(u.name for u in usual)} in the same "
            f"network: one of them is written wrong; checked as {other.describe()}"
        )


def _under(path: str, p: str) -> bool:
    return path == p or path.startswith(p + ".") or path.startswith(p + "[")


def infer_network(net: Any, x: Any, *, seed: int = 0, **kw: Any) -> Inference:
    """Infer a network's spec, layout and layers from one watched forward on ``x`` (the
    example input in the network's own layout).

    ``net``: an object whose ``forward`` (and ``backward``) run layer objects held as
    attributes, in lists or dicts (nested blocks too), or a list / dict of layer objects in
    forward order. ``kw`` go to every :func:`~harness.inference.layer.infer_layer` call. Raises
    :class:`~harness.inference.structure.StructureError` when the structure cannot be read; the
    user's exception when its forward raises. The network is unchanged either way."""
    start = time.perf_counter()
    trace = watch_forward(net, x)
    try:
        nodes, notes = read_flow(trace)
        spec, layout, layers = _assemble(trace, nodes, notes, seed, kw)
    except StructureError as e:
        if not trace.notes:
            raise
        raise StructureError(f"{e} ({'; '.join(trace.notes)})") from None
    notes = trace.notes + notes
    notes += [
        f"'{p}' has a forward but the network's forward never called it; left out"
        for p in trace.uncalled
        if not any(_under(c.path, p) for c in trace.calls)
    ]
    is_list = isinstance(net, (list, tuple, dict))
    backward = None if is_list else getattr(net, "backward", None)
    forward = forward_of(net) if backward is not None and callable(backward) else None
    if not is_list and forward is None:
        notes.append(
            "the network has no backward: its layers are chained in the spec's order instead of running its own passes"
        )
    inf = Inference(
        spec,
        layout,
        layers,
        tuple(np.shape(x)),
        network=net,
        forward=forward,
        backward=backward if forward is not None else None,
        notes=notes,
    )
    inf.seconds = time.perf_counter() - start
    return inf


def _network_layout(layers: list[LayerInference], data: str, flatten: str) -> Layout:
    """The data layout and flatten order, and the kernel / linear order the layers share."""
    kernels = [li.layout.kernel for li in layers if li.spec.kind == "Conv2d"]
    linear = [li.layout.linear for li in layers if li.spec.kind == "Linear"]
    flip = [li.layout.flip for li in layers if li.spec.kind == "Conv2d"]
    return Layout(
        data=data,
        flatten=flatten,
        kernel=kernels[0] if kernels else "OIHW",
        linear=linear[0] if linear else "out_in",
        flip=flip[0] if flip else False,
    )


def _list_passes(layers: list[Any]) -> tuple[Any, Any]:
    """Forward and backward of a plain list of layers: in order, then in reverse."""

    def forward(x: Any) -> Any:
        for layer in layers:
            x = layer.forward(x)
        return x

    def backward(g: Any) -> Any:
        for layer in reversed(layers):
            g = layer.backward(g)
        return g

    return forward, backward


def wrap_inferred(inference: Inference) -> Any:
    """The network wrapped with what was inferred (a :class:`~harness.adapters.network.WrappedNetwork`):
    every layer object at its spec path, wrapped by its :class:`LayerInference`; operations
    of the network's own code are left to its own forward/backward."""
    from ..adapters.network import wrap_network

    layers = {}
    for li in inference.layers:
        if li.target is None:
            continue
        if li.spec.children():
            raise StructureError(
                f"infer_network: '{li.name}' is one object computing {li.spec!r}, a span of several spec layers; "
                "wrap_network maps one object per spec layer, so this network needs its spec written by hand"
            )
        layers[li.name] = li.wrap()
    forward, backward = inference.forward, inference.backward
    if forward is None and len(layers) < len(inference.layers):
        net = inference.network
        objs = list(net.values()) if isinstance(net, dict) else list(net) if isinstance(net, (list, tuple)) else []
        if objs:
            forward, backward = _list_passes(objs)
    return wrap_network(
        layers,
        inference.spec,
        forward=forward,
        backward=backward,
        layout=inference.layout,
        input_shape=inference.input_shape,
    )


def _layer_params(inference: Inference, prefix: str) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """Where each sub-layer's parameters and gradients live, seen from the block (``params=`` /
    ``grads=`` of one ``wrap_layer``), and their canonical values as the layers' own wraps read them."""
    from ..adapters.composite import under

    params: dict[str, str] = {}
    grads: dict[str, str] = {}
    values: dict[str, Any] = {}
    for li in (li for li in inference.layers if li.target is not None):
        rel = li.name[len(prefix) :]
        own = (li.layout.kernel, li.layout.linear, li.layout.flip)
        net = (inference.layout.kernel, inference.layout.linear, inference.layout.flip)
        kinds = (li.spec.kind == "Conv2d", li.spec.kind == "Linear", li.spec.kind == "Conv2d")
        if li.wrap_kwargs or any(k and o != n for k, o, n in zip(kinds, own, net)):
            raise StructureError(
                f"infer: '{li.name}' needs a layout or options of its own ({li.layout}, {li.wrap_kwargs}), which one "
                "wrap_layer over the whole block cannot give; use check_network on it"
            )
        params.update({f"{rel}.{k}": under(li.path, v) for k, v in li.best.params.items()})
        grads.update({f"{rel}.{k}": under(li.path, v) for k, v in li.grads.items()})
        values.update({f"{rel}.{k}": v for k, v in li.wrap().get_params().items()})
    return params, grads, values


def wrap_inferred_layer(inference: Inference) -> Any:
    """A composite block object (a residual block, a small network with its own forward)
    wrapped as ONE layer, as ``wrap_layer(block, Residual(...))`` would: its own forward and
    backward run, each sub-layer's parameters and gradients are read on its own object. For
    ``check_layer`` on such an object; ``check_network`` takes :func:`wrap_inferred`. The
    sub-objects are found by the composite rules (attributes named like the spec's layers, a
    ``.layers`` list) when those read the very parameters inference found, else the places
    inference found are passed as ``params=`` / ``grads=``. Raises :class:`StructureError`
    when one layer cannot stand for it (a list without a forward of its own, sub-layers in
    different kernel / linear orders, or needing options of their own)."""
    from ..adapters.layer import wrap_layer

    net, spec = inference.network, inference.spec
    if net is None:
        return inference.layers[0].wrap()
    if isinstance(net, (list, tuple, dict)):
        raise StructureError(
            "infer: a list of layers has no forward of its own to check as one layer; use check_network"
        )
    name = spec.name or "net"
    params, grads, values = _layer_params(inference, spec.name + "." if spec.name else "")
    try:  # the composite rules, when they find the same arrays (gradients then by the same rules)
        w = wrap_layer(net, spec, layout=inference.layout, name=name)
        got = w.get_params()
        if got.keys() == values.keys() and all(np.array_equal(got[k], v) for k, v in values.items()):
            return w
    except Exception:  # the rules do not find them: say where they are
        pass
    return wrap_layer(net, spec, params=params, grads=grads or None, layout=inference.layout, name=name)


__all__ = ["infer_network", "wrap_inferred", "wrap_inferred_layer"]
