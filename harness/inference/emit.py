"""What inference found, as Python a user can paste to pin it (``trigrad infer`` prints it):
the spec in the short form users write (``tg.Conv2d("conv", 3, 8, 3, stride=2, padding=1)``,
only non-default arguments), the layout when it is not the default, and the wrap call
(:func:`~harness.wrap_layer`, :func:`~harness.wrap_functions` or
:func:`~harness.wrap_network` with one ``wrap_layer`` per layer object). A comment line
states the inference's status and any doubt (``# ambiguous: ...``), so a pasted guess is
never mistaken for a confirmed answer. Executing the source with ``obj`` bound to the user's
object (and, for a function pair, its functions and ``params`` in scope) rebuilds what
:meth:`~harness.inference.result.Inference.wrap` builds.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

import numpy as np

from ..adapters.layouts import Layout
from ..spec import Layer
from .result import Inference, LayerInference

WIDTH = 100  # a call longer than this goes one argument per line
_NAMED_ELSEWHERE = ("params", "layout", "name")  # wrap keywords the emitter writes itself


# --------------------------------------------------------------------------- the spec


def spec_source(layer: Layer, indent: str = "") -> str:
    """``layer`` as the call a user writes: required fields positional, the others as
    keywords only when they differ from the default, pairs of equal ints as one int;
    containers one child per line."""
    kwargs = _short_kwargs(layer)
    args = []
    for f in _fields(layer):
        if f.name not in kwargs:
            continue
        value = kwargs[f.name]
        text = _children(value, indent) if _is_layers(value) else _value(value)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        args.append(text if required else f"{f.name}={text}")  # required fields come first
    return f"tg.{type(layer).__name__}({', '.join(args)})"


def _short_kwargs(layer: Layer) -> dict[str, Any]:
    """The fields that must be written to rebuild ``layer``: every required one, and each
    other one whose removal would change the spec; a pair (k, k) written as k when that
    rebuilds the same spec (the spec normalises ``kernel_size=3`` to ``(3, 3)``)."""
    cls = type(layer)
    kw = {f.name: getattr(layer, f.name) for f in _fields(layer) if f.init}
    for key, value in list(kw.items()):
        for short in _shorter(value):
            if _rebuilds(cls, {**kw, key: short}, layer):
                kw[key] = short
                break
    for f in _fields(layer):
        if not f.init or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            continue
        trial = {k: v for k, v in kw.items() if k != f.name}
        if _rebuilds(cls, trial, layer):
            kw = trial
    return kw


def _fields(layer: Any) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(layer)


def _shorter(value: Any) -> list[Any]:
    """Simpler spellings of a normalised field, simplest first: ``((1, 1), (1, 1))`` -> ``1``,
    ``(1, 1)``; ``(3, 3)`` -> ``3``."""
    if not isinstance(value, tuple) or not value:
        return []
    firsts = [v[0] for v in value if isinstance(v, tuple) and v and len(set(v)) == 1]
    out = [tuple(firsts)] if len(firsts) == len(value) else []
    if len(set(value)) == 1:
        out.insert(0, value[0])
    return [y for x in out for y in (*_shorter(x), x)]


def _rebuilds(cls: type, kw: dict[str, Any], layer: Layer) -> bool:
    try:
        return bool(cls(**kw) == layer)
    except Exception:  # a field the spec cannot leave out
        return False


def _is_layers(value: Any) -> bool:
    return isinstance(value, Layer) or (
        isinstance(value, (tuple, list)) and bool(value) and all(isinstance(v, Layer) for v in value)
    )


def _children(value: Any, indent: str) -> str:
    if isinstance(value, Layer):
        return spec_source(value, indent)
    inner = indent + "    "
    items = [spec_source(v, inner) for v in value]
    one_line = "[" + ", ".join(items) + "]"
    if len(items) == 1 and len(one_line) + len(indent) < WIDTH:
        return one_line
    return "[\n" + "".join(f"{inner}{item},\n" for item in items) + f"{indent}]"


def _value(v: Any) -> str:
    """A literal's source: floats by their shortest round-trip repr, tuples and dicts as such."""
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (bool, int, float)) or v is None:
        return repr(v)
    if isinstance(v, (tuple, list)):
        body = ", ".join(_value(x) for x in v) + ("," if isinstance(v, tuple) and len(v) == 1 else "")
        return f"({body})" if isinstance(v, tuple) else f"[{body}]"
    if isinstance(v, (set, frozenset)):
        return "{" + ", ".join(_value(x) for x in sorted(v, key=repr)) + "}" if v else "set()"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_value(k)}: {_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def layout_source(layout: Layout) -> str:
    """``tg.Layout(...)`` with only the fields that differ from the default."""
    default = Layout()
    parts = [
        f"{f.name}={_value(getattr(layout, f.name))}"
        for f in dataclasses.fields(layout)
        if getattr(layout, f.name) != getattr(default, f.name)
    ]
    return f"tg.Layout({', '.join(parts)})"


# --------------------------------------------------------------------------- the wrap calls


class _Names:
    """Source for the values a wrap call takes: literals as themselves, functions by their
    ``__name__`` (a method of ``obj`` as ``obj.name``), numpy dtypes as ``np.float32``; the
    rest get a placeholder name and a comment saying what to bind it to."""

    def __init__(self, obj: str, owner: Any = None) -> None:
        self.obj, self.owner = obj, owner
        self.needs_numpy = False
        self.unbound: list[str] = []

    def __call__(self, v: Any, placeholder: str) -> str:
        if getattr(v, "__self__", None) is not None and v.__self__ is self.owner and hasattr(v, "__name__"):
            return f"{self.obj}.{v.__name__}"
        if callable(v) and hasattr(v, "__name__") and not isinstance(v, type):
            return str(v.__name__)
        if (isinstance(v, type) and issubclass(v, np.generic)) or isinstance(v, np.dtype):
            self.needs_numpy = True
            return f"np.{np.dtype(v).name}"
        text = _value(v)
        try:
            ast.literal_eval(text)
            return text
        except (ValueError, SyntaxError):
            self.unbound.append(f"{placeholder}: {type(v).__name__}{_shape(v)}")
            return placeholder


def _shape(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f" {v.shape} {v.dtype}"
    if isinstance(v, (list, tuple)) and all(isinstance(a, np.ndarray) for a in v):
        return " of " + ", ".join(f"{a.shape} {a.dtype}" for a in v)
    if isinstance(v, dict) and all(isinstance(a, np.ndarray) for a in v.values()):
        return " of " + ", ".join(f"{k}: {a.shape}" for k, a in v.items())
    return ""


def _call(func: str, args: list[str], indent: str = "") -> str:
    one = f"{func}({', '.join(args)})"
    if len(indent) + len(one) <= WIDTH:
        return one
    inner = indent + "    "
    return f"{func}(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{indent})"


def _layer_call(li: LayerInference, target: str, spec: str, layout: str | None, names: _Names, indent: str) -> str:
    """``tg.wrap_layer(target, spec, ...)`` or ``tg.wrap_functions(fwd, bwd, spec, params, ...)``."""
    kw = dict(li.wrap_kwargs)
    kw.pop("path", None)
    if isinstance(li.target, tuple):
        fwd, bwd = li.target
        params = kw.pop("params", ())
        args = [names(fwd, "forward"), names(bwd, "backward"), spec]
        if len(params):
            args.append(names(params, "params"))
        func = "tg.wrap_functions"
    else:
        args, func = [target, spec], "tg.wrap_layer"
        if li.best.params:
            args.append(f"params={_value(dict(li.best.params))}")
        if li.grads:
            args.append(f"grads={_value(dict(li.grads))}")
    if layout:
        args.append(f"layout={layout}")
    if li.name != li.spec.name:
        args.append(f"name={_value(li.name)}")
    args += [f"{k}={names(v, k)}" for k, v in kw.items() if k not in _NAMED_ELSEWHERE]
    return _call(func, args, indent)


# the layout fields that change what a leaf of each kind reads (the rest are irrelevant to it)
_RELEVANT = {
    "Conv2d": ("data", "kernel", "flip", "dilation_base"),
    "Linear": ("linear", "flatten"),
    "Flatten": ("data", "flatten"),
    "BatchNorm1d": ("flatten",),
    "LayerNorm": ("flatten",),
}


def _reads_alike(spec: Layer, a: Layout, b: Layout) -> bool:
    """Whether ``spec`` reads the user's arrays the same under layouts ``a`` and ``b`` (a ReLU
    does not care how a Linear's weight is stored): then the network's layout is written once."""
    if spec.children():
        return a == b
    fields = _RELEVANT.get(spec.kind, ("data", "flatten"))  # pools, batch norm 2d, elementwise, dropout
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def _status_lines(inference: Inference) -> list[str]:
    head = f"# trigrad inferred this ({inference.status}, {len(inference.layers)} layer(s)); paste it to pin the spec"
    lines = [head]
    for li in inference.layers:
        if li.status == "exact":
            continue
        doubt = [f.describe() for f in li.ambiguous[:3]]
        said = "; ".join([*li.why, *(f"also fits {d}" for d in doubt)]) or li.best.describe()
        lines.append(f"# {li.status}: {li.name}: {said}")
    lines += [f"# note: {n}" for n in inference.notes]
    return lines


def to_python(inference: Inference, obj: str = "obj") -> str:
    """The inferred spec, layout and wrapping of ``inference`` as Python source; ``obj`` names
    the user's object (a layer, or the network). For a function pair the functions are named by
    their ``__name__`` and the parameter arrays by ``params``. The source binds ``spec``,
    ``layout`` (when not the default) and ``wrapped`` (a layer) or ``net`` (a network)."""
    names = _Names(obj, inference.network)
    body: list[str] = []
    if inference.network is None:
        li = inference.layers[0]
        lay = li.layout if li.layout != Layout() else None
        body.append(f"spec = {spec_source(li.spec)}")
        if lay is not None:
            body.append(f"layout = {layout_source(lay)}")
        body.append(f"wrapped = {_layer_call(li, obj, 'spec', 'layout' if lay else None, names, '')}")
    else:
        body += _network_lines(inference, obj, names)
    head = _status_lines(inference) + ["import harness as tg"] + (["import numpy as np"] if names.needs_numpy else [])
    unbound = [f"# bind {u}" for u in names.unbound]
    return "\n".join([*head, *unbound, "", *body]) + "\n"


def _network_lines(inference: Inference, obj: str, names: _Names) -> list[str]:
    """``spec = tg.Sequential([...])`` and ``net = tg.wrap_network({path: wrap_layer(...)}, ...)``."""
    lay = inference.layout if inference.layout != Layout() else None
    lines = [f"spec = {spec_source(inference.spec)}"]
    if lay is not None:
        lines.append(f"layout = {layout_source(lay)}")
    entries = []
    for li in inference.layers:
        if li.target is None:
            continue  # a parameter-free step with no object of its own: the network's passes run it
        path = str(getattr(li, "path", "") or li.wrap_kwargs.get("path") or li.name)  # where the object sits
        target = f"{obj}{path if path.startswith('[') else '.' + path}"
        own = None if _reads_alike(li.spec, li.layout, inference.layout) else li.layout
        extra = {k for k in li.wrap_kwargs if k != "path"}
        if own is None and not extra and not li.best.params and not li.grads and li.name == li.spec.name:
            entries.append(f'        "{li.name}": {target},')  # wrap_network wraps it with the spec's layer
            continue
        layout = layout_source(own) if own is not None else ("layout" if lay is not None else None)
        call = _layer_call(li, target, spec_source(li.spec, "        "), layout, names, "        ")
        entries.append(f'        "{li.name}": {call},')
    args = ["{\n" + "\n".join(entries) + "\n    }" if entries else "{}", "spec"]
    if inference.forward is not None:
        args.append(f"forward={names(inference.forward, 'forward')}")
    if inference.backward is not None:
        args.append(f"backward={names(inference.backward, 'backward')}")
    if lay is not None:
        args.append("layout=layout")
        if lay.flatten == "HWC":
            args.append(f"input_shape={_value(tuple(inference.input_shape))}")
    lines.append("net = tg.wrap_network(\n" + "".join(f"    {a},\n" for a in args) + ")")
    return lines


__all__ = ["layout_source", "spec_source", "to_python"]
