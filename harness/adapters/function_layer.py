"""CS231n-style function pairs: ``forward(x, *params) -> (out, cache)`` and
``backward(dout, cache) -> (dx, *param_grads)``."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..faults import call_user
from ..spec import Layer
from .arrays import from_float64, to_float64
from .effects import parse_inplace
from .layouts import CANONICAL, Layout
from .refs import AdapterError, ValueFinding, _copy
from .wrapped import WrappedLayer, _check_grad_scale


class FunctionLayer(WrappedLayer):
    """CS231n style: ``forward(x, *params, *args) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, *param_grads)``, parameters in ``order``."""

    def __init__(self, forward: Callable, backward: Callable, spec: Layer | None, params: Mapping[str, Any] | Sequence[Any],
                 *, args: Sequence[Any], kwargs: Mapping[str, Any], order: Sequence[str] | None, layout: Layout,
                 name: str | None, inplace: Any = None, grad_scale: Any = None, dtype: Any = None,
                 array_type: Any = None) -> None:
        super().__init__(spec, layout, name)
        self.inplace = parse_inplace(inplace, f"layer '{self.name}'")
        _check_grad_scale(self.name, grad_scale)
        self.grad_scale = grad_scale
        self._declare_types(dtype, array_type)
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
        self._cache: Any = None
        self.feed_kind()  # a declared array type the parameters contradict: said now

    def _param_names(self) -> list[str]:
        return list(self._params)

    def _get_user(self, local: str) -> Any:
        return self._params[local]

    def _put_user(self, local: str, value: Any) -> None:
        self._params[local] = value

    def _get_grad(self, local: str) -> Any:
        return self._grads.get(local)

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        # the arrays were handed to us by the user: replace, never write into them
        for local, value in values.items():
            _, kind = to_float64(self._params[local], self._what(local))
            user = self._to_user(local, value, kind.shape)
            self._params[local] = from_float64(user, kind)

    def _call_forward(self, x: np.ndarray) -> Any:
        self._handed = {k: _copy(v) for k, v in self._params.items()}  # the user's own arrays are never handed over
        result = call_user(self._f, x, *self._handed.values(), *self._args, **self._kwargs)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ValueFinding(f"layer '{self.name}': forward must return (out, cache), got {type(result).__name__}")
        out, self._cache = result
        return out

    def _call_backward(self, dy: np.ndarray) -> Any:
        result = call_user(self._b, dy, self._cache)
        result = result if isinstance(result, tuple) else (result,)
        if len(result) != 1 + len(self._params):
            raise ValueFinding(
                f"layer '{self.name}': backward must return (dx, {', '.join('d' + k for k in self._params)}), "
                f"got {len(result)} values"
            )
        self._grads = dict(zip(self._params, result[1:]))
        return result[0]


def wrap_functions(forward: Callable, backward: Callable, spec: Layer | None = None,
                   params: Mapping[str, Any] | Sequence[Any] = (), *, args: Sequence[Any] = (),
                   kwargs: Mapping[str, Any] | None = None, order: Sequence[str] | None = None,
                   layout: Layout = CANONICAL, name: str | None = None, inplace: Any = None, grad_scale: Any = None,
                   dtype: Any = None, array_type: Any = None) -> FunctionLayer:
    """Wrap a CS231n-style function pair.

    ``forward(x, *params, *args, **kwargs) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, *param_grads)``. ``params``: the user's arrays, as a
    mapping by canonical local name (``{"weight": w, "bias": b}``) or a sequence in the
    spec's order (weight, bias); extra arguments such as ``conv_param`` go in ``args``.
    The arrays are never modified: the code is handed copies, perturbed values new arrays.
    ``inplace``: writes that are deliberate; ``grad_scale``: ``"batch"`` for gradients already
    divided by the batch size, or a number to multiply them by; ``dtype``: the dtype to hand a
    parameter-free pair (as for :func:`wrap_layer`; a torch or jax dtype too); ``array_type``:
    ``"numpy"``, ``"torch"``, ``"jax"`` or ``"cupy"``, the arrays the pair computes with
    (undeclared: the parameters' type), in which its input and upstream gradient are handed.
    """
    return FunctionLayer(forward, backward, spec, params, args=args, kwargs=kwargs or {}, order=order,
                         layout=layout, name=name, inplace=inplace, grad_scale=grad_scale, dtype=dtype,
                         array_type=array_type)
