"""Code written for one example at a time (``batched=False``), for every calling style.

The harness hands a batch; such code takes ``(C, H, W)`` (or ``(H, W, C)``, or ``(H, W)``
with ``channel_axis=False``). The forward runs once per example and the outputs are
stacked; the backward runs the forward again before each example's backward (the code
caches one example), and the parameter gradients are summed over the examples, as a
batched layer's would be. With ``sgd=`` each example's gradients are recovered from its own
update step, and the weights put back bit for bit before the next one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .refs import AdapterError, ValueFinding

if TYPE_CHECKING:  # a mixin of WrappedLayer subclasses: typed as one, without importing it at run time
    from .wrapped import WrappedLayer as _Base
else:
    _Base = object

Grads = dict[str, tuple[np.ndarray, Any]]  # {name: (float64 gradient, dtype the code returned, or None)}


class PerExample(_Base):
    """Mixin for :class:`~harness.adapters.wrapped.WrappedLayer` subclasses (put before it in
    the bases). They provide the hooks below: the user's calls with whatever the calling
    style needs, and a parameter's gradient as the code left or returned it."""

    sgd: Any = None
    batched: bool = True
    channel_axis: bool = True
    input_grad: bool = True
    _summed_grads: dict[str, np.ndarray]
    _sgd_grads: dict[str, np.ndarray]

    def _forward_one(self, x: np.ndarray) -> Any:
        raise NotImplementedError

    def _backward_one(self, dy: np.ndarray) -> Any:
        """The user's backward on ``dy``; returns dx as the code returned it (None allowed)."""
        raise NotImplementedError

    def _raw_grad(self, local: str) -> Any:
        raise NotImplementedError

    def _sgd_step(self, dy: np.ndarray) -> tuple[Any, Grads]:
        raise NotImplementedError

    def _trainable_names(self) -> list[str]:
        names = self._param_names()
        trainable = self._trainable() if names else set()
        return [k for k in names if k in trainable]

    def _get_grad(self, local: str) -> Any:
        if not self.batched:
            return self._summed_grads.get(local)
        if self.sgd:
            return self._sgd_grads.get(local)
        return self._raw_grad(local)

    def _forward_examples(self, x: np.ndarray) -> np.ndarray:
        """The forward on each example of the (user-layout) batch ``x``, stacked."""
        self._x_user = x
        raw = [self._forward_one(self._drop_channel(xi)) for xi in x]
        # channel_axis=False is about the input; the output keeps its channels unless the
        # code returned (H, W) too, and the upstream gradient must match what it returned
        self._flat_output = not self.channel_axis and np.ndim(raw[0]) == 2
        ys = [self._read_returned(self._add_channel(y), "forward output") for y in raw]
        # in the examples' own dtype (exact: the values came from it), so the output's dtype is checked
        return np.stack([y for y, _ in ys]).astype(ys[0][1].dtype)

    def _backward_examples(self, dy: np.ndarray) -> np.ndarray | None:
        """Per example: the forward again, the backward; the input gradients stacked (None
        with ``input_grad=False``), the parameter gradients summed (read by ``_get_grad``)."""
        dxs: list[np.ndarray] = []
        total: dict[str, np.ndarray] = {}
        kinds: dict[str, Any] = {}
        for i, (xi, dyi) in enumerate(zip(self._x_user, dy)):
            self._forward_one(self._drop_channel(xi))
            dyi = self._drop_channel(dyi) if getattr(self, "_flat_output", True) else dyi
            dx, grads = self._sgd_step(dyi) if self.sgd else self._backward_and_grads(dyi, i)
            if self.input_grad:
                if dx is None:
                    raise ValueFinding(
                        f"layer '{self.name}': backward returned None for example {i}; it must return "
                        "the input gradient dx (a first layer that computes none: declare "
                        "input_grad=False)"
                    )
                dx, kinds["input"] = self._read_returned(self._add_channel(dx), "backward's input gradient")
                dxs.append(dx)
            for k, (g, dtype) in grads.items():
                total[k] = g if k not in total else total[k] + g
                kinds[k] = dtype
        self._summed_grads = total
        self._grad_dtypes = {k: kinds[k] for k in total}  # summed here in float64: report the code's dtype
        return np.stack(dxs).astype(kinds["input"].dtype) if self.input_grad else None  # exact: values from that dtype

    def _backward_and_grads(self, dy: np.ndarray, i: int) -> tuple[Any, Grads]:
        """One example's backward and its trainable parameters' gradients, read at once."""
        dx = self._backward_one(dy)
        grads: Grads = {}
        for k in self._trainable_names():
            g = self._raw_grad(k)
            if g is None:
                raise ValueFinding(
                    f"layer '{self.name}': no gradient for parameter '{k}' after the backward of example {i}"
                )
            v, kind = self._read_returned(g, f"gradient of '{k}'")
            grads[k] = (v, kind.dtype)
        return dx, grads

    def _drop_channel(self, a: np.ndarray) -> np.ndarray:
        """One example as the user's code wants it: without its channel axis if declared."""
        if self.channel_axis or a.ndim != 3:
            return a
        axis = 0 if self.layout.data == "NCHW" else 2
        if a.shape[axis] != 1:
            raise AdapterError(
                f"layer '{self.name}': channel_axis=False needs 1 channel, the input has {a.shape[axis]}"
            )
        return a.squeeze(axis)

    def _add_channel(self, a: Any) -> Any:
        if self.channel_axis or np.ndim(a) != 2:
            return a
        axis = 0 if self.layout.data == "NCHW" else 2
        if isinstance(a, (np.ndarray, list, tuple)):
            return np.expand_dims(np.asarray(a), axis)
        shape = list(a.shape)  # a torch / jax / CuPy array: kept as it is (np.asarray would refuse some)
        return a.reshape(tuple(shape[:axis] + [1] + shape[axis:]))


__all__ = ["PerExample"]
