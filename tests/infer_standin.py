"""A stand-in for ``harness.inference.layer.infer_layer`` in the network tests: it knows the layer
classes of the acceptance networks by class (as the real one would find them from their
parameters and forward) and returns what a correct inference gives. Layers without
parameters and with a 4-D input get a candidate under each data layout, as the real one
reports for functions that do not tell the layouts apart."""

from __future__ import annotations

from typing import Any

import numpy as np

import harness as tg
from harness.examples import lenet
from harness.inference.result import Fit, LayerInference
from realcode import composite, keras_like, nets

NHWC = tg.Layout(data="NHWC")


def _conv_hwio(o: Any, x: Any, name: str) -> tuple:
    kh, _, ci, co = o.W.shape
    return (
        tg.Conv2d(name, ci, co, kh, padding=getattr(o, "pad", 0)),
        tg.Layout(data="NHWC", kernel="HWIO"),
        {"weight": "W", "bias": "b"},
    )


def _keras_conv(o: Any, x: Any, name: str) -> tuple:
    kh, _, ci, co = o.kernel.shape
    return tg.Conv2d(name, ci, co, kh), tg.Layout(data="NHWC", kernel="HWIO"), {"weight": "kernel", "bias": "bias"}


def _in_out(o: Any, x: Any, name: str) -> tuple:
    return tg.Linear(name, *o.W.shape), tg.Layout(linear="in_out"), {"weight": "W", "bias": "b"}


def _out_in(o: Any, x: Any, name: str) -> tuple:
    return tg.Linear(name, o.W.shape[1], o.W.shape[0]), tg.Layout(), {"weight": "W", "bias": "b"}


def _conv_oihw(o: Any, x: Any, name: str) -> tuple:
    co, ci, k, _ = o.W.shape
    pad, stride = getattr(o, "pad", 1), getattr(o, "stride", 1)
    has_b = hasattr(o, "b")
    spec = tg.Conv2d(name, ci, co, k, stride=stride, padding=pad, bias=has_b)
    return spec, tg.Layout(), {"weight": "W", **({"bias": "b"} if has_b else {})}


def _bn(o: Any, x: Any, name: str) -> tuple:
    return tg.BatchNorm2d(name, len(o.gamma), eps=o.eps), tg.Layout(), {"weight": "gamma", "bias": "beta"}


def _free(kind: Any) -> Any:
    def make(o: Any, x: Any, name: str) -> tuple:
        spec = kind(name) if not isinstance(kind, tuple) else kind[0](name, *kind[1:])
        return spec, None, {}

    return make


def _leaky(o: Any, x: Any, name: str) -> tuple:
    return tg.LeakyReLU(name, o.alpha), None, {}


KNOWN: dict[type, Any] = {
    lenet.Conv2D: _conv_hwio,
    lenet.Dense: _in_out,
    lenet.ReLU: _free(tg.ReLU),
    lenet.MaxPool2D: (_free((tg.MaxPool2d, 2)), "NHWC"),
    lenet.Flatten: _free(tg.Flatten),
    nets.Dense32: _in_out,
    nets.LeakyReLU: _leaky,
    keras_like.Conv2D: _keras_conv,
    keras_like.ReLU: _free(tg.ReLU),
    keras_like.Flatten: _free(tg.Flatten),
    keras_like.Dense: _in_out,
    composite.Conv: _conv_oihw,
    composite.BatchNorm2d: _bn,
    composite.ReLU: _free(tg.ReLU),
    composite.MaxPool2x2: (_free((tg.MaxPool2d, 2)), "NCHW"),
    composite.Flatten: _free(tg.Flatten),
    composite.Linear: _in_out,
}


def register(cls: type, how: Any) -> None:
    KNOWN[cls] = how


def standin_infer_layer(target: Any, x: Any, *, name: str | None = None, seed: int = 0, **kw: Any) -> LayerInference:
    name = name or "layer"
    how = next((KNOWN[c] for c in type(target).__mro__ if c in KNOWN), None)
    if how is None:
        raise AssertionError(f"stand-in infer_layer does not know {type(target).__name__}")
    only = None
    if isinstance(how, tuple):
        how, only = how
    spec, layout, params = how(target, x, name)
    if layout is not None:
        layouts = [layout]
    elif np.ndim(x) == 4:  # parameter-free: both data layouts compute it alike (pooling aside)
        flat = isinstance(spec, tg.Flatten)
        layouts = [tg.Layout(), tg.Layout(data="NHWC", flatten="HWC") if flat else NHWC]
        layouts = [lay for lay in layouts if only is None or lay.data == only]
    else:
        layouts = [tg.Layout()]
    fits = [Fit(spec, lay, dict(params), error=0.0) for lay in layouts]
    return LayerInference(name, target, fits[0], "exact", 1e-9, fits, [], wrap_kwargs=dict(kw))
