"""What inference found: one candidate tried (:class:`Fit`), one layer's answer
(:class:`LayerInference`) and the whole answer for a layer or a network (:class:`Inference`).

A candidate is a spec layer (kind and hyperparameters), the :class:`~harness.Layout` it is read
under and where its parameters live in the user's code. It is *confirmed* when the reference
built from it, fed the user's own parameters read that way, reproduces the user's forward on
random inputs to ``tol`` (relative, norm-wise). Inference never guesses: a layer is ``exact``
when one candidate (up to functions that are the same on every input) is confirmed,
``ambiguous`` when candidates that are different functions fit equally well (or the forward
and the backward / the code's own names point to different kinds), ``unmatched`` when none
is confirmed (the closest is kept; the check then runs against it and says ``forward``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..adapters.layouts import Layout
from ..spec import Layer

STATUSES = ("exact", "ambiguous", "unmatched")


@dataclass(frozen=True)
class Fit:
    """One candidate tried on one layer.

    ``spec``: the spec layer (named with the layer's name); ``layout``: how the user's data and
    parameters are read; ``params``: canonical local name -> where it lives, in
    :func:`~harness.wrap_layer`'s ``params=`` syntax (``"W"``, ``"params['w']"``) or, for a
    function pair, the position in its parameter list as a string (``"0"``); ``error``: the
    relative norm-wise error of the user's forward against the reference built from it
    (``inf``: it could not run, ``reason`` says why); ``note``: how a hyperparameter was
    read (``"negative_slope 0.1 fitted from the values"``).
    """

    spec: Layer
    layout: Layout = field(default_factory=Layout)
    params: dict[str, str] = field(default_factory=dict)
    error: float = float("inf")
    reason: str = ""
    note: str = ""

    def describe(self) -> str:
        """One line: the spec layer, a non-default layout, the error."""
        from .emit import layout_source, spec_source  # emit reads these types: imported when used

        lay = "" if self.layout == Layout() else f" under {layout_source(self.layout).removeprefix('tg.')}"
        err = (
            "could not run" + (f" ({self.reason})" if self.reason else "")
            if self.error == float("inf")
            else (f"rel error {self.error:.1e}")
        )
        spec = " ".join(spec_source(self.spec).replace("tg.", "").split()).replace("[ ", "[").replace(", ]", "]")
        return f"{spec}{lay}: {err}"


@dataclass
class LayerInference:
    """Inference of one layer (an object, a function pair, or a sub-object of a network).

    ``target``: the user's object, or ``(forward, backward)`` for a function pair;
    ``best``: the candidate the check runs against; ``candidates``: every one tried, best
    first; ``ambiguous``: the other confirmed candidates that are different functions (empty
    when ``status`` is ``exact``); ``grads``: canonical local name -> where its gradient lives
    (``grads=`` syntax; empty when the backward returns them or they sit under the usual
    names); ``wrap_kwargs``: everything else :func:`~harness.wrap_layer` /
    :func:`~harness.wrap_functions` needs (``batched=False``, ``args=``, the parameter
    arrays of a function pair ...); ``why``: one line per conflict or doubt found, in words;
    ``seconds``: what inference cost; ``path``: where a network's layer object sits in the
    user's code (``"fc1"``, ``"layers[0]"``, ``"blocks['b1'].conv1"``; ``""`` for a layer
    alone and for an operation of the network's own code, whose ``target`` is None).
    """

    name: str
    target: Any
    best: Fit
    status: str
    tol: float
    candidates: list[Fit] = field(default_factory=list)
    ambiguous: list[Fit] = field(default_factory=list)
    grads: dict[str, str] = field(default_factory=dict)
    wrap_kwargs: dict[str, Any] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)
    seconds: float = 0.0
    path: str = ""

    @property
    def spec(self) -> Layer:
        return self.best.spec

    @property
    def layout(self) -> Layout:
        return self.best.layout

    @property
    def exact(self) -> bool:
        return self.status == "exact"

    def wrap(self) -> Any:
        """The user's layer wrapped with what was inferred (a :class:`~harness.adapters.layer.WrappedLayer`)."""
        from ..adapters.layer import wrap_functions, wrap_layer

        kw = dict(self.wrap_kwargs)
        if isinstance(self.target, tuple):  # a function pair: its parameter arrays travel in wrap_kwargs
            fwd, bwd = self.target
            params = kw.pop("params", ())
            return wrap_functions(fwd, bwd, self.spec, params, layout=self.layout, name=self.name, **kw)
        grads = self.grads or None
        return wrap_layer(
            self.target, self.spec, params=dict(self.best.params), grads=grads, layout=self.layout, name=self.name, **kw
        )

    def summary(self) -> str:
        """One line: name, status, the spec layer and layout, the error; doubts after ``;``."""
        line = f"{self.name}: {self.status}: {self.best.describe()}"
        if self.ambiguous:
            line += "; also fits: " + "; ".join(f.describe() for f in self.ambiguous[:3])
        if self.why:
            line += "; " + "; ".join(self.why)
        return line


@dataclass
class Inference:
    """Inference for a layer or a network: ``spec`` (the layer, or the network's
    :class:`~harness.Sequential`), ``layout`` (the data layout the input ``x`` is in),
    ``layers``: one :class:`LayerInference` per layer in forward order (one for a layer);
    ``network``: the network object (None for a layer); ``forward`` / ``backward``: the
    network's own passes when it has them; ``input_shape``: the shape of the example input,
    in the user's layout. ``status``: the worst of the layers' (``exact`` < ``ambiguous`` <
    ``unmatched``)."""

    spec: Layer
    layout: Layout
    layers: list[LayerInference]
    input_shape: tuple[int, ...]
    network: Any = None
    forward: Any = None
    backward: Any = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return max((li.status for li in self.layers), key=STATUSES.index, default="exact")

    @property
    def exact(self) -> bool:
        return self.status == "exact"

    def layer(self, name: str) -> LayerInference:
        for li in self.layers:
            if li.name == name:
                return li
        raise KeyError(f"no layer '{name}' in this inference; layers: {[li.name for li in self.layers]}")

    def wrap(self) -> Any:
        """The user's code wrapped with what was inferred: a ``WrappedLayer`` for a layer, a
        ``WrappedNetwork`` for a network (:func:`harness.inference.network.wrap_inferred`)."""
        if self.network is None:
            return self.layers[0].wrap()
        from .network import wrap_inferred

        return wrap_inferred(self)

    def to_python(self, obj: str = "obj") -> str:
        """The inferred spec, layout and wrapping as Python source, ``obj`` naming the user's
        object, so a user can pin it (:func:`harness.inference.emit.to_python`)."""
        from .emit import to_python

        return to_python(self, obj)

    def __str__(self) -> str:
        head = f"inferred {len(self.layers)} layer(s) in {self.seconds:.2f} s: {self.status}"
        return "\n".join([head, *(f"  {li.summary()}" for li in self.layers), *(f"  note: {n}" for n in self.notes)])


__all__ = ["STATUSES", "Fit", "Inference", "LayerInference"]
