"""A CS231n-style model seen in canonical conventions: ``model.loss(X, y)`` returns
``(loss, grads)`` with parameters in ``model.params`` (``W1``, ``b1`` ...); its gradients are
those of the spec's reference under the given loss (``reference.loss_vjp``). Re-exported by
:mod:`harness.adapters.network`."""

from __future__ import annotations

from functools import partial
from typing import Any, ContextManager, Mapping

import numpy as np

from ..faults import call_user
from ..spec import BatchNorm1d, BatchNorm2d, Conv2d, Layer, Linear, Loss, ParamInfo, walk
from .arrays import NonFinite, from_float64, is_mutable, nonfinite, to_float64, write_into
from .layouts import CANONICAL, Layout, data_to_user, feature_orders, param_from_user, param_to_user
from .inputs import AXES, read_shape
from .network import Shape, _close, _listing, _needs_input_shape, _param_table, _returned, _user_output
from .refs import AdapterError, Ref, ValueFinding, preserving


# --------------------------------------------------------------------------- CS231n loss models


def _cs231n_names(spec: Layer, table: Mapping[str, tuple[str, Layer, str, ParamInfo]]) -> dict[str, str]:
    """CS231n's keys: W1/b1 for the first conv or affine layer, W2/b2 ..., gamma1/beta1 for
    the batch norm after affine layer 1."""
    keys: dict[str, str] = {}
    i = 0
    for path, layer in walk(spec):
        if isinstance(layer, (Conv2d, Linear)):
            i += 1
            keys.update({f"{path}.weight": f"W{i}", f"{path}.bias": f"b{i}"})
        elif isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            keys.update({f"{path}.weight": f"gamma{i}", f"{path}.bias": f"beta{i}"})
    return {name: keys[name] for name, (*_, info) in table.items() if info.trainable and name in keys}


class LossModel:
    """A CS231n-style model: ``model.loss(X, y) -> (loss, grads)``, ``model.loss(X) -> scores``;
    see :func:`wrap_loss_model`."""

    def __init__(self, model: Any, spec: Layer, *, loss: Loss, params: Mapping[str, str] | None, layout: Layout,
                 method: str, input_shape: Shape | None) -> None:
        if not isinstance(loss, Loss):
            raise AdapterError(f"wrap_loss_model: loss must be a loss spec such as SoftmaxCrossEntropy(), got {loss!r}")
        if not isinstance(layout, Layout):
            raise AdapterError(f"wrap_loss_model: layout must be a harness.Layout, got {layout!r}")
        if not callable(getattr(model, method, None)):
            raise AdapterError(f"wrap_loss_model: {type(model).__name__} has no method {method}(); pass method= with its name")
        self.model, self.spec, self.loss, self.layout, self.method = model, spec, loss, layout, method
        self.input_shape = tuple(input_shape) if input_shape is not None else None  # as given, in layout.data
        canonical = read_shape(input_shape, spec, layout) if input_shape is not None else None
        self._table = _param_table(spec, canonical)
        if canonical is None and _needs_input_shape(spec, [layout]):
            raise AdapterError("wrap_loss_model: a Layout(flatten='HWC') reorders the first fully connected layer's "
                               f"weight rows by the (C, H, W) it flattens; pass input_shape={AXES[layout.data]}")
        self._flat = feature_orders(spec, canonical)[0] if canonical else {}
        valid = list(self._table)
        if params is None:
            params = {}
            for name, key in _cs231n_names(spec, self._table).items():
                tried = [f"params[{key!r}]", key]
                found = next((t for t in tried if Ref(t).exists(model)), None)
                if found is None:
                    raise AdapterError(f"wrap_loss_model: cannot find '{name}' on {type(model).__name__} (tried "
                                       f"{', '.join(tried)}); pass params={{'{name}': \"params['W1']\", ...}}")
                params[name] = found
        self.params: dict[str, Ref] = {}
        for name, where in params.items():
            if name not in self._table:
                raise AdapterError(f"wrap_loss_model: '{name}' is not a parameter of the spec{_close(name, valid)}; "
                                   f"its parameters are {_listing(valid)}")
            ref = Ref(where)
            if not ref.exists(model):
                raise AdapterError(f"wrap_loss_model: parameter '{name}' declared at {where!r}, but "
                                   f"{type(model).__name__} has nothing there")
            self.params[name] = ref
        missing = [n for n, (*_, info) in self._table.items() if info.trainable and n not in self.params]
        if missing:
            raise AdapterError(f"wrap_loss_model: no location given for {missing}; map every trainable parameter, "
                               f"e.g. params={{'{missing[0]}': \"params['W1']\"}}")
        self.returned: dict[str, np.dtype] = {}  # dtypes of what model.loss last returned
        self.nonfinite_grads: dict[str, NonFinite] = {}  # NaN/Inf in its last gradients, in the user's layout

    @property
    def dtype(self) -> np.dtype:
        for ref in self.params.values():
            _, kind = to_float64(ref.get(self.model), f"parameter at {ref!r}")
            if np.issubdtype(kind.dtype, np.floating):
                return kind.dtype
        return np.dtype(np.float64)

    def _canonical(self, name: str, value: Any, what: str, returned: bool = False) -> np.ndarray:
        """A parameter (or, ``returned``, a gradient the model returned: read as a finding,
        its dtype and NaN/Inf recorded) in the user's layout -> canonical."""
        path, layer, local, info = self._table[name]
        if returned:
            v, self.returned[name] = _returned(value, what)
        else:
            v, _ = to_float64(value, what)
        user_shape = tuple(np.shape(self.params[name].get(self.model)))
        if v.shape != user_shape:
            if v.size != int(np.prod(user_shape)):
                raise (ValueFinding if returned else AdapterError)(f"{what} has shape {v.shape} but the parameter has {user_shape}")
            v = v.reshape(user_shape)
        if returned and (bad := nonfinite(v)):
            self.nonfinite_grads[name] = bad
        return param_from_user(layer, local, v, self.layout, info.shape, self._flat.get(path))

    def nonfinite_params(self) -> dict[str, NonFinite]:
        """``{name: NonFinite}`` for every parameter whose value holds NaN or Inf (user layout)."""
        values = {n: to_float64(r.get(self.model), f"parameter '{n}' at {r!r}")[0] for n, r in self.params.items()}
        return {n: bad for n, v in values.items() if (bad := nonfinite(v))}

    def get_params(self) -> dict[str, np.ndarray]:
        return {n: self._canonical(n, r.get(self.model), f"parameter '{n}' at {r!r}") for n, r in self.params.items()}

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        """Write canonical values into the model's arrays (in place where mutable)."""
        for name, value in values.items():
            if name not in self.params:
                raise AdapterError(f"set_params: '{name}' is not a parameter of the wrapped model"
                                   f"{_close(name, list(self.params))}; its parameters are {_listing(list(self.params))}")
            path, layer, local, _ = self._table[name]
            ref, what = self.params[name], f"parameter '{name}' at {self.params[name]!r}"
            current = ref.get(self.model)
            _, kind = to_float64(current, what)
            user = param_to_user(layer, local, np.asarray(value, np.float64), self.layout, kind.shape, self._flat.get(path))
            if is_mutable(current):
                write_into(current, user, what)
            else:
                ref.set(self.model, from_float64(user, kind, what))

    def preserved(self) -> ContextManager[None]:
        """The model's parameters restored bit for bit on exit, even when user code raises."""
        places = {n: (partial(r.get, self.model), partial(r.set, self.model)) for n, r in self.params.items()}
        return preserving(places, "loss model")

    def _x_user(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(data_to_user(np.asarray(x, dtype=np.float64), self.layout)).astype(self.dtype)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """``model.loss(X)`` (no labels: the network's output) as canonical float64."""
        x = np.asarray(x, dtype=np.float64)
        raw = call_user(getattr(self.model, self.method), self._x_user(x))
        y = _user_output(raw, f"{self.method}(X) (the scores)", self.layout, None, self.returned)
        expected = self.spec.output_shape(x.shape)
        if y.shape != expected:
            raise ValueFinding(f"{self.method}(X) returned shape {tuple(np.shape(raw))}; the spec expects {expected}")
        return y

    def loss_and_grads(self, x: np.ndarray, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        """``model.loss(X, y)`` -> (loss, {canonical name: canonical gradient}) for the
        trainable parameters; compare with ``reference.loss_vjp(params, x, self.loss, y)``."""
        result = call_user(getattr(self.model, self.method), self._x_user(x), np.array(y, copy=True))
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ValueFinding(f"{self.method}(X, y) must return (loss, grads), got {type(result).__name__}")
        loss, grads = result
        lv, _ = _returned(loss, f"{self.method}(X, y) loss")
        if lv.size != 1 or not np.isfinite(lv).all():
            raise ValueFinding(f"{self.method}(X, y) returned loss {loss!r}; expected one finite number")
        if not isinstance(grads, Mapping):
            raise ValueFinding(f"{self.method}(X, y) must return grads as a dict keyed like the params, got {type(grads).__name__}")
        out, self.nonfinite_grads = {}, {}
        for name, ref in self.params.items():
            if not self._table[name][3].trainable:
                continue
            key = ref.steps[-1][1]  # CS231n: grads['W1'] for params['W1']
            if key not in grads:
                raise AdapterError(f"{self.method}(X, y): grads has no {key!r} (the gradient of '{name}'); it has {sorted(grads)}")
            out[name] = self._canonical(name, grads[key], f"gradient of '{name}' (grads[{key!r}])", returned=True)
        return float(lv.reshape(())), out


def wrap_loss_model(model: Any, spec: Layer, *, loss: Loss, params: Mapping[str, str] | None = None,
                    layout: Layout = CANONICAL, method: str = "loss", input_shape: Shape | None = None) -> LossModel:
    """Wrap a CS231n-style model (``model.loss(X, y) -> (loss, grads)``). ``params`` maps
    canonical names to :class:`Ref` paths on the model (``{"fc1.weight": "params['W1']"}``);
    by default CS231n's ``W1, b1, W2 ...`` in the order of the conv/linear layers. ``grads``
    is read by the last key of each path. CS231n stores Linear weights ``in_out``: pass
    ``Layout(linear="in_out")``. Regularisation must be off (``model.reg = 0``): the
    references compute the bare loss. ``input_shape`` is needed under an HWC flatten; it is
    in the declared layout (4-D in ``layout.data``: the rule of :mod:`.inputs`), as is the
    ``x`` :func:`harness.check_network` takes for the model.
    """
    return LossModel(model, spec, loss=loss, params=params, layout=layout, method=method, input_shape=input_shape)


__all__ = ["LossModel", "wrap_loss_model"]
