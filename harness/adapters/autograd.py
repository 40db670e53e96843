"""Custom autograd code, checked through its framework's own autograd.

A handwritten backward outside teaching code lives in a ``torch.autograd.Function``, a
``torch.library`` custom op with a registered autograd formula, or a ``jax.custom_vjp``.
trigrad never calls that backward by hand: it runs the forward with the input and the
parameters as fresh leaves, and asks ``torch.autograd.grad`` (or the ``jax.vjp`` pullback)
for the gradients, so the framework routes them through the user's backward exactly as
training would, saved tensors, ``ctx.needs_input_grad`` and all.

The result is a :class:`~harness.adapters.function_layer.FunctionLayer` whose forward and
backward are that autograd call: every option, finding and diagnosis of a function pair
applies (copies handed, the user's tensors never written, layouts, dtypes and devices
followed). What can be wrapped (:func:`autograd_kind` tells them apart):

* a ``torch.autograd.Function`` subclass: ``Fn.apply(x, *params, *args, **kwargs)``;
* a ``torch.nn.Module`` that defines no ``backward`` of its own (one using a Function
  inside), or any object whose class has a ``forward`` but no ``backward``: its forward
  runs with the parameters it holds swapped for the check's leaves (``torch.func.functional_call``
  for a module), found at the usual names or at ``params={"weight": "fc.weight"}``;
* a ``torch.library`` custom op (``torch.ops.ns.name`` or what ``@torch.library.custom_op``
  returns), a ``jax.custom_vjp`` / ``jax.custom_jvp`` function, or any callable over torch
  tensors or jax arrays: ``fn(x, *params, *args, **kwargs)``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..spec import Layer
from .function_layer import FunctionLayer
from .layouts import CANONICAL, Layout
from .module_params import locate_params, spec_locals
from .options import SHARED
from .refs import AdapterError, Ref


class AutogradLayer(FunctionLayer):
    """A function pair whose backward is the framework's autograd (``framework``: "torch" or
    "jax"); ``autograd_notes`` holds what the autograd engine did that the code did not (a
    gradient of the broadcast shape it summed down), said on the report's entry."""

    framework: str = "torch"
    autograd_notes: list[str]

    def notes(self) -> list[str]:
        return [*super().notes(), *self.autograd_notes]


def autograd_kind(obj: Any) -> str | None:
    """``"function"`` (a ``torch.autograd.Function`` subclass), ``"module"`` (a torch
    module without a ``backward`` method of its own), ``"op"`` (a torch custom op), ``"jax"``
    (a ``jax.custom_vjp`` / ``jax.custom_jvp`` function); None for anything else. Never
    imports a framework: an object of one exists only once it is imported (a framework still
    importing, in the warm server's background thread, has made none of the user's objects)."""
    torch = sys.modules.get("torch")
    function, module = _attr(torch, "autograd.Function"), _attr(torch, "nn.Module")
    if function is not None and module is not None:
        if isinstance(obj, type) and issubclass(obj, function):
            return "function"
        if isinstance(obj, module):
            return None if callable(getattr(type(obj), "backward", None)) else "module"
        if _is_custom_op(obj, torch):
            return "op"
    jax = sys.modules.get("jax")
    kinds = tuple(k for k in (_attr(jax, "custom_vjp"), _attr(jax, "custom_jvp")) if isinstance(k, type))
    if kinds and isinstance(obj, kinds):
        return "jax"
    return None


def _attr(module: Any, path: str) -> Any:
    """``module.<path>``, None when the module is absent or not yet through its import."""
    for name in path.split("."):
        module = getattr(module, name, None)
    return module


def _is_custom_op(obj: Any, torch: Any) -> bool:
    names = ("_ops.OpOverloadPacket", "_ops.OpOverload", "_library.custom_ops.CustomOpDef")
    kinds = tuple(k for k in (_attr(torch, n) for n in names) if isinstance(k, type))
    return bool(kinds) and isinstance(obj, kinds)


def forward_only(obj: Any) -> bool:
    """An object whose class has a ``forward`` and no ``backward`` (checked through autograd)."""
    return callable(getattr(type(obj), "forward", None)) and not callable(getattr(type(obj), "backward", None))


def routes_to_autograd(obj: Any) -> bool:
    """Whether :func:`~harness.adapters.object_layer.wrap_layer` hands ``obj`` to
    :func:`wrap_autograd`: a kind :func:`autograd_kind` knows, or a forward-only object
    holding torch tensors or jax arrays (one whose forward calls a Function)."""
    function = _attr(sys.modules.get("torch"), "autograd.Function")
    if autograd_kind(obj) is not None or (isinstance(function, type) and isinstance(obj, function)):
        return True  # an instance of a Function: wrap_autograd says to pass the class
    if isinstance(obj, type) or not forward_only(obj):
        return False
    held = vars(obj).values() if hasattr(obj, "__dict__") else ()
    return any(type(v).__module__.startswith(("torch", "jax", "jaxlib")) and hasattr(v, "shape") for v in held)


def wrap_autograd(
    fn: Any,
    spec: Layer | None = None,
    params: Mapping[str, Any] | Sequence[Any] | None = None,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    order: Sequence[str] | None = None,
    layout: Layout = CANONICAL,
    name: str | None = None,
    output: int = 0,
    **options: Any,
) -> AutogradLayer:
    """Wrap custom autograd code; its gradients come from the framework's own autograd.

    ``fn``: a ``torch.autograd.Function`` subclass (called as ``fn.apply``), a torch module
    or forward-only object (its own parameters), a torch custom op, a ``jax.custom_vjp``
    function or any callable over torch tensors / jax arrays. ``params``: for a function,
    the user's tensors in the order it takes them after the input, as a mapping by the
    spec's local names (``{"weight": w, "bias": b}``, insertion order = call order) or a
    sequence in the spec's order; for a module or object, where each lives on it
    (``{"weight": "fc.weight"}``), or None to look at the usual names (``weight``, ``W``,
    ``w``, ``bias``, ``b`` ...). ``args`` / ``kwargs``: what follows them in the call
    (a stride, a flag). ``output``: which element of a tuple output is the layer's output.
    ``options``: those of :func:`~harness.adapters.function_layer.wrap_functions`
    (``dtype=``, ``layout=``, ``inplace=`` ...). Input ``x`` as the spec says (batch first,
    canonical unless ``layout`` says otherwise); the gradient the code returns for it and
    for each parameter is compared as a function pair's would be.

    Raises :class:`~harness.adapters.refs.AdapterError` for what cannot be called this
    way: a Function given an instance, parameters given as places for a function, a module
    parameter not found, a framework that cannot be told."""
    owner = f"layer '{name or (spec.name if spec is not None else 'layer')}'"
    if isinstance(fn, type) and autograd_kind(fn) is None and hasattr(fn, "apply"):
        raise AdapterError(f"{owner}: {fn.__name__} is not a torch.autograd.Function subclass")
    function = _attr(sys.modules.get("torch"), "autograd.Function")
    if isinstance(function, type) and isinstance(fn, function):
        raise AdapterError(
            f"{owner}: got an instance of {type(fn).__name__}; pass the class itself (a Function is called as "
            f"{type(fn).__name__}.apply)"
        )
    if not isinstance(output, int) or isinstance(output, bool) or output < 0:
        raise AdapterError(f"{owner}: output= takes the index of the output to check (0, 1 ...), got {output!r}")
    if unknown := sorted(set(options) - set(SHARED)):
        raise AdapterError(
            f"{owner}: unknown option(s) {unknown}; known: {sorted([*SHARED, 'args', 'kwargs', 'order', 'output'])}"
        )
    holder: list[AutogradLayer] = []
    given: Mapping[str, Any] | Sequence[Any]
    if autograd_kind(fn) == "module" or (autograd_kind(fn) is None and forward_only(fn)):
        call, given, framework = _object_call(fn, spec, params, owner, holder)
    else:
        call, given, framework = _function_call(fn, params, owner)
    framework = framework or _framework(fn, given, options, owner)
    if framework == "torch":
        forward, backward = _torch_pair(call, holder, output, owner)
    else:
        forward, backward = _jax_pair(call, holder, output, owner)
    if options.get("array_type") is None and options.get("dtype") is None and not _has_arrays(given):
        options["array_type"] = framework  # parameter-free: nothing else tells the array type
    layer = AutogradLayer(
        forward,
        backward,
        spec,
        given,
        args=args,
        kwargs=dict(kwargs or {}),
        order=order,
        layout=layout,
        name=name,
        options=options,
    )
    holder.append(layer)
    layer.framework, layer.autograd_notes = framework, []
    return layer


def _has_arrays(given: Mapping[str, Any] | Sequence[Any]) -> bool:
    values = given.values() if isinstance(given, Mapping) else given
    return any(hasattr(v, "shape") for v in values)


def _function_call(
    fn: Any, params: Mapping[str, Any] | Sequence[Any] | None, owner: str
) -> tuple[Callable[..., Any], Mapping[str, Any] | Sequence[Any], str | None]:
    """The call of a function-like ``fn`` (its parameters are arguments) and the framework
    its kind fixes (None: read off the arrays)."""
    if not callable(fn):
        raise AdapterError(f"{owner}: cannot call {type(fn).__name__}: expected a Function, module or callable")
    values = list(params.values()) if isinstance(params, Mapping) else list(params or ())
    if any(isinstance(v, str) for v in values):
        raise AdapterError(
            f"{owner}: params= for a function takes the tensors themselves in the order it takes them after the "
            f"input (e.g. {{'weight': w, 'bias': b}}), got a place {next(v for v in values if isinstance(v, str))!r}; "
            "places are for a module or object"
        )
    kind = autograd_kind(fn)
    if kind == "function":
        return _watched(fn).apply, params or {}, "torch"
    return fn, params or {}, "jax" if kind == "jax" else ("torch" if kind == "op" else None)


def _object_call(
    obj: Any, spec: Layer | None, params: Any, owner: str, holder: list[AutogradLayer]
) -> tuple[Callable[..., Any], dict[str, Any], str | None]:
    """A module's (or forward-only object's) forward as a function of the input and its
    parameters: the check's leaves swapped in for the call, the user's own put back after."""
    if params is not None and (not isinstance(params, Mapping) or not all(isinstance(v, str) for v in params.values())):
        raise AdapterError(
            f"{owner}: params= for {type(obj).__name__} names where each parameter lives on it "
            "(e.g. {'weight': 'fc.weight'}), got values that are not strings"
        )
    if spec is None:
        raise AdapterError(f"{owner}: wrapping {type(obj).__name__} needs the spec layer it implements")
    paths = locate_params(obj, spec_locals(spec), dict(params or {}), owner)
    found = {local: Ref(path).get(obj) for local, path in paths.items()}
    torch: Any = sys.modules.get("torch")
    is_module = autograd_kind(obj) == "module"

    def call(x: Any, *values: Any, **kw: Any) -> Any:
        names = holder[0]._positional
        swapped = dict(zip(names, values[: len(names)]))
        rest = values[len(names) :]
        if is_module:
            return torch.func.functional_call(obj, {paths[k]: v for k, v in swapped.items()}, (x, *rest), kw)
        own = {k: Ref(paths[k]).get(obj) for k in swapped}
        try:
            for k, v in swapped.items():
                Ref(paths[k]).set(obj, v)
            return obj.forward(x, *rest, **kw)
        finally:
            for k, v in own.items():
                Ref(paths[k]).set(obj, v)

    family = "torch" if is_module else None
    return call, found, family


def _framework(fn: Any, given: Mapping[str, Any] | Sequence[Any], options: Mapping[str, Any], owner: str) -> str:
    """torch or jax, read off the parameters' array type, else the declared ``array_type=`` /
    ``dtype=``; an AdapterError when nothing tells."""
    values = given.values() if isinstance(given, Mapping) else given
    for v in values:
        module = type(v).__module__
        if module.startswith("torch"):
            return "torch"
        if module.startswith(("jax", "jaxlib")):
            return "jax"
    declared = options.get("array_type") or type(options.get("dtype")).__module__.split(".")[0]
    if declared in ("torch", "jax"):
        return str(declared)
    if options.get("dtype") is not None and "jax" in repr(options.get("dtype")):
        return "jax"
    raise AdapterError(
        f"{owner}: cannot tell whether {getattr(fn, '__name__', type(fn).__name__)} runs on torch or jax: "
        "its parameters are not torch tensors or jax arrays; pass array_type='torch' or 'jax'"
    )


def _first(out: Any, output: int, owner: str) -> Any:
    """The checked output of a forward that may return a tuple (``output``: its index)."""
    if isinstance(out, (tuple, list)):
        if output >= len(out):
            raise AdapterError(f"{owner}: output={output}, but the forward returned {len(out)} values")
        return out[output]
    if output:
        raise AdapterError(f"{owner}: output={output}, but the forward returned one value")
    return out


class NoGraph(RuntimeError):
    """The forward's output carries no autograd graph: nothing can reach the user's backward."""


def _torch_pair(call: Callable[..., Any], holder: list[AutogradLayer], output: int, owner: str) -> tuple[Any, Any]:
    """A function pair over torch tensors: the forward makes the input and the trainable
    parameters leaves and keeps the graph; the backward is ``torch.autograd.grad``."""

    def forward(x: Any, *rest: Any, **kw: Any) -> tuple[Any, Any]:
        import torch

        layer = holder[0]
        names, trainable = layer._positional, set(layer._trainable_names())
        xl = _torch_leaf(x) if x.is_floating_point() and layer.input_grad else x
        values = [
            _torch_leaf(v) if k in trainable and getattr(v, "is_floating_point", lambda: False)() else v
            for k, v in zip(names, rest)
        ]
        with torch.enable_grad():
            y = _first(call(xl, *values, *rest[len(names) :], **kw), output, owner)
        leaves = {k: v for k, v in zip(names, values) if k in trainable}
        return y, (y, xl, leaves, {"input": x, **dict(zip(names, values))})

    def backward(dout: Any, cache: Any) -> Any:
        import torch

        y, xl, leaves, passed = cache
        if not isinstance(y, torch.Tensor) or y.grad_fn is None:
            raise NoGraph(
                f"{owner}: the forward's output carries no autograd graph (requires_grad=False), so no backward "
                "can be reached: it detached the result, ran under torch.no_grad(), or went through numpy"
            )
        wrt = ([xl] if xl.requires_grad else []) + list(leaves.values())
        got = torch.autograd.grad(y, wrt, grad_outputs=dout.to(y.dtype), retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for g, w in zip(got, wrt)]  # unused: a zero gradient
        _broadcast_notes(holder[0], call, passed)
        dx = grads.pop(0) if xl.requires_grad else None
        return _returned(dx, dict(zip(leaves, grads)))

    return forward, backward


def _watched(fn: Any) -> Any:
    """``fn`` with its backward's returned shapes recorded (on the class, read by
    :func:`_broadcast_notes`): torch's engine sums a gradient of a broadcast shape down to its
    input's without a word, which another caller of the same formula would not."""

    def backward(ctx: Any, *grads: Any) -> Any:
        out = fn.backward(ctx, *grads)
        outs = out if isinstance(out, tuple) else (out,)
        watched.returned = [None if o is None else tuple(getattr(o, "shape", ())) for o in outs]
        return out

    watched: Any = type(fn.__name__, (fn,), {"backward": staticmethod(backward), "returned": None})
    return watched


def _broadcast_notes(layer: Any, call: Any, wrt: dict[str, Any]) -> None:
    """A note per gradient a Function's backward returned in another shape than its input
    (``wrt``: what ``apply`` was handed, by name in call order, ``"input"`` first)."""
    returned = getattr(getattr(call, "__self__", None), "returned", None)
    if not returned:
        return
    for (name, leaf), shape in zip(wrt.items(), returned):
        if shape is not None and hasattr(leaf, "shape") and shape != tuple(leaf.shape):
            note = (
                f"note: {name}: the backward returned a gradient of shape {shape} for a {tuple(leaf.shape)} input; "
                "torch's autograd summed it over the broadcast dimensions (right here, but the formula is missing that "
                "reduction for any other caller)"
            )
            if note not in layer.autograd_notes:
                layer.autograd_notes.append(note)


def _returned(dx: Any, grads: dict[str, Any]) -> Any:
    """What a function pair's backward returns: ``(dx, {name: grad})``, or ``dx`` alone for
    a layer without trainable parameters (a pair of dx and an empty dict would read as dx)."""
    return (dx, grads) if grads else dx


def _torch_leaf(t: Any) -> Any:
    return t.detach().requires_grad_(True)


def _jax_pair(call: Callable[..., Any], holder: list[AutogradLayer], output: int, owner: str) -> tuple[Any, Any]:
    """A function pair over jax arrays: the forward is ``jax.vjp`` over the input and the
    trainable parameters; the backward its pullback."""

    def forward(x: Any, *rest: Any, **kw: Any) -> tuple[Any, Any]:
        import jax
        import jax.numpy as jnp

        layer = holder[0]
        names, trainable = layer._positional, set(layer._trainable_names())
        differentiated = [k for k in names if k in trainable]
        with_x = layer.input_grad and jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
        fixed = dict(zip(names, rest))
        extra = rest[len(names) :]

        def f(*diff: Any) -> Any:
            xs, ps = (diff[0], diff[1:]) if with_x else (x, diff)
            vals = {**fixed, **dict(zip(differentiated, ps))}
            return _first(call(xs, *(vals[k] for k in names), *extra, **kw), output, owner)

        primals = ([x] if with_x else []) + [fixed[k] for k in differentiated]
        y, pullback = jax.vjp(f, *primals)
        return y, (pullback, with_x, differentiated, y)

    def backward(dout: Any, cache: Any) -> Any:
        import jax.numpy as jnp

        pullback, with_x, differentiated, y = cache
        cts = list(pullback(jnp.asarray(dout, dtype=y.dtype)))
        dx = cts.pop(0) if with_x else None
        return _returned(dx, dict(zip(differentiated, cts)))

    return forward, backward


__all__ = ["AutogradLayer", "NoGraph", "autograd_kind", "forward_only", "routes_to_autograd", "wrap_autograd"]
