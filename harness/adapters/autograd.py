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
from .autograd_calls import NoGraph, jax_pair, torch_pair, watched
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


def refuse_without_spec(obj: Any) -> None:
    """Custom autograd code given to a check without a spec: an AdapterError saying to give
    one (inference reads numpy code; it cannot tell what a Function or module computes)."""
    if routes_to_autograd(obj):
        label = getattr(obj, "__name__", type(obj).__name__)
        raise AdapterError(
            f"layer 'layer': {label} is custom autograd code; checking it needs the spec layer it implements, e.g. "
            f"check_layer({label}, harness.Linear('fc', 16, 8), params={{'weight': w, 'bias': b}}) (checks without a "
            "spec infer it from numpy code)"
        )


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
    or any callable over torch tensors / jax arrays. ``params``: for a function, the user's
    tensors in the order it takes them after the input, by the spec's local names
    (``{"weight": w, "bias": b}``) or as a sequence in the spec's order; for a module or
    object, where each lives (``{"weight": "fc.weight"}``), or None for the usual names.
    ``args`` / ``kwargs``: what follows them in the call (a stride, a flag). ``output``: the
    element of a tuple output that is checked. ``options``: those of
    :func:`~harness.adapters.function_layer.wrap_functions` (``dtype=``, ``inplace=`` ...).
    Input ``x`` batch first, canonical unless ``layout`` says otherwise.

    Raises :class:`~harness.adapters.refs.AdapterError` for what cannot be called this way
    (a Function instance, places given for a function's parameters, numpy parameters for a
    torch Function, a module parameter not found, a framework that cannot be told)."""
    owner = f"layer '{name or (spec.name if spec is not None else 'layer')}'"
    kind = autograd_kind(fn)  # once: each reading walks the frameworks' classes
    _refuse_call(fn, kind, output, options, owner)
    holder: list[AutogradLayer] = []
    given: Mapping[str, Any] | Sequence[Any]
    if kind == "module" or (kind is None and forward_only(fn)):
        call, given, framework = _object_call(fn, spec, params, owner, holder)
    else:
        call, given, framework = _function_call(fn, kind, params, owner)
    framework = framework or _framework(fn, given, options, owner)
    _refuse_given(fn, spec, given, framework, owner)
    if framework == "torch":
        forward, backward = torch_pair(call, holder, output, owner)
    else:
        forward, backward = jax_pair(call, holder, output, owner)
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


def _refuse_call(fn: Any, kind: str | None, output: Any, options: Mapping[str, Any], owner: str) -> None:
    """What cannot be wrapped whatever the parameters (``kind``: :func:`autograd_kind` of
    ``fn``): a class that is not a Function, a Function instance, an ``output=`` that is no
    index, an unknown option."""
    if isinstance(fn, type) and kind is None and hasattr(fn, "apply"):
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


def _refuse_given(fn: Any, spec: Layer | None, given: Any, framework: str, owner: str) -> None:
    """Parameters a function cannot be called with: none for a spec that has some (a bare
    Function in a network's mapping), or arrays of another framework (numpy for a Function)."""
    label = getattr(fn, "__name__", type(fn).__name__)
    values = list(given.values()) if isinstance(given, Mapping) else list(given)
    trainable = [k for k, t in spec_locals(spec).items() if t] if spec is not None else []
    if not values and trainable:
        raise AdapterError(
            f"{owner}: {label} takes its parameters as arguments and none were given: pass "
            f"params={{{', '.join(f'{k!r}: ...' for k in trainable)}}} with your tensors in the order it takes them "
            f"(in a network's mapping, wrap it first: wrap_autograd({label}, spec_layer, params))"
        )
    prefix = ("torch",) if framework == "torch" else ("jax", "jaxlib")
    foreign = [type(v).__name__ for v in values if hasattr(v, "shape") and not type(v).__module__.startswith(prefix)]
    if foreign:
        convert = "torch.from_numpy(w)" if framework == "torch" else "jnp.asarray(w)"
        raise AdapterError(
            f"{owner}: {label} runs on {framework} but its parameters include {foreign[0]} arrays; pass "
            f"{framework} arrays ({convert}): they are what it is handed during training"
        )


def _has_arrays(given: Mapping[str, Any] | Sequence[Any]) -> bool:
    values = given.values() if isinstance(given, Mapping) else given
    return any(hasattr(v, "shape") for v in values)


def _function_call(
    fn: Any, kind: str | None, params: Mapping[str, Any] | Sequence[Any] | None, owner: str
) -> tuple[Callable[..., Any], Mapping[str, Any] | Sequence[Any], str | None]:
    """The call of a function-like ``fn`` (its parameters are arguments; ``kind``: its
    :func:`autograd_kind`) and the framework that kind fixes (None: read off the arrays)."""
    if not callable(fn):
        raise AdapterError(f"{owner}: cannot call {type(fn).__name__}: expected a Function, module or callable")
    values = list(params.values()) if isinstance(params, Mapping) else list(params or ())
    if any(isinstance(v, str) for v in values):
        raise AdapterError(
            f"{owner}: params= for a function takes the tensors themselves in the order it takes them after the "
            f"input (e.g. {{'weight': w, 'bias': b}}), got a place {next(v for v in values if isinstance(v, str))!r}; "
            "places are for a module or object"
        )
    if kind == "function":
        return watched(fn).apply, params or {}, "torch"
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


__all__ = [
    "AutogradLayer",
    "NoGraph",
    "autograd_kind",
    "forward_only",
    "refuse_without_spec",
    "routes_to_autograd",
    "wrap_autograd",
]
