"""Object-style layers: ``obj.forward(x) -> y``, ``obj.backward(dy) -> dx``, parameters and
gradients kept on the object; the options real code needs (see :data:`OPTIONS`)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..faults import call_user
from ..spec import Layer
from .arrays import to_float64
from .effects import parse_inplace
from .layouts import CANONICAL, Layout
from .refs import AdapterError, Ref, ValueFinding, _candidates, _grad_candidates
from .wrapped import WrappedLayer, _check_grad_scale, _is_array


class ObjectLayer(WrappedLayer):
    """``obj.forward(x) -> y``, ``obj.backward(dy) -> dx``, parameters and gradients kept on
    the object (attributes or dicts, see :class:`Ref`)."""

    def __init__(self, obj: Any, spec: Layer | None, *, params: Mapping[str, str] | None, grads: Mapping[str, str] | None,
                 layout: Layout, forward: str, backward: str, name: str | None, options: Mapping[str, Any]) -> None:
        super().__init__(spec, layout, name)
        self.obj = obj
        for method in (forward, backward):
            if not callable(getattr(obj, method, None)):
                raise AdapterError(f"layer '{self.name}': {type(obj).__name__} has no method {method}(); pass forward=/backward= with its names")
        self._forward_name, self._backward_name = forward, backward
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise AdapterError(f"layer '{self.name}': unknown option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
        opts = {**OPTIONS, **options}
        self.forward_args, self.forward_kwargs = tuple(opts["forward_args"]), dict(opts["forward_kwargs"])
        self.backward_args, self.backward_kwargs = tuple(opts["backward_args"]), dict(opts["backward_kwargs"])
        self.zero_grad, self.sgd, self.grad_scale = opts["zero_grad"], opts["sgd"], opts["grad_scale"]
        self.batched, self.channel_axis = bool(opts["batched"]), bool(opts["channel_axis"])
        self.inplace = parse_inplace(opts["inplace"], f"layer '{self.name}'")
        if not self.batched and self.sgd:
            raise AdapterError(f"layer '{self.name}': batched=False and sgd= cannot be combined")
        if not self.channel_axis and self.batched:
            raise AdapterError(f"layer '{self.name}': channel_axis=False is for single examples: pass batched=False too")
        self._summed_grads: dict[str, np.ndarray] = {}
        _check_grad_scale(self.name, self.grad_scale)
        for method in filter(None, (self.zero_grad, self.sgd and self.sgd[0])):
            if not callable(getattr(obj, method, None)):
                raise AdapterError(f"layer '{self.name}': {type(obj).__name__} has no method {method}() (declared as an option)")
        if opts["dtype"] is not None:
            self._dtype = np.dtype(opts["dtype"])
        self._declared_params, self._declared_grads = params, grads
        self._sgd_grads: dict[str, np.ndarray] = {}
        self._forwarded = False
        self.params: dict[str, Ref] | None = None
        self.grads: dict[str, Ref | None] = {}
        if not opts["lazy"]:
            self._resolve()

    def _resolve(self) -> None:
        self.params = self._resolve_params(self._declared_params)
        self.grads = self._resolve_grads(self._declared_grads)

    def _resolve_params(self, declared: Mapping[str, str] | None) -> dict[str, Ref]:
        wanted = list(self._spec_params_safe()) if self.spec else list(declared or {})
        declared = dict(declared or {})
        unknown = [k for k in declared if self.spec is not None and k not in wanted]
        if unknown:
            raise AdapterError(f"layer '{self.name}': params names {unknown} are not parameters of {type(self.spec).__name__}; expected some of {wanted}")
        out = {}
        for local in wanted:
            if local in declared:
                ref = Ref(declared[local])
                if not ref.exists(self.obj):
                    raise AdapterError(f"layer '{self.name}': parameter '{local}' declared at {ref!r}, but {type(self.obj).__name__} has nothing there")
                out[local] = ref
                continue
            found = [Ref(c) for c in _candidates(local) if Ref(c).exists(self.obj) and _is_array(Ref(c).get(self.obj))]
            if not found:
                raise AdapterError(
                    f"layer '{self.name}': cannot find parameter '{local}' on {type(self.obj).__name__} "
                    f"(tried {', '.join(_candidates(local)[:6])} ...); pass params={{'{local}': \"W\"}} with where it lives"
                    f"{lazy_hint(self, local)}"
                )
            clash = [k for k, r in out.items() if r.path == found[0].path]
            if clash:
                raise AdapterError(
                    f"layer '{self.name}': '{clash[0]}' and '{local}' would both be read from {found[0]!r}; "
                    f"pass params= to say where each lives"
                )
            out[local] = found[0]
        return out

    def _spec_params_safe(self) -> dict[str, Any]:
        try:
            return self._spec_params()
        except AdapterError:
            raise AdapterError(f"layer '{self.name}': {type(self.spec).__name__} needs its input shape to list its parameters") from None

    def _resolve_grads(self, declared: Mapping[str, str] | None) -> dict[str, Ref]:
        declared = dict(declared or {})
        out = {}
        for local, ref in self.params.items():
            if local in declared:
                out[local] = Ref(declared[local])
            else:
                # gradients usually appear only after the first backward: resolve then
                out[local] = None  # type: ignore[assignment]
        return out

    def _param_names(self) -> list[str]:
        if self.params is None:  # lazy: the parameters appear in the first forward
            if not self._forwarded:
                return []
            self._resolve()
        return list(self.params)  # type: ignore[arg-type]

    def _get_user(self, local: str) -> Any:
        if self.params is None:
            self._param_names()
        return self.params[local].get(self.obj)  # type: ignore[index]

    def _put_user(self, local: str, value: Any) -> None:
        self.params[local].set(self.obj, value)

    def _get_grad(self, local: str) -> Any:
        if (self.sgd or not self.batched) and getattr(self, "_external", False):
            raise AdapterError(
                f"layer '{self.name}': with sgd= or batched=False its gradients are recovered around its own "
                "backward call, which the network's own backward made; check this layer chained, not end to end"
            )
        if self.sgd:
            return self._sgd_grads.get(local)
        if not self.batched:
            return self._summed_grads.get(local)
        return self._read_grad(local)

    def _read_grad(self, local: str) -> Any:
        ref = self.grads.get(local)
        if ref is None:
            tried = _grad_candidates(self.params[local].path)
            found = [Ref(c) for c in tried if Ref(c).exists(self.obj)]
            if not found:
                raise AdapterError(
                    f"layer '{self.name}': cannot find the gradient of '{local}' (kept at {self.params[local]!r}) after "
                    f"backward (tried {', '.join(tried[:6])} ...); {sgd_hint(self, local)}pass grads={{'{local}': \"dW\"}}"
                )
            ref = self.grads[local] = found[0]
        try:
            return ref.get(self.obj)
        except (AttributeError, KeyError, IndexError, TypeError):
            raise AdapterError(f"layer '{self.name}': gradient of '{local}' declared at {ref!r} is missing after backward") from None

    def _call_forward(self, x: np.ndarray) -> Any:
        self._external, self._sgd_grads, self._summed_grads = False, {}, {}
        if not self.batched:  # code written for one example at a time: loop, then stack
            self._x_user = x
            raw = [self._forward_one(self._drop_channel(xi)) for xi in x]
            # channel_axis=False is about the input; the output keeps its channels unless the
            # code returned (H, W) too, and the upstream gradient must match what it returned
            self._flat_output = not self.channel_axis and np.ndim(raw[0]) == 2
            ys = [self._read_returned(self._add_channel(y), "forward output") for y in raw]
            # in the examples' own dtype (exact: the values came from it), so the output's dtype is checked
            return np.stack([y for y, _ in ys]).astype(ys[0][1].dtype)
        y = self._forward_one(x)
        return y

    def _forward_one(self, x: np.ndarray) -> Any:
        y = call_user(getattr(self.obj, self._forward_name), x, *self.forward_args, **self.forward_kwargs)
        self._forwarded = True
        return y

    def _backward_one(self, dy: np.ndarray) -> Any:
        if self.zero_grad:  # code that accumulates gradients until told to flush them
            call_user(getattr(self.obj, self.zero_grad))
        return call_user(getattr(self.obj, self._backward_name), dy, *self.backward_args, **self.backward_kwargs)

    def _call_backward(self, dy: np.ndarray) -> Any:
        if not self.batched:
            # per example: forward again (the layer caches one example), backward, and sum
            # the parameter gradients as a batched layer would
            dxs, total, kinds = [], {}, {}
            for xi, dyi in zip(self._x_user, dy):
                self._forward_one(self._drop_channel(xi))
                dyi = self._drop_channel(dyi) if getattr(self, "_flat_output", True) else dyi
                dx, kinds["input"] = self._read_returned(self._add_channel(self._backward_one(dyi)),
                                                         "backward's input gradient")
                dxs.append(dx)
                for k in self._param_names():
                    if k in self._trainable():
                        g = self._read_grad(k)
                        if g is None:
                            raise ValueFinding(f"layer '{self.name}': no gradient for parameter '{k}' after the "
                                               f"backward of example {len(dxs) - 1}")
                        g, kinds[k] = self._read_returned(g, f"gradient of '{k}'")
                        total[k] = g if k not in total else total[k] + g
            self._summed_grads = total
            self._grad_dtypes = {k: kinds[k].dtype for k in total}  # summed here in float64: report the code's dtype
            return np.stack(dxs).astype(kinds["input"].dtype)  # exact: the values came from that dtype
        if not self.sgd:
            return self._backward_one(dy)
        # gradients exposed only through an in-place SGD step: recover them from the weight
        # change (w_before - w_after) / lr, then put the weights back exactly
        method, lr = self.sgd
        names = [k for k in self._param_names() if k in self._trainable()]
        with self.preserved():
            before = {k: to_float64(self._get_user(k), self._what(k))[0] for k in names}
            dx = self._backward_one(dy)
            if method:  # None: the backward itself applies the update
                call_user(getattr(self.obj, method))
            self._sgd_grads = {k: (before[k] - to_float64(self._get_user(k), self._what(k))[0]) / lr for k in names}
            self._grad_dtypes = dict.fromkeys(names)  # computed here, in float64: not a dtype the code returned
        return dx

    def _drop_channel(self, a: np.ndarray) -> np.ndarray:
        """One example as the user's code wants it: without its channel axis if declared."""
        if self.channel_axis or a.ndim != 3:
            return a
        axis = 0 if self.layout.data == "NCHW" else 2
        if a.shape[axis] != 1:
            raise AdapterError(f"layer '{self.name}': channel_axis=False needs 1 channel, the input has {a.shape[axis]}")
        return a.squeeze(axis)

    def _add_channel(self, a: Any) -> Any:
        if self.channel_axis or np.ndim(a) != 2:
            return a
        return np.expand_dims(np.asarray(a), 0 if self.layout.data == "NCHW" else 2)

OPTIONS: dict[str, Any] = {
    "forward_args": (),  # extra positional arguments every forward needs (a training flag ...)
    "forward_kwargs": {},  # extra keyword arguments, e.g. {"training": True}
    "backward_args": (),  # extra positional arguments every backward needs (a learning rate ...)
    "backward_kwargs": {},
    "lazy": False,  # parameters are created by the first forward
    "zero_grad": None,  # name of the method that clears accumulated gradients
    "sgd": None,  # (method, lr): gradients only visible through an in-place SGD step
    "grad_scale": None,  # "batch" (gradients already divided by N) or a number to multiply by
    "dtype": None,  # dtype to hand the user's code when it has no parameters to tell
    "batched": True,  # False: the code takes one example at a time, (C, H, W) or (H, W, C)
    "channel_axis": True,  # False (with batched=False): single-channel examples as (H, W)
    "inplace": None,  # writes declared deliberate: {"input", "upstream", "params"} (see harness.adapters.effects)
}


def wrap_layer(obj: Any, spec: Layer | None = None, *, params: Mapping[str, str] | None = None,
               grads: Mapping[str, str] | None = None, layout: Layout = CANONICAL,
               forward: str = "forward", backward: str = "backward", name: str | None = None,
               **options: Any) -> ObjectLayer:
    """Wrap an object-style layer: ``obj.forward(x) -> y``, ``obj.backward(dy) -> dx``.

    params / grads: where each canonical parameter and its gradient live on ``obj``, e.g.
    ``params={"weight": "W", "bias": "b"}``, ``grads={"weight": "dW"}`` or
    ``params={"weight": "params['w']"}``. Undeclared ones are looked for under the usual
    names (``W``/``w``/``weight``/``kernel``..., gradients ``dW``/``grads['W']``...).
    layout: the user's conventions (:class:`Layout`); spec: the spec layer it implements
    (``None``: no reference, finite differences only).

    Options for what real code does (see :data:`OPTIONS`): ``forward_args`` /
    ``forward_kwargs`` (a required training flag), ``lazy=True`` (parameters created on the
    first forward), ``zero_grad="zero_grad"`` (gradients accumulate until that method is
    called; it is called before every backward), ``sgd=("step", lr)`` (gradients only
    visible through an in-place update, by that method or, with ``None``, inside backward;
    recovered as the weight change over lr, and the weights restored bit for bit),
    ``backward_args`` / ``backward_kwargs``, ``batched=False`` (one example at a time; with
    ``channel_axis=False`` single-channel images as (H, W)), ``grad_scale="batch"`` (gradients already divided by the batch size).
    ``inplace={"input", "upstream", "params"}``: writes that are deliberate, not findings — the
    forward (or the backward, through its cache) writing into the forward's input, the backward
    into its upstream gradient, either changing a trainable parameter; any subset (an unknown
    name is an AdapterError). Undeclared, each is a failing finding on the side that wrote.
    """
    if spec is None and params is None:
        params = {}
    return ObjectLayer(obj, spec, params=params, grads=grads, layout=layout, forward=forward, backward=backward,
                       name=name, options=options)


from .missing import lazy_hint, sgd_hint  # noqa: E402  (the hints of two error messages above)
