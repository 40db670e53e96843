"""CS231n-style function pairs: ``forward(x, *params) -> (out, cache)`` and
``backward(dout, cache) -> (dx, *param_grads)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..faults import call_user
from ..spec import Layer, join_path
from . import state, steps
from .arrays import from_float64, to_float64
from .layouts import CANONICAL, Layout
from .options import apply_shared, merged_kwargs
from .per_example import PerExample
from .refs import PARAM_CANDIDATES, AdapterError, Ref, ValueFinding, _copy
from .returns import aliases, numbered, split
from .wrapped import WrappedLayer


class FunctionLayer(PerExample, WrappedLayer):
    """CS231n style: ``forward(x, *params, *args) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, *param_grads)``, parameters in ``order``."""

    def __init__(
        self,
        forward: Callable,
        backward: Callable,
        spec: Layer | None,
        params: Mapping[str, Any] | Sequence[Any],
        *,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        order: Sequence[str] | None,
        layout: Layout,
        name: str | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(spec, layout, name)
        apply_shared(self, options or {})
        self._f, self._b, self._args, self._kwargs = forward, backward, tuple(args), dict(kwargs)
        self._in_args: dict[str, str] = {}  # running statistics found in a dict argument (bn_param), by path
        self._after: dict[str, str | None] = {}  # masks read after each forward: their path (None: search the cache)
        self._params = self._given(params, order)
        self._locate_buffers()
        self._positional = [k for k in self._params if k not in self._in_args and k not in self._after]  # in order
        self._grads: dict[str, Any] = {}
        self._summed_grads: dict[str, np.ndarray] = {}
        self._cache: Any = None
        self.feed_kind()  # a declared array type the parameters contradict: said now

    def _given(self, params: Mapping[str, Any] | Sequence[Any], order: Sequence[str] | None) -> dict[str, Any]:
        """The parameters as given: a mapping by local name, or a sequence in ``order`` (default:
        the spec's order, all of them or the trainable ones only: ``[gamma, beta]`` or
        ``[gamma, beta, running_mean, running_var]``). A string value names where a mask is
        read after each forward (``"cache[1]"``, ``"args[0]['mask']"``)."""
        names = list(self._spec_params()) if self.spec is not None else []
        if isinstance(params, Mapping):
            order = list(params) if order is None else list(order)
            missing = [k for k in order if k not in params]
            if missing:
                raise AdapterError(f"layer '{self.name}': params lack {missing}; got {list(params)}")
            self._after = {k: v for k, v in params.items() if isinstance(v, str)}
            return {k: params[k] for k in order if not isinstance(params[k], str)}
        params = list(params)
        if order is None and self.spec is not None:
            trainable = [k for k in names if k in self._trainable()]
            order = trainable if len(params) == len(trainable) < len(names) else names
        order = list(order or [])
        if len(params) != len(order):
            raise AdapterError(f"layer '{self.name}': got {len(params)} parameter arrays for {list(order)}")
        return dict(zip(order, params))

    def _locate_buffers(self) -> None:
        """The spec's parameters not given: running statistics in a dict argument (CS231n's
        ``bn_param``) or not kept (training mode; an AdapterError in eval mode), masks in a dict
        argument or the cache; anything else missing is an AdapterError."""
        declared, self._after = self._after, {}
        missing: list[str] = []
        eval_missing: list[str] = []
        for local in self._spec_params() if self.spec is not None else {}:
            leaf, leaf_local = self._leaf(local)
            if local in self._params:
                continue
            if state.deferred(leaf, leaf_local):
                path = self._after[local] = declared.get(local) or state.in_dicts(
                    self._args, self._kwargs, state.MASK_NAMES
                )
                given = state.place(self._root(self._args, self._kwargs), path) if path else None
                if given is not None:  # a mask the user put in dropout_param: it sizes the input
                    self._params[local] = given
            elif leaf_local in state.RUNNING and (
                path := state.in_dicts(self._args, self._kwargs, PARAM_CANDIDATES[leaf_local])
            ):
                self._in_args[local] = path
                self._params[local] = state.place(self._root(self._args, self._kwargs), path)
            elif state.optional(leaf, leaf_local):
                self._absent[local] = None  # training mode, not kept: not checked (a note says so)
            else:
                (eval_missing if leaf_local in state.RUNNING else missing).append(local)
        if unused := [k for k in declared if k not in self._after]:
            raise AdapterError(
                f"layer '{self.name}': params gives {unused} as a place ({declared[unused[0]]!r}); only a "
                "dropout mask is read from a place (after each forward): pass the arrays themselves"
            )
        if missing:
            raise AdapterError(
                f"layer '{self.name}': params lack {missing} (the spec's parameters are "
                f"{list(self._spec_params())}); got {list(self._params)}"
            )
        if eval_missing:
            raise state.eval_error(
                self.name,
                type(self._leaf(eval_missing[0])[0]).__name__,
                eval_missing,
                "not in params and no dict in args= or kwargs= holds them",
                "pass them in params= ([gamma, beta, running_mean, running_var]) or in a dict argument "
                "(bn_param={'mode': 'test', 'running_mean': ..., 'running_var': ...})",
            )

    @staticmethod
    def _root(args: Sequence[Any], kwargs: Mapping[str, Any], cache: Any = None) -> SimpleNamespace:
        return SimpleNamespace(args=list(args), kwargs=dict(kwargs), cache=cache)

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
            if local in self._absent:
                continue  # running statistics the code does not keep
            _, kind = to_float64(self._params[local], self._what(local))
            user = self._to_user(local, value, kind.shape)
            self._params[local] = from_float64(user, kind)

    def _peek(self, local: str) -> Any:
        return getattr(self, "_params", {}).get(local)

    def _place(self, name: str) -> str:
        return self._after.get(name) or self._in_args.get(name) or "the value given"

    def get_params(self) -> dict[str, np.ndarray]:
        self._prime()
        pending = [k for k in self._after if k not in self._params]
        if pending:
            raise AdapterError(
                f"layer '{self.name}': its dropout mask is drawn by its forward, which has not run, and its input shape "
                "is not known: pass x= or input_shape= to check_layer (input_shape= or x= to check_network)"
            )
        return super().get_params()

    def _call_forward(self, x: np.ndarray) -> Any:
        self._handed = {
            k: _copy(self._params[k]) for k in self._positional
        }  # the user's own arrays are never handed over
        self._summed_grads = {}
        return self._forward_examples(x) if not self.batched else self._forward_one(x)

    def _forward_one(self, x: np.ndarray) -> Any:
        # the user's own dicts are never handed over either: copies, with the current running
        # statistics put where the user's dict holds them
        args, kwargs = [state.fresh(a) for a in self._args], {k: state.fresh(v) for k, v in self._kwargs.items()}
        handed = self._root(args, kwargs)
        for local, path in self._in_args.items():
            Ref(path).set(handed, _copy(self._params[local]))
        result = call_user(self._f, x, *self._handed.values(), *handed.args, **handed.kwargs)
        result = steps.forward_result(self.spec, result)  # an LSTM step's (next_h, next_c, cache)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ValueFinding(f"layer '{self.name}': forward must return (out, cache), got {type(result).__name__}")
        out, self._cache = result
        handed.cache = self._cache
        for local, place in self._after.items():  # the mask this forward used
            self._read_mask(local, place, handed, np.shape(x))
        return out

    def _read_mask(self, local: str, path: str | None, handed: SimpleNamespace, shape: tuple[int, ...]) -> None:
        where = path or state.find_mask(handed, tuple(shape))
        mask = state.place(handed, where) if where else None
        if mask is None:
            raise AdapterError(
                f"layer '{self.name}': cannot find its dropout mask after the forward ("
                + (
                    f"nothing at {path}"
                    if path
                    else "no dict argument holds 'mask', and the cache holds no single 0/1 "
                    f"array of the input's shape {tuple(shape)}"
                )
                + f"); pass params={{'{local}': \"cache[1]\"}} with where the mask lives (cache: what the forward "
                "returns second; args[i] / kwargs['name']: the dicts it was handed)"
            )
        self._after[local] = where
        self._params[local] = mask

    def _call_backward(self, dy: np.ndarray) -> Any:
        return self._backward_examples(dy) if not self.batched else self._backward_one(dy)

    def _backward_one(self, dy: np.ndarray) -> Any:
        names = self._trainable_names()
        full = (lambda k: join_path(self.spec.name, k)) if self.spec is not None else (lambda k: k)
        number = numbered(names)
        dx, grads = split(
            call_user(self._b, *steps.upstream(self.spec, self._b, dy, self._pair_out, 1), self._cache),
            names,
            lambda k: aliases(k, None, full(k), number.get(k)),
            f"layer '{self.name}'",
            input_grad=self.input_grad,
            tuple_only=False,
        )
        self._grads = grads or {}
        return dx


def wrap_functions(
    forward: Callable,
    backward: Callable,
    spec: Layer | None = None,
    params: Mapping[str, Any] | Sequence[Any] = (),
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    order: Sequence[str] | None = None,
    layout: Layout = CANONICAL,
    name: str | None = None,
    inplace: Any = None,
    grad_scale: Any = None,
    dtype: Any = None,
    batched: bool = True,
    channel_axis: bool = True,
    input_grad: bool = True,
    array_type: Any = None,
) -> FunctionLayer:
    """Wrap a CS231n-style function pair.

    ``forward(x, *params, *args, **kwargs) -> (out, cache)`` and ``backward(dout, cache)``
    returning ``(dx, dW, db)``, ``(dx, [dW, db])``, ``(dx, (dW, db))`` or
    ``(dx, {"W": dW, "b": db})`` (see :mod:`harness.adapters.returns`). ``params``: the
    user's arrays, as a mapping by canonical local name (``{"weight": w, "bias": b}``) or a
    sequence in the spec's order (weight, bias; for a fused span such as
    ``Sequential([Flatten, Linear])`` its parameters in forward order); extra arguments such
    as ``conv_param`` go in ``args``, keyword ones in ``kwargs`` (or ``forward_kwargs``, as
    :func:`wrap_layer` spells it; not both). The arrays are never modified: the code is
    handed copies (dicts in ``args`` / ``kwargs`` too), perturbed values new arrays. For a
    batch norm ``params`` is ``[gamma, beta]`` or ``[gamma, beta, running_mean, running_var]``.
    Running statistics not in ``params`` are read from a dict argument holding
    ``running_mean`` / ``running_var`` (CS231n's ``bn_param``); a training-mode batch norm
    may have none (then not checked, and the report says so). A dropout's mask is read after
    every forward from a dict argument (``dropout_param['mask']``) or from the cache the forward
    returns (CS231n's ``(dropout_param, mask)``: the one 0/1-valued array of the input's
    shape), each forward replayed from one random state; elsewhere, declare where it is read:
    ``params={"mask": "cache[1]"}`` (``cache``: the forward's second value; ``args[i]`` /
    ``kwargs['name']``: the copies it was handed).

    The options :func:`wrap_layer` has, with the same meaning: ``inplace`` (writes that are
    deliberate); ``grad_scale="batch"`` (gradients already divided by the batch size) or a
    number to multiply them by; ``dtype`` (the dtype to hand a parameter-free pair);
    ``batched=False`` (a pair written for one example, (C, H, W): called per example, the
    parameter gradients summed); ``channel_axis=False`` (with ``batched=False``: one
    single-channel (H, W) image); ``input_grad=False`` (a first layer that computes no input
    gradient: backward may return None or (None, dW, db); the input gradient is not compared);
    ``array_type``: ``"numpy"``, ``"torch"``, ``"jax"`` or ``"cupy"``, the arrays the pair
    computes with (undeclared: the parameters' type), in which its input and upstream
    gradient are handed (``dtype`` may then be a torch or jax dtype).
    """
    options = {
        "inplace": inplace,
        "grad_scale": grad_scale,
        "dtype": dtype,
        "batched": batched,
        "channel_axis": channel_axis,
        "input_grad": input_grad,
        "array_type": array_type,
    }
    kwargs = merged_kwargs(f"layer '{name or (spec.name if spec is not None else 'layer')}'", kwargs, forward_kwargs)
    return FunctionLayer(
        forward,
        backward,
        spec,
        params,
        args=args,
        kwargs=kwargs,
        order=order,
        layout=layout,
        name=name,
        options=options,
    )
