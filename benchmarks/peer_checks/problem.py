"""The user's code at one point, as every peer sees it: :class:`Problem` (the input and the
trainable parameters as canonical float64 arrays, the user's forward and backward at any
point), :class:`Slot` (one input of a peer's function, whole or a subset of positions) and
:func:`sample_slots` (the random subset a partial exhaustive run differences)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Slot:
    """One input of a peer's function: the array ``name`` ("x" or a parameter's canonical
    name), whole (``index`` None) or only the flat positions ``index``."""

    name: str
    index: np.ndarray | None = None


class Problem:
    """The user's code at one point, as the peers see it.

    ``subject``: a ``WrappedLayer`` or ``WrappedNetwork``; ``x``: canonical input (N, ...).
    ``loss`` / ``target``: the user's wrapped loss and its targets, for a network checked
    under its loss (the output is then the scalar loss). ``base``: ``{"x": x, parameter:
    value}`` for every trainable parameter, canonical float64; :meth:`evaluate` runs the
    user's forward at any point, :meth:`vjp` its backward at the point of the last
    evaluation. ``token`` counts evaluations (a cache made by an earlier one is stale).

    Values reach the user's object the cheapest exact way: copied straight into its own
    arrays (``live``) when they are canonical float64 (what a hand-written adapter does:
    one ``np.copyto`` per changed array), else through the adapter's ``set_params``
    (layout conversion, SGD-step recovery ...). Only arrays that differ from what the
    object holds are written.
    """

    def __init__(self, subject: Any, x: np.ndarray, *, loss: Any = None, target: Any = None) -> None:
        self.subject, self.loss, self.target = subject, loss, target
        self.x = np.asarray(x, dtype=np.float64)
        params = subject.get_params()
        self.names = ["x", *[k for k in _trainable(subject, self.x.shape) if k in params]]
        self.base = {"x": self.x, **{k: np.array(params[k]) for k in self.names[1:]}}
        self.y_shape: tuple[int, ...] = () if loss is not None else tuple(_spec_of(subject).output_shape(self.x.shape))
        self.live = _live_arrays(subject, self.names[1:], self.base)
        self.token = 0
        self._dscores: np.ndarray | None = None
        self._off_base: set[str] = set()  # parameters whose value in the user's object may not be base

    @property
    def n_coords(self) -> int:
        """Coordinates of the input and every trainable parameter."""
        return sum(v.size for v in self.base.values())

    @property
    def n_outputs(self) -> int:
        return int(np.prod(self.y_shape))

    def assemble(self, slots: list[Slot], values: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The base point with ``values`` written into the slots."""
        arrays = dict(self.base)
        for s, v in zip(slots, values):
            if s.index is None:
                arrays[s.name] = np.asarray(v).reshape(self.base[s.name].shape)
            else:
                a = self.base[s.name].copy()
                a.flat[s.index] = v
                arrays[s.name] = a
        return arrays

    def evaluate(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Write the parameters into the user's object, run its forward at ``arrays["x"]``:
        the output (``y_shape``), or the scalar loss of it. ``arrays``: every name of
        ``names``; pass ``base[k]`` itself for a parameter at its base value, or
        ``live[k]`` for one perturbed in place (CS231n's way)."""
        write = {k: v for k, v in arrays.items() if k != "x" and (v is not self.base[k] or k in self._off_base)}
        if self.live is None:
            self.subject.set_params(write)
        else:
            for k, v in write.items():
                if v is not self.live[k]:
                    np.copyto(self.live[k], np.asarray(v).reshape(self.live[k].shape))
        self._off_base = {k for k, v in write.items() if v is not self.base[k]}
        return self._forward(arrays["x"])

    def evaluate_slots(self, slots: list[Slot], values: list[np.ndarray]) -> np.ndarray:
        """:meth:`evaluate` at the base point with ``values`` in the slots (the torch
        adapter's path: every slot is written on every call)."""
        if self.live is None or any(k in self._off_base for k in self.live if k not in {s.name for s in slots}):
            return self.evaluate(self.assemble(slots, values))
        x = self.x
        for s, v in zip(slots, values):
            v = np.asarray(v)
            if s.name == "x":
                x = self.assemble([s], [v])["x"]
            elif s.index is None:
                np.copyto(self.live[s.name], v.reshape(self.live[s.name].shape))
                self._off_base.add(s.name)
            else:  # the whole array is written, as a full run writes it on every call
                np.copyto(self.live[s.name], self.base[s.name])
                self.live[s.name].flat[s.index] = v
                self._off_base.add(s.name)
        return self._forward(x)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self.token += 1
        y = self.subject.forward(x)
        if self.loss is None:
            return y
        value, self._dscores = self.loss.loss_and_grad(y, self.target)
        return np.array(value, dtype=np.float64)

    def vjp(self, g: np.ndarray) -> dict[str, np.ndarray]:
        """The user's backward of <output, g> at the last evaluated point: ``{name: gradient}``
        for "x" and every trainable parameter, canonical."""
        dy = self._dscores * float(g) if self.loss is not None else g
        dx = self.subject.backward(dy)
        grads = self.subject.param_grads()
        return {"x": dx, **{k: grads[k] for k in self.names[1:]}}


def _live_arrays(subject: Any, names: list[str], base: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The user's own parameter arrays by canonical name, when writing canonical values into
    them is exact: object-style layers in the canonical layout, float64 arrays of the
    canonical shape holding the base values, gradients read as they are (no SGD-step
    recovery, no rescaling, batched); else None."""
    from harness.adapters.layer import ObjectLayer
    from harness.adapters.layouts import CANONICAL
    from harness.adapters.network import WrappedNetwork

    network = isinstance(subject, WrappedNetwork)
    layers = subject.layers if network else {"": subject}
    live = {}
    for name in names:
        path, _, local = name.rpartition(".") if network else ("", "", name)
        w = layers.get(path)
        if (not isinstance(w, ObjectLayer) or w.params is None or w.layout != CANONICAL or w.sgd
                or w.grad_scale is not None or not w.batched):
            return None
        a = w.params[local].get(w.obj)
        if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == base[name].shape
                and a.flags.writeable and np.array_equal(a, base[name])):
            return None
        live[name] = a
    return live


def _spec_of(subject: Any) -> Any:
    from harness.spec import Sequential

    from harness.adapters.network import WrappedNetwork

    return subject.spec if isinstance(subject, WrappedNetwork) else Sequential([subject.spec])


def _trainable(subject: Any, x_shape: tuple[int, ...]) -> list[str]:
    """Trainable parameter names as ``subject.param_grads()`` keys them."""
    from harness.adapters.network import WrappedNetwork
    from harness.spec import named_params

    if isinstance(subject, WrappedNetwork):
        return [k for k, info in named_params(subject.spec, x_shape).items() if info.trainable]
    return [k for k in subject._param_names() if k in subject._trainable()]


def sample_slots(problem: Problem, max_coords: int | None, rng: np.random.Generator) -> tuple[list[Slot], int]:
    """Whole arrays when the problem has at most ``max_coords`` coordinates; else about
    ``max_coords`` random flat positions spread over the arrays by size (at least one
    each). Returns (slots, number of coordinates covered)."""
    total = problem.n_coords
    if max_coords is None or total <= max_coords:
        return [Slot(k) for k in problem.names], total
    slots = []
    for k in problem.names:
        size = problem.base[k].size
        m = min(size, max(1, round(max_coords * size / total)))
        slots.append(Slot(k, np.sort(rng.choice(size, m, replace=False))))
    return slots, sum(len(s.index) for s in slots)
