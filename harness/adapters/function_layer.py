"""CS231n-style function pairs: ``forward(x, *params) -> (out, cache)`` and
``backward(dout, cache) -> (dx, *param_grads)``."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..faults import call_user
from ..spec import Layer, join_path
from .arrays import from_float64, to_float64
from .layouts import CANONICAL, Layout
from .options import apply_shared, merged_kwargs
from .per_example import PerExample
from .refs import AdapterError, ValueFinding, _copy
from .returns import aliases, numbered, split
from .wrapped import WrappedLayer


class FunctionLayer(PerExample, WrappedLayer):
    """CS231n style: ``forward(x, *params, *args) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, *param_grads)``, parameters in ``order``."""

    def __init__(self, forward: Callable, backward: Callable, spec: Layer | None, params: Mapping[str, Any] | Sequence[Any],
                 *, args: Sequence[Any], kwargs: Mapping[str, Any], order: Sequence[str] | None, layout: Layout,
                 name: str | None, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(spec, layout, name)
        apply_shared(self, options or {})
        self._f, self._b, self._args, self._kwargs = forward, backward, tuple(args), dict(kwargs)
        if order is None:
            order = list(self._spec_params()) if spec is not None and not isinstance(params, Mapping) else list(params)
        if isinstance(params, Mapping):
            missing = [k for k in order if k not in params]
            if missing:
                raise AdapterError(f"layer '{self.name}': params lack {missing}; got {list(params)}")
            self._params = {k: params[k] for k in order}
        else:
            params = list(params)
            if len(params) != len(order):
                raise AdapterError(f"layer '{self.name}': got {len(params)} parameter arrays for {list(order)}")
            self._params = dict(zip(order, params))
        self._grads: dict[str, Any] = {}
        self._summed_grads: dict[str, np.ndarray] = {}
        self._cache: Any = None

    def _param_names(self) -> list[str]:
        return list(self._params)

    def _get_user(self, local: str) -> Any:
        return self._params[local]

    def _put_user(self, local: str, value: Any) -> None:
        self._params[local] = value

    def _raw_grad(self, local: str) -> Any:
        return self._grads.get(local)

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        # the arrays were handed to us by the user: replace, never write into them
        for local, value in values.items():
            _, kind = to_float64(self._params[local], self._what(local))
            user = self._to_user(local, value, kind.shape)
            self._params[local] = from_float64(user, kind)

    def _call_forward(self, x: np.ndarray) -> Any:
        self._handed = {k: _copy(v) for k, v in self._params.items()}  # the user's own arrays are never handed over
        self._summed_grads = {}
        return self._forward_examples(x) if not self.batched else self._forward_one(x)

    def _forward_one(self, x: np.ndarray) -> Any:
        result = call_user(self._f, x, *self._handed.values(), *self._args, **self._kwargs)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ValueFinding(f"layer '{self.name}': forward must return (out, cache), got {type(result).__name__}")
        out, self._cache = result
        return out

    def _call_backward(self, dy: np.ndarray) -> Any:
        return self._backward_examples(dy) if not self.batched else self._backward_one(dy)

    def _backward_one(self, dy: np.ndarray) -> Any:
        names = self._trainable_names()
        full = (lambda k: join_path(self.spec.name, k)) if self.spec is not None else (lambda k: k)
        number = numbered(names)
        dx, grads = split(call_user(self._b, dy, self._cache), names, lambda k: aliases(k, None, full(k), number.get(k)),
                          f"layer '{self.name}'", input_grad=self.input_grad, tuple_only=False)
        self._grads = grads or {}
        return dx


def wrap_functions(forward: Callable, backward: Callable, spec: Layer | None = None,
                   params: Mapping[str, Any] | Sequence[Any] = (), *, args: Sequence[Any] = (),
                   kwargs: Mapping[str, Any] | None = None, forward_kwargs: Mapping[str, Any] | None = None,
                   order: Sequence[str] | None = None, layout: Layout = CANONICAL, name: str | None = None,
                   inplace: Any = None, grad_scale: Any = None, dtype: Any = None, batched: bool = True,
                   channel_axis: bool = True, input_grad: bool = True) -> FunctionLayer:
    """Wrap a CS231n-style function pair.

    ``forward(x, *params, *args, **kwargs) -> (out, cache)`` and ``backward(dout, cache)``
    returning ``(dx, dW, db)``, ``(dx, [dW, db])``, ``(dx, (dW, db))`` or
    ``(dx, {"W": dW, "b": db})`` (see :mod:`harness.adapters.returns`). ``params``: the
    user's arrays, as a mapping by canonical local name (``{"weight": w, "bias": b}``) or a
    sequence in the spec's order (weight, bias; for a fused span such as
    ``Sequential([Flatten, Linear])`` its parameters in forward order); extra arguments such
    as ``conv_param`` go in ``args``, keyword ones in ``kwargs`` (or ``forward_kwargs``, as
    :func:`wrap_layer` spells it; not both). The arrays are never modified: the code is
    handed copies, perturbed values new arrays.

    The options :func:`wrap_layer` has, with the same meaning: ``inplace`` (writes that are
    deliberate); ``grad_scale="batch"`` (gradients already divided by the batch size) or a
    number to multiply them by; ``dtype`` (the dtype to hand a parameter-free pair);
    ``batched=False`` (a pair written for one example, (C, H, W): called per example, the
    parameter gradients summed); ``channel_axis=False`` (with ``batched=False``: one
    single-channel (H, W) image); ``input_grad=False`` (a first layer that computes no input
    gradient: backward may return None or (None, dW, db); the input gradient is not compared).
    """
    options = dict(inplace=inplace, grad_scale=grad_scale, dtype=dtype, batched=batched, channel_axis=channel_axis,
                   input_grad=input_grad)
    kwargs = merged_kwargs(f"layer '{name or (spec.name if spec is not None else 'layer')}'", kwargs, forward_kwargs)
    return FunctionLayer(forward, backward, spec, params, args=args, kwargs=kwargs, order=order, layout=layout,
                         name=name, options=options)
