"""Object-style layers: ``obj.forward(x) -> y``, ``obj.backward(dy) -> dx``, parameters and
gradients kept on the object; the options real code needs (see :data:`OPTIONS`) and the
calls into the object. Where the parameters and gradients live: :mod:`.object_refs`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..faults import call_user
from ..frames import user_frame
from ..spec import Layer, join_path
from . import state, steps
from .arrays import to_float64
from .attention import repeated_input, summed_inputs
from .layouts import CANONICAL, Layout
from .object_refs import ObjectRefs
from .options import SHARED, apply_shared
from .per_example import Grads, PerExample
from .refs import AdapterError, Ref, ValueFinding
from .returns import aliases, numbered, split
from .wrapped import WrappedLayer, _is_array


class ObjectLayer(ObjectRefs, PerExample, WrappedLayer):
    """``obj.forward(x) -> y``, ``obj.backward(dy) -> dx``, parameters and gradients kept on
    the object (attributes or dicts, see :class:`Ref`; located by :class:`ObjectRefs`)."""

    def __init__(
        self,
        obj: Any,
        spec: Layer | None,
        *,
        params: Mapping[str, str] | None,
        grads: Mapping[str, str] | None,
        layout: Layout,
        forward: str,
        backward: str,
        name: str | None,
        options: Mapping[str, Any],
    ) -> None:
        self.obj = obj  # before the base's __init__: a layer that draws its mask replays the object's generators
        super().__init__(spec, layout, name)
        for method in (forward, backward):
            if not callable(getattr(obj, method, None)):
                raise AdapterError(
                    f"layer '{self.name}': {type(obj).__name__} has no method {method}(); pass forward=/backward= with its names"
                )
        self._forward_name, self._backward_name = forward, backward
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise AdapterError(f"layer '{self.name}': unknown option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
        opts = {**OPTIONS, **options}
        self.forward_args, self.forward_kwargs = tuple(opts["forward_args"]), dict(opts["forward_kwargs"])
        self.backward_args, self.backward_kwargs = tuple(opts["backward_args"]), dict(opts["backward_kwargs"])
        self.zero_grad, self.sgd, self.flush = opts["zero_grad"], opts["sgd"], opts["flush"]
        self.repeat_input = repeated_input(self.name, opts["repeat_input"])
        apply_shared(self, opts)
        self._summed_grads: dict[str, np.ndarray] = {}
        for option in ("zero_grad", "flush"):
            if opts[option] is not None and not isinstance(opts[option], str):
                raise AdapterError(
                    f"layer '{self.name}': {option}= takes the name of a method of "
                    f'{type(obj).__name__}, e.g. {option}="flush_gradients", got {opts[option]!r}'
                )
        for method in filter(None, (self.zero_grad, self.flush, self.sgd and self.sgd[0])):
            if not callable(getattr(obj, method, None)):
                raise AdapterError(
                    f"layer '{self.name}': {type(obj).__name__} has no method {method}() (declared as an option)"
                )
        self._declared_params, self._declared_grads = params, grads
        self._sgd_grads: dict[str, np.ndarray] = {}
        self._returned_grads: dict[str, object] | None = None  # gradients the last backward returned, if any
        self._forwarded = False
        self.params: dict[str, Ref] | None = None
        self.grads: dict[str, Ref | None] = {}
        self._pending: dict[str, Ref | None] = {}  # a mask the forward draws: located after it ran
        self._owners: dict[str, str] = {}  # {name: Ref path of the sub-object holding it} in a composite
        if not opts["lazy"]:
            self._resolve()
            self.feed_kind()  # a declared array type its parameters contradict: said now, not at the first call

    @contextmanager
    def preserved(self) -> Iterator[None]:
        """As the base's; the places of running statistics the object did not keep are left as
        they were: created during the block (in a ``bn_param`` dict, say), removed again; there
        before (``None`` until the first forward), set back."""
        before = state.remember(self.obj, self._absent)
        try:
            with super().preserved():
                yield
        finally:
            state.restore_slots(self.obj, before)

    def get_params(self) -> dict[str, np.ndarray]:
        self._prime()
        if self._pending and not self._forwarded:
            raise AdapterError(
                f"layer '{self.name}': its dropout mask is drawn by its forward, which has not run, and its input shape "
                "is not known: pass x= or input_shape= to check_layer (input_shape= or x= to check_network)"
            )
        return super().get_params()

    def _get_grad(self, local: str) -> Any:
        if (self.sgd or not self.batched) and getattr(self, "_external", False):
            raise AdapterError(
                f"layer '{self.name}': with sgd= or batched=False its gradients are recovered around its own "
                "backward call, which the network's own backward made; check this layer chained, not end to end"
            )
        return super()._get_grad(local)

    def note_input_shape(self, shape: tuple[int, ...]) -> None:
        super().note_input_shape(shape)
        self._returned_grads = None  # the network's own backward runs next; the watch records what it returns

    def keep_returned(self, result: Any) -> None:
        """Read the gradients a backward the user's network called returned (the watch hands
        them here); an unreadable structure is left to the network's own report."""
        try:
            self._returned_grads = self._split(result)[1]
        except Exception:
            self._returned_grads = None

    def _raw_grad(self, local: str) -> Any:
        """The gradient of ``local`` as the code left it: a declared ``grads=`` place wins, then
        what the backward returned ((dx, dW, db), (dx, {"W": dW}) ...), then the usual names."""
        declared = local in (self._declared_grads or {})
        if not declared and self._returned_grads is not None and self._returned_grads.get(local) is not None:
            return self._returned_grads[local]
        return self._read_grad(local)

    def _call_forward(self, x: np.ndarray) -> Any:
        self._external, self._sgd_grads, self._summed_grads = False, {}, {}
        if not self.batched:  # code written for one example at a time: loop, then stack
            return self._forward_examples(x)
        return self._forward_one(x)

    def _forward_one(self, x: np.ndarray) -> Any:
        if self.flush:  # numpy-ml style: the flush clears the cached inputs too, so it goes before the forward
            call_user(getattr(self.obj, self.flush))
        xs = [x] * self.repeat_input  # (query, key, value) code checked as self-attention: x three times
        y = call_user(getattr(self.obj, self._forward_name), *xs, *self.forward_args, **self.forward_kwargs)
        self._forwarded = True
        return y

    def _split(self, result: Any) -> tuple[Any, dict[str, Any] | None]:
        names = self._trainable_names()
        # integer-index input has no dx: an array of the one parameter's shape is its gradient (dW)
        one = self.indices and len(names) == 1 and _is_array(result) and not isinstance(result, list)
        if one and np.shape(result) == np.shape(self._get_user(names[0])):
            return None, {names[0]: result}
        declared = {k: self.params[k].path for k in names} if self.params else {}
        full = (lambda k: join_path(self.spec.name, k)) if self.spec is not None else (lambda k: k)
        number = numbered(names)
        return split(
            result,
            names,
            lambda k: aliases(k, declared.get(k), full(k), number.get(k)),
            f"layer '{self.name}'",
            input_grad=self.input_grad,
            tuple_only=True,
        )

    def _backward_one(self, dy: np.ndarray) -> Any:
        """The user's backward (after ``zero_grad``); returns dx and keeps any gradients it returned."""
        if self.zero_grad:  # code that accumulates gradients until told to flush them
            call_user(getattr(self.obj, self.zero_grad))
        try:
            fn = getattr(self.obj, self._backward_name)
            dys = steps.upstream(self.spec, fn, dy, self._pair_out, len(self.backward_args))  # an LSTM step's pair
            result = call_user(fn, *dys, *self.backward_args, **self.backward_kwargs)
        except (IndexError, ValueError) as e:
            if not self.zero_grad:
                raise
            raise ValueFinding(
                f"layer '{self.name}': backward raised {user_frame(e)} right after "
                f"{self.zero_grad}() (zero_grad={self.zero_grad!r}); {self._flush_hint()}"
            ) from e
        dx, self._returned_grads = self._split(summed_inputs(self.name, result, self.repeat_input))
        return dx

    def _flush_hint(self) -> str:
        return (
            f"likely cause: {self.zero_grad}() also empties what the forward cached (the input), as numpy-ml's "
            f"flush_gradients() does; declare flush={self.zero_grad!r} instead of zero_grad= (called before "
            "every forward)"
        )

    def _shape_hint(self, dx: Any) -> str:
        if self.zero_grad and np.size(dx) == 0:
            return f"; {self._flush_hint()}"
        if isinstance(dx, list) and dx and all(_is_array(d) and not isinstance(d, list) for d in dx):
            flush = next(
                (m for m in ("flush_gradients", "flush", "clear", "reset") if callable(getattr(self.obj, m, None))),
                None,
            )
            name = f"flush={flush!r}" if flush else "flush= with the name of the method that clears it"
            return (
                f"; it is a list of {len(dx)} array{'s' * (len(dx) != 1)}: one input gradient per input cached by "
                "earlier forwards (the "
                f"forward appends its input to a list until flushed, as numpy-ml's layers do): declare {name} "
                "(called before every forward)"
            )
        return ""

    def _call_backward(self, dy: np.ndarray) -> Any:
        if not self.batched:
            return self._backward_examples(dy)
        if not self.sgd:
            return self._backward_one(dy)
        dx, grads = self._sgd_step(dy)
        self._sgd_grads = {k: v for k, (v, _) in grads.items()}
        self._grad_dtypes = dict.fromkeys(grads)  # computed here, in float64: not a dtype the code returned
        return dx

    def _sgd_step(self, dy: np.ndarray) -> tuple[Any, Grads]:
        """Gradients exposed only through an in-place SGD step: the backward, the step, the
        gradients recovered from the weight change (w_before - w_after) / lr, and the
        weights put back exactly."""
        method, lr = self.sgd
        names = self._trainable_names()
        with self.preserved():
            before = {k: to_float64(self._get_user(k), self._what(k))[0] for k in names}
            dx = self._backward_one(dy)
            if method:  # None: the backward itself applies the update
                call_user(getattr(self.obj, method))
            grads = {k: ((before[k] - to_float64(self._get_user(k), self._what(k))[0]) / lr, None) for k in names}
        return dx, grads


OPTIONS: dict[str, Any] = {
    "forward_args": (),  # extra positional arguments every forward needs (a training flag ...)
    "forward_kwargs": {},  # extra keyword arguments, e.g. {"training": True}
    "backward_args": (),  # extra positional arguments every backward needs (a learning rate ...)
    "backward_kwargs": {},
    "lazy": False,  # parameters are created by the first forward
    "zero_grad": None,  # name of the method that clears accumulated gradients (called before every backward)
    "flush": None,  # name of the method that clears the cached inputs and the gradients (called before every forward)
    "sgd": None,  # (method, lr): gradients only visible through an in-place SGD step
    "repeat_input": 1,  # 3: forward(query, key, value) handed x three times, backward's (dq, dk, dv) summed
    **SHARED,  # grad_scale, dtype, batched, channel_axis, input_grad, inplace: as function pairs take them
}


def _one_of(options: dict[str, Any], short: str, long: str, name: str | None) -> Any:
    """``options[short]`` or ``options[long]`` (popped): one option under two spellings, not both."""
    if short in options and long in options:
        raise AdapterError(f"layer '{name or 'layer'}': {short}= and {long}= are the same option; pass one of them")
    return options.pop(short, None) if short in options else options.pop(long, None)


def wrap_layer(
    obj: Any,
    spec: Layer | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    grads: Mapping[str, str] | None = None,
    layout: Layout = CANONICAL,
    forward: str = "forward",
    backward: str = "backward",
    name: str | None = None,
    **options: Any,
) -> WrappedLayer:
    """Wrap an object-style layer: ``obj.forward(x) -> y``, ``obj.backward(dy) -> dx``.

    Custom autograd code goes to :func:`~harness.adapters.autograd.wrap_autograd`, whose
    gradients come from the framework's autograd: a ``torch.autograd.Function`` subclass
    (``params={"weight": w, "bias": b}``, the tensors in the order ``apply`` takes them), a
    torch module without a ``backward`` of its own, a torch custom op, a ``jax.custom_vjp``,
    or a forward-only object holding torch tensors or jax arrays.

    params / grads: where each canonical parameter and its gradient live on ``obj``, e.g.
    ``params={"weight": "W", "bias": "b"}``, ``grads={"weight": "dW"}`` or
    ``params={"weight": "params['w']"}``. Undeclared ones are looked for under the usual
    names (``W``/``w``/``weight``/``kernel``..., gradients ``dW``/``grads['W']``...).
    layout: the user's conventions (:class:`Layout`); spec: the spec layer it implements
    (``None``: no reference, finite differences only).

    Options for what real code does (see :data:`OPTIONS`): ``forward_args`` /
    ``forward_kwargs`` (a required training flag), ``lazy=True`` (parameters created on the
    first forward), ``zero_grad="zero_grad"`` (gradients accumulate until that method is
    called; it is called before every backward), ``flush="flush_gradients"`` (a method that
    clears the cached inputs as well as the gradients, numpy-ml style: called before every
    forward), ``sgd=("step", lr)`` (gradients only visible through an in-place update, by that
    method or, with ``None``, inside backward; recovered as the weight change over lr, and
    the weights restored bit for bit), ``backward_args`` / ``backward_kwargs``,
    ``batched=False`` (one example at a time, (C, H, W) or (H, W, C); with
    ``channel_axis=False`` single-channel images as (H, W); combines with ``sgd=``: one step
    per example), ``grad_scale="batch"`` (gradients already divided by the batch size),
    ``input_grad=False`` (a first layer that computes no input gradient: backward may return
    None; the input gradient is not compared). ``repeat_input=3``: a forward written for
    several inputs, ``forward(query, key, value)`` (CS231n's attention), checked as
    self-attention: handed the input that many times, its backward's first that many returns
    (dquery, dkey, dvalue) summed into the input gradient.
    ``inplace={"input", "upstream", "params"}``: writes that are deliberate, not findings — the
    forward (or the backward, through its cache) writing into the forward's input, the backward
    into its upstream gradient, either changing a trainable parameter; any subset (an unknown
    name is an AdapterError). Undeclared, each is a failing finding on the side that wrote.
    ``array_type="torch"`` (``"jax"``, ``"cupy"``, ``"numpy"``): the arrays the code computes
    with; its input and upstream gradient are handed as such, in its dtype (``dtype=`` may be
    a torch or jax dtype) and on its parameters' device. Undeclared: its parameters' type,
    else the type ``dtype=`` names, else (in a network) the network's, else numpy.

    Optional state (see :mod:`.state`): a training-mode batch norm whose object keeps no
    running statistics needs no declaration (they are then not checked, and the report says
    so); they are looked for at ``running_mean`` / ``mean`` / ``moving_mean`` ..., in the
    usual dicts and in a ``bn_param`` dict; in eval mode they must be found or declared
    (``params={"running_mean": ..., "running_var": ...}``). A dropout's mask (0/1, bool, or 0
    and its 1/(1-p) scale; the input's shape in the declared data layout) is found at
    ``mask``, ``_mask``, ``params['mask']``, ``cache['mask']``, ``dropout_param['mask']`` ...,
    kept at construction (it then sizes the check's input) or drawn by every forward (looked
    for after the first one, and every forward replayed from one random state so each call
    drops the same units); elsewhere, declare ``params={"mask": "where"}``. Parameters with
    extra unit axes (a ``(F, 1)`` bias, a ``(1, D)`` gamma) are read as they are and written
    back in their own shape.

    A backward may return its parameter gradients instead of keeping them:
    ``(dx, dW, db)``, ``(dx, [dW, db])``, ``(dx, (dW, db))`` or ``(dx, {"W": dW, "b": db})``
    (see :mod:`harness.adapters.returns`). Then they are read from what it returned, also
    when the object keeps a copy too (the returned ones are what the code hands its
    optimiser); a gradient declared with ``grads=`` is read from there instead.
    """
    from .autograd import routes_to_autograd, wrap_autograd

    if routes_to_autograd(obj):  # a Function, a module without its own backward ...: its autograd is the backward
        refuse = {"grads": grads, "forward": forward != "forward", "backward": backward != "backward"}
        if bad := [k for k, v in refuse.items() if v]:
            raise AdapterError(
                f"layer '{name or (spec.name if spec else 'layer')}': {', '.join(f'{k}=' for k in bad)} "
                f"do not apply to {getattr(obj, '__name__', type(obj).__name__)}: its gradients come from autograd"
            )
        owner = name or (spec.name if spec is not None else None)
        fargs = _one_of(options, "args", "forward_args", owner) or ()
        fkwargs = _one_of(options, "kwargs", "forward_kwargs", owner)
        return wrap_autograd(obj, spec, params, args=fargs, kwargs=fkwargs, layout=layout, name=name, **options)
    if spec is None and params is None:
        params = {}
    return ObjectLayer(
        obj,
        spec,
        params=params,
        grads=grads,
        layout=layout,
        forward=forward,
        backward=backward,
        name=name,
        options=options,
    )
