"""A CS231n-style model seen in canonical conventions: ``model.loss(X, y)`` returns
``(loss, grads)`` with parameters in ``model.params`` (``W1``, ``b1`` ...), or a bare
function ``loss_and_grads(x, y) -> (loss, grads)`` over arrays given as ``params=``; its
gradients are those of the spec's reference under the given loss (``reference.loss_vjp``).
Re-exported by :mod:`harness.adapters.network`."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import numpy as np

from ..faults import call_user
from ..spec import BatchNorm1d, BatchNorm2d, Conv2d, Layer, Linear, Loss, ParamInfo, SpecError, walk
from .arrays import NonFinite, from_float64, is_mutable, nonfinite, to_float64, write_into
from .inputs import AXES, read_shape
from .layouts import CANONICAL, Layout, data_to_user, feature_orders, param_from_user, param_to_user
from .network_parts import Shape, _needs_input_shape, _param_table, _returned, _user_output
from .notes import _close, _listing
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
    or a function ``loss_and_grads(x, y) -> (loss, grads)`` over the arrays in ``params``;
    see :func:`wrap_loss_model`."""

    def __init__(
        self,
        model: Any,
        spec: Layer,
        *,
        loss: Loss,
        params: Mapping[str, Any] | None,
        layout: Layout,
        method: str,
        input_shape: Shape | None,
    ) -> None:
        if not isinstance(loss, Loss):
            raise AdapterError(f"wrap_loss_model: loss must be a loss spec such as SoftmaxCrossEntropy(), got {loss!r}")
        if not isinstance(layout, Layout):
            raise AdapterError(f"wrap_loss_model: layout must be a harness.Layout, got {layout!r}")
        # a bare function loss_and_grads(x, y): no model object, the parameters are the arrays it closes over
        self.has_scores = callable(getattr(model, method, None))
        self.in_order: dict[Any, str] = {}  # the user's own names read in forward order -> canonical
        if not self.has_scores and not callable(model):
            raise AdapterError(
                f"wrap_loss_model: {type(model).__name__} has no method {method}(); pass method= with its "
                "name, or a function loss_and_grads(x, y) -> (loss, grads) with params={name: array}"
            )
        self.spec, self.loss, self.layout, self.method = spec, loss, layout, method
        self.input_shape = tuple(input_shape) if input_shape is not None else None  # as given, in layout.data
        canonical = read_shape(input_shape, spec, layout) if input_shape is not None else None
        self._table = _param_table(spec, canonical)
        if canonical is None and _needs_input_shape(spec, [layout]):
            raise AdapterError(
                "wrap_loss_model: a Layout(flatten='HWC') reorders the first fully connected layer's "
                f"weight rows by the (C, H, W) it flattens; pass input_shape={AXES[layout.data]}"
            )
        self._flat = feature_orders(spec, canonical)[0] if canonical else {}
        if self.has_scores:
            self.model, self._fn = model, None  # model.<method> looked up at each call (it may be replaced)
            self.what = f"{method}(X, y)"
            places = self._method_places(params)
        else:
            # the arrays live in a dict of their own; Refs into it reach the very arrays the function closes over
            self.model, self._fn, places, self.in_order = _closed_over(model, params, self._table, spec)
            self.what = f"{getattr(model, '__name__', type(model).__name__)}(x, y)"
        self.params = self._bind(places)
        self.returned: dict[str, np.dtype] = {}  # dtypes of what model.loss last returned
        self.nonfinite_grads: dict[str, NonFinite] = {}  # NaN/Inf in its last gradients, in the user's layout
        if self.in_order:
            try:  # names read in order: an array that does not fit its place says the order was another
                self.get_params()
            except SpecError as e:
                raise AdapterError(
                    f"wrap_loss_model: params {list(self.in_order)} were read in forward order as "
                    f"{list(self.in_order.values())}, but {e}; key them by the canonical names "
                    f"instead"
                ) from None

    def _bind(self, places: Mapping[str, str]) -> dict[str, Ref]:
        """``{canonical name: Ref}`` checked: every name a parameter of the spec, something at
        every place, every trainable parameter placed."""
        out: dict[str, Ref] = {}
        valid = list(self._table)
        for name, where in places.items():
            if name not in self._table:
                raise AdapterError(
                    f"wrap_loss_model: '{name}' is not a parameter of the spec{_close(name, valid)}; "
                    f"its parameters are {_listing(valid)}"
                )
            ref = Ref(where)
            if not ref.exists(self.model):
                raise AdapterError(
                    f"wrap_loss_model: parameter '{name}' declared at {where!r}, but "
                    f"{type(self.model).__name__} has nothing there"
                )
            out[name] = ref
        missing = [n for n, (*_, info) in self._table.items() if info.trainable and n not in out]
        if missing:
            example = f"'{missing[0]}': W1" if not self.has_scores else f"'{missing[0]}': \"params['W1']\""
            raise AdapterError(
                f"wrap_loss_model: no location given for {missing}; map every trainable parameter, "
                f"e.g. params={{{example}}}"
            )
        return out

    def _method_places(self, params: Mapping[str, Any] | None) -> dict[str, str]:
        """``{canonical name: Ref path on the model}``: as declared, else CS231n's W1, b1 ..."""
        if params is not None:
            bad = [k for k, v in params.items() if not isinstance(v, str)]
            if bad:
                raise AdapterError(
                    f"wrap_loss_model: params['{bad[0]}'] is a {type(params[bad[0]]).__name__}; for a model "
                    f"with a {self.method}() method params= says where each array lives on it, e.g. "
                    f"{{'{bad[0]}': \"params['W1']\"}}"
                )
            return dict(params)
        places = {}
        for name, key in _cs231n_names(self.spec, self._table).items():
            tried = [f"params[{key!r}]", key]
            found = next((t for t in tried if Ref(t).exists(self.model)), None)
            if found is None:
                raise AdapterError(
                    f"wrap_loss_model: cannot find '{name}' on {type(self.model).__name__} (tried "
                    f"{', '.join(tried)}); pass params={{'{name}': \"params['W1']\", ...}}"
                )
            places[name] = found
        return places

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
                raise (ValueFinding if returned else AdapterError)(
                    f"{what} has shape {v.shape} but the parameter has {user_shape}"
                )
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
                raise AdapterError(
                    f"set_params: '{name}' is not a parameter of the wrapped model"
                    f"{_close(name, list(self.params))}; its parameters are {_listing(list(self.params))}"
                )
            path, layer, local, _ = self._table[name]
            ref, what = self.params[name], f"parameter '{name}' at {self.params[name]!r}"
            current = ref.get(self.model)
            _, kind = to_float64(current, what)
            user = param_to_user(
                layer, local, np.asarray(value, np.float64), self.layout, kind.shape, self._flat.get(path)
            )
            if is_mutable(current):
                write_into(current, user, what)
            else:
                ref.set(self.model, from_float64(user, kind, what))

    def preserved(self) -> AbstractContextManager[None]:
        """The model's parameters restored bit for bit on exit, even when user code raises."""
        places = {n: (partial(r.get, self.model), partial(r.set, self.model)) for n, r in self.params.items()}
        return preserving(places, "loss model")

    def _x_user(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(data_to_user(np.asarray(x, dtype=np.float64), self.layout)).astype(self.dtype)

    def _call(self, *args: Any) -> Any:
        return call_user(self._fn or getattr(self.model, self.method), *args)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """``model.loss(X)`` (no labels: the network's output) as canonical float64; only
        for a model with the method (:attr:`has_scores`)."""
        if not self.has_scores:
            raise AdapterError(
                "wrap_loss_model: a loss_and_grads function gives no scores; only its loss and gradients are checked"
            )
        x = np.asarray(x, dtype=np.float64)
        raw = self._call(self._x_user(x))
        y = _user_output(raw, f"{self.method}(X) (the scores)", self.layout, None, self.returned)
        expected = self.spec.output_shape(x.shape)
        if y.shape != expected:
            raise ValueFinding(f"{self.method}(X) returned shape {tuple(np.shape(raw))}; the spec expects {expected}")
        return y

    def loss_and_grads(self, x: np.ndarray, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        """``model.loss(X, y)`` (or ``loss_and_grads(x, y)``) -> (loss, {canonical name:
        canonical gradient}) for the trainable parameters; compare with
        ``reference.loss_vjp(params, x, self.loss, y)``."""
        result = self._call(*self._user_args(x, y))
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ValueFinding(f"{self.what} must return (loss, grads), got {_kind(result)}")
        loss, grads = result
        lv, _ = _returned(loss, f"{self.what} loss")
        if lv.size != 1 or not np.isfinite(lv).all():
            raise ValueFinding(f"{self.what} returned loss {loss!r}; expected one finite number")
        if not isinstance(grads, Mapping):
            raise ValueFinding(
                f"{self.what} must return grads as a dict keyed like the params (e.g. "
                f"{{'{next(iter(self.params))}': dW}}), got {type(grads).__name__}"
            )
        self._refuse_unknown(grads)
        out, self.nonfinite_grads = {}, {}
        for name, ref in self.params.items():
            if not self._table[name][3].trainable:
                continue
            own = ref.steps[-1][1]  # CS231n: grads['W1'] for params['W1']; or the canonical name
            key = next((k for k in (own, name) if k in grads), None)
            if key is None:
                raise AdapterError(
                    f"{self.what}: grads has no {own!r} (the gradient of '{name}'); it has {sorted(map(str, grads))}"
                )
            out[name] = self._canonical(name, grads[key], f"gradient of '{name}' (grads[{key!r}])", returned=True)
        return float(lv.reshape(())), out

    def _user_args(self, x: np.ndarray, y: Any) -> tuple[Any, ...]:
        """What ``model.loss`` is handed for canonical ``x`` and targets ``y``: ``(X, y)``, X in
        the user's data layout and dtype, copies."""
        return self._x_user(x), np.array(y, copy=True)

    def _refuse_unknown(self, grads: Mapping[Any, Any]) -> None:
        """AdapterError for a key of ``grads`` that names no trainable parameter: neither
        its own key in ``params`` nor its canonical name (with the closest one)."""
        names = [str(k) for n, ref in self.params.items() if self._table[n][3].trainable for k in (ref.steps[-1][1], n)]
        unknown = [k for k in grads if str(k) not in names]
        if unknown:
            raise AdapterError(
                f"{self.what}: grads has the key {unknown[0]!r}, which names no parameter"
                f"{_close(str(unknown[0]), names)}; keys are the params' names or the canonical "
                f"names {_listing(list(self.params))}"
            )


def _kind(value: Any) -> str:
    return f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__


def _closed_over(
    fn: Any, params: Any, table: Mapping[str, tuple[str, Layer, str, ParamInfo]], spec: Layer
) -> tuple[dict[Any, Any], Any, dict[str, str], dict[Any, str]]:
    """For ``loss_and_grads(x, y)``: (a dict holding the user's own arrays under the user's
    keys, the function, ``{canonical name: Ref path into that dict}``, ``{user's name:
    canonical name}`` when read in order, else empty). Keys are canonical
    names (``"fc1.weight"``) or CS231n's (``"W1"``, ``"b1"``, ``"gamma1"`` ...); when none
    is, the user's own names in forward order."""
    name = getattr(fn, "__name__", type(fn).__name__)
    if not isinstance(params, Mapping) or not params:
        raise AdapterError(
            f"wrap_loss_model: {name}(x, y) computes with arrays it closes over; pass them as "
            f"params={{name: array}}, e.g. params={{'fc1.weight': W1, 'fc1.bias': b1}} (canonical names, "
            f"or CS231n's W1, b1 ...), got {params!r}"
        )
    cs231n = {key: canonical for canonical, key in _cs231n_names(spec, table).items()}
    valid = list(table) + list(cs231n)
    trainable = [n for n, (*_, info) in table.items() if info.trainable]
    # the user's own names only (w_in, b_in ...): read in forward order, one per trainable parameter
    in_order = dict(zip(params, trainable)) if not any(k in table or k in cs231n for k in params) else {}
    if in_order and len(params) != len(trainable):
        raise AdapterError(
            f"wrap_loss_model: params keys {list(params)} are neither canonical nor CS231n names; read "
            f"in forward order they must give one array per trainable parameter, {_listing(trainable)}, "
            f"got {len(params)}; or key them by the canonical names"
        )
    places: dict[str, str] = {}
    for key, value in params.items():
        canonical = in_order.get(key) or (key if key in table else cs231n.get(key))
        if canonical is None:
            raise AdapterError(
                f"wrap_loss_model: params key {key!r} is not a parameter of the spec{_close(str(key), valid)}; "
                f"use its canonical names {_listing(list(table))} (or CS231n's W1, b1 ...)"
            )
        if canonical in places:
            raise AdapterError(
                f"wrap_loss_model: params keys {places[canonical][2:-2]!r} and {key!r} both name "
                f"'{canonical}'; give each parameter once"
            )
        if isinstance(value, str) or not is_mutable(value):
            raise AdapterError(
                f"wrap_loss_model: params[{key!r}] is a {type(value).__name__} that cannot be written in "
                f"place; trigrad perturbs the very arrays {name}(x, y) closes over (and restores them bit "
                "for bit): pass those arrays (writeable numpy arrays or torch tensors)"
            )
        places[canonical] = f"[{key!r}]"
    return dict(params), fn, places, in_order


def wrap_loss_model(
    model: Any,
    spec: Layer,
    *,
    loss: Loss,
    params: Mapping[str, Any] | None = None,
    layout: Layout = CANONICAL,
    method: str = "loss",
    input_shape: Shape | None = None,
) -> LossModel:
    """Wrap a CS231n-style model (``model.loss(X, y) -> (loss, grads)``, ``model.loss(X) ->
    scores``) or a function ``loss_and_grads(x, y) -> (loss, grads)``.

    A model: ``params`` maps canonical names to :class:`Ref` paths on it
    (``{"fc1.weight": "params['W1']"}``); by default CS231n's ``W1, b1, W2 ...`` in the order
    of the conv/linear layers. ``grads`` is read by the last key of each path (or the
    canonical name).

    A function (``model`` is callable and has no ``method``): ``x`` is handed in the user's
    data layout (N, C, H, W) / (N, H, W, C) / (N, D), ``y`` as labels (N,) or targets;
    ``params`` is ``{name: array}``, the very arrays the function closes over (written in
    place while probing, restored bit for bit), named canonically (``"conv1.weight"``) or
    CS231n-style (``"W1"``, ``"b1"``, ``"gamma1"``), or, when none is either, by the user's
    own names read in forward order (one per trainable parameter, each array's shape checked
    against its place); ``grads`` keyed by those names or the canonical ones. Only the loss
    and the gradients are checked (no scores to compare).

    CS231n stores Linear weights ``in_out``: pass ``Layout(linear="in_out")``.
    Regularisation must be off (``model.reg = 0``): the references compute the bare loss.
    ``input_shape`` is needed under an HWC flatten; it is in the declared layout (4-D in
    ``layout.data``: the rule of :mod:`.inputs`), as is the ``x`` :func:`harness.check_network`
    takes for the model.
    """
    return LossModel(model, spec, loss=loss, params=params, layout=layout, method=method, input_shape=input_shape)


__all__ = ["LossModel", "wrap_loss_model"]
