"""JAX reference network built from a :mod:`harness.spec` tree; float64, functional.

Layouts follow the spec (PyTorch's conventions): data ``(N, C, H, W)``, conv weight
``(C_out, C_in/groups, kh, kw)`` applied as cross-correlation (no kernel flip), Linear
weight ``(out, in)`` on inputs ``(..., in)``, Flatten in C,H,W order, batch-norm stats
over every axis but 1. Parameters are a flat dict keyed by canonical name
(``layer1.0.conv1.weight``); every array in a :class:`Result` is float64 numpy.

Per-layer output gradients come from the zero-perturbation trick: a zeros array
``eps[path]`` is added to each layer's output and differentiated alongside the inputs.

Everything JAX runs under ``jax.enable_x64(True)``, so float64 is used without touching
the caller's global ``jax_enable_x64`` setting. This module is independent of the torch
reference by design: it imports neither torch nor ``torch_ref``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from harness import spec as S
from harness.spec import Layer, Loss, join_path, layer_shapes, named_params, walk

from . import jax_attention, jax_caption, jax_conv_norm, jax_embedding, jax_recurrent
from ._result import Result, prepare, prepare_cotangent, prepare_target
from .jax_losses import loss_value as _loss_value

_HI = lax.Precision.HIGHEST


@dataclass
class _Ctx:
    """What one forward pass reads (params, eps) and records (per-layer values, state)."""

    params: Mapping[str, jax.Array]
    eps: Mapping[str, jax.Array] | None
    inputs: dict[str, jax.Array] = field(default_factory=dict)
    outputs: dict[str, jax.Array] = field(default_factory=dict)
    state: dict[str, jax.Array] = field(default_factory=dict)


# --------------------------------------------------------------------------- layers
# Each takes (layer, path, x, ctx) and returns the layer's output.


def _conv2d(l: S.Conv2d, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    # padded explicitly, not through the conv: XLA's CPU compiler aborts the process (a failed
    # check in its algebraic simplifier) on the weight gradient's conv for some padded strided
    # windows, e.g. a 2x2 kernel, stride 2, padding 1 over a width-1 input (jax 0.10.2)
    (t, b), (lft, r) = l.pads((x.shape[2], x.shape[3]))
    x = jnp.pad(x, ((0, 0), (0, 0), (t, b), (lft, r)))
    y = lax.conv_general_dilated(
        x,
        ctx.params[f"{path}.weight"],
        window_strides=l.stride,
        padding=((0, 0), (0, 0)),
        rhs_dilation=l.dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=l.groups,
        precision=_HI,
    )
    return y + ctx.params[f"{path}.bias"][None, :, None, None] if l.bias else y


def _window(l: S._Pool2d) -> dict[str, Any]:
    (p, q), (sh, sw) = l.padding, l.stride
    return {
        "window_dimensions": (1, 1, *l.kernel_size),
        "window_strides": (1, 1, sh, sw),
        "padding": ((0, 0), (0, 0), (p, p), (q, q)),
    }


def _maxpool2d(l: S.MaxPool2d, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    if l.dilation != (1, 1):
        return _dilated_maxpool2d(l, x)
    # -inf init makes padding never win; on ties JAX's gradient goes to the first max
    return lax.reduce_window(x, -jnp.inf, lax.max, **_window(l))


def _dilated_maxpool2d(l: S.MaxPool2d, x: jax.Array) -> jax.Array:
    """Max over explicitly gathered window taps: JAX has no VJP for a dilated
    reduce_window max. Taps are stacked in row-major window order and the first maximum
    is taken with argmax, so ties send the gradient where PyTorch sends it."""
    (p, q), (sh, sw), (dh, dw), (kh, kw) = l.padding, l.stride, l.dilation, l.kernel_size
    xp = jnp.pad(x, ((0, 0), (0, 0), (p, p), (q, q)), constant_values=-jnp.inf)
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    taps = [
        xp[:, :, u * dh : u * dh + (oh - 1) * sh + 1 : sh, v * dw : v * dw + (ow - 1) * sw + 1 : sw]
        for u in range(kh)
        for v in range(kw)
    ]
    stacked = jnp.stack(taps, axis=-1)
    first = jnp.argmax(stacked, axis=-1)[..., None]
    return jnp.take_along_axis(stacked, first, axis=-1)[..., 0]


def _avgpool2d(l: S.AvgPool2d, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    total = lax.reduce_window(x, 0.0, lax.add, **_window(l))
    if l.count_include_pad:
        return total / (l.kernel_size[0] * l.kernel_size[1])
    # real pixels per window: the same window sum over an unpadded field of ones
    count = lax.reduce_window(jnp.ones((1, 1, *x.shape[2:]), x.dtype), 0.0, lax.add, **_window(l))
    return total / count


def _global_avgpool2d(l: S.GlobalAvgPool2d, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    return jnp.mean(x, axis=(2, 3), keepdims=l.keepdims)


def _gelu(l: S.GELU, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    if l.approximate == "tanh":
        return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + lax.erf(x / math.sqrt(2.0)))


def _softmax(l: S.Softmax, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    z = jnp.exp(x - lax.stop_gradient(jnp.max(x, axis=l.axis, keepdims=True)))  # shift: no overflow
    return z / jnp.sum(z, axis=l.axis, keepdims=True)


def _linear(l: S.Linear, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    # contract x's last axis with weight's axis 1: x @ W^T for any leading axes
    y = lax.dot_general(x, ctx.params[f"{path}.weight"], (((x.ndim - 1,), (1,)), ((), ())), precision=_HI)
    return y + ctx.params[f"{path}.bias"] if l.bias else y


def _batchnorm(l: S._BatchNorm, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    axes = l.reduce_axes(x.shape)
    # parameters broadcast over the reduced axes: (1, C, 1, 1), or (1, C, H, W) per feature
    bshape = [1 if a in axes else s for a, s in enumerate(x.shape)]
    p = ctx.params
    if l.training:
        mean = jnp.mean(x, axis=axes).reshape(p[f"{path}.running_mean"].shape)
        var = jnp.mean((x - mean.reshape(bshape)) ** 2, axis=axes).reshape(mean.shape)  # biased: used to normalise
        n = math.prod(x.shape[a] for a in axes)
        m = l.momentum
        # running stats track the unbiased variance (PyTorch's rule)
        ctx.state[f"{path}.running_mean"] = (1 - m) * p[f"{path}.running_mean"] + m * mean
        ctx.state[f"{path}.running_var"] = (1 - m) * p[f"{path}.running_var"] + m * var * (n / (n - 1))
    else:
        mean, var = p[f"{path}.running_mean"], p[f"{path}.running_var"]
    y = (x - mean.reshape(bshape)) / jnp.sqrt(var.reshape(bshape) + l.eps)
    if l.affine:
        y = y * p[f"{path}.weight"].reshape(bshape) + p[f"{path}.bias"].reshape(bshape)
    return y


def _layernorm(l: S.LayerNorm, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    axes = tuple(range(x.ndim - len(l.normalized_shape), x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=axes, keepdims=True)
    y = (x - mean) / jnp.sqrt(var + l.eps)
    if l.elementwise_affine:
        y = y * ctx.params[f"{path}.weight"] + ctx.params[f"{path}.bias"]
    return y


def _dropout(l: S.Dropout, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    if not l.inverted:  # scaled at test time, not in training
        return x * ctx.params[f"{path}.mask"] if l.training else x * (1.0 - l.p)
    return x * ctx.params[f"{path}.mask"] / (1.0 - l.p) if l.training else x


def _sequential(l: S.Sequential, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    for child in l.layers:
        x = _apply(child, join_path(path, child.name), x, ctx)
    return x


def _residual(l: S.Residual, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    main = x
    for child in l.block:
        main = _apply(child, join_path(path, child.name), main, ctx)
    side = x if l.shortcut is None else _apply(l.shortcut, join_path(path, l.shortcut.name), x, ctx)
    y = main + side
    for child in l.post:
        y = _apply(child, join_path(path, child.name), y, ctx)
    return y


def _elementwise(fn: Callable[[Any, jax.Array], jax.Array]) -> Callable[..., jax.Array]:
    return lambda l, path, x, ctx: fn(l, x)


_LAYERS: dict[type, Callable[..., jax.Array]] = {
    S.Conv2d: _conv2d,
    S.MaxPool2d: _maxpool2d,
    S.AvgPool2d: _avgpool2d,
    S.GlobalAvgPool2d: _global_avgpool2d,
    # where(x > 0, ...) rather than maximum: gradient 0 at x == 0 (maximum splits ties 1/2)
    S.ReLU: _elementwise(lambda l, x: jnp.where(x > 0, x, 0.0)),
    S.LeakyReLU: _elementwise(lambda l, x: jnp.where(x > 0, x, l.negative_slope * x)),
    # the inner where keeps the unused branch from overflowing to inf (a NaN gradient);
    # not minimum(x, 0), whose gradient at exactly 0 is 1/2 (ELU's true slope there is alpha)
    S.ELU: _elementwise(lambda l, x: jnp.where(x > 0, x, l.alpha * jnp.expm1(jnp.where(x > 0, 0.0, x)))),
    S.Sigmoid: _elementwise(lambda l, x: jax.nn.sigmoid(x)),
    S.Tanh: _elementwise(lambda l, x: jnp.tanh(x)),
    S.GELU: _gelu,
    S.Softmax: _softmax,
    S.Flatten: _elementwise(lambda l, x: x.reshape(x.shape[0], -1)),
    S.Linear: _linear,
    S.BatchNorm2d: _batchnorm,
    S.BatchNorm1d: _batchnorm,
    S.LayerNorm: _layernorm,
    S.Dropout: _dropout,
    S.Sequential: _sequential,
    S.Residual: _residual,
    **jax_conv_norm.LAYERS,
    **jax_embedding.LAYERS,
    **jax_recurrent.LAYERS,
    **jax_attention.LAYERS,
    S.Captioner: lambda l, path, x, ctx: jax_caption.captioner(l, path, x, ctx, _apply),
}


def _apply(layer: Layer, path: str, x: jax.Array, ctx: _Ctx) -> jax.Array:
    """Run one layer; record its input and (eps-perturbed) output under ``path``."""
    try:
        fn = _LAYERS[type(layer)]
    except KeyError:
        raise S.SpecError(f"layer '{path}': the JAX reference has no rule for {type(layer).__name__}") from None
    if path:  # the unnamed root Sequential is not a walked layer
        ctx.inputs[path] = x
    y = fn(layer, path, x, ctx)
    if path:
        if ctx.eps is not None:
            y = y + ctx.eps[path]
        ctx.outputs[path] = y
    return y


# --------------------------------------------------------------------------- traced cores
# Pure functions of arrays; ``spec`` (and ``loss``) are bound before jitting, so they are static.


def _check_f64(tree: Any) -> None:
    # dtypes are static, so this also holds under jit tracing
    for a in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != jnp.float64:
            raise TypeError(f"JAX reference expected float64, got {a.dtype}; is x64 enabled?")


def _run(spec: Layer, params: Mapping[str, jax.Array], x: jax.Array, eps: Mapping[str, jax.Array] | None):
    _check_f64((params, x, eps))
    ctx = _Ctx(params, eps)
    out = _apply(spec, spec.name, x, ctx)
    return out, (ctx.inputs, ctx.outputs, ctx.state)


def _forward_core(spec: Layer, params, x):
    return _run(spec, params, x, None)


def _pullback(spec: Layer, trainable, buffers, x, eps):
    if S.index_layer(spec) is not None:  # integer indices: not differentiable, the input's cotangent is None
        out, pull, aux = jax.vjp(lambda tr, eps: _run(spec, {**tr, **buffers}, x, eps), trainable, eps, has_aux=True)
        return out, lambda g: (lambda pg, eg: (pg, None, eg))(*pull(g)), aux

    def f(tr, x, eps):
        return _run(spec, {**tr, **buffers}, x, eps)

    return jax.vjp(f, trainable, x, eps, has_aux=True)


def _vjp_core(spec: Layer, trainable, buffers, x, eps, g):
    out, pull, aux = _pullback(spec, trainable, buffers, x, eps)
    return out, aux, g, pull(g)


def _loss_vjp_core(spec: Layer, loss: Loss, trainable, buffers, x, eps, target):
    out, pull, aux = _pullback(spec, trainable, buffers, x, eps)
    value, g = jax.value_and_grad(lambda o: _loss_value(loss, o, target))(out)
    return out, aux, g, pull(g), value


# --------------------------------------------------------------------------- public


def _np(a: Any) -> np.ndarray:
    # integer indices (an Embedding's input) stay int64; everything else is float64
    return np.array(a, dtype=np.int64 if jnp.issubdtype(a.dtype, jnp.integer) else np.float64)


# jit=True: one compiled program per (spec, shapes) for the whole forward or pullback, shared by
# every reference built from an equal spec (specs and losses are frozen dataclasses, so static).
# Eager, each primitive is compiled on its own per shape: ~23 ms each on this CPU, over a thousand
# for a few dozen small layers, against one compile per layer jitted (the test run: 4:15 -> 2:25).
_JITTED = (
    jax.jit(_forward_core, static_argnums=0),
    jax.jit(_vjp_core, static_argnums=0),
    jax.jit(_loss_vjp_core, static_argnums=(0, 1)),
)


class JaxReference:
    """Reference network for ``spec`` in JAX; ``jit=True`` compiles the whole forward and the
    whole pullback once per spec and input shapes (cached across references of equal specs)."""

    name = "jax"

    def __init__(self, spec: Layer, *, jit: bool = False) -> None:
        self.spec = spec
        self.jit = jit
        cores = _JITTED if jit else (_forward_core, _vjp_core, _loss_vjp_core)
        self._forward, self._vjp, self._loss_vjp = (partial(core, spec) for core in cores)

    def forward(self, params: Mapping[str, Any], x: Any) -> Result:
        """Output and every layer's input/output (and batch-norm state); no gradients."""
        p, x, _ = prepare(self.spec, params, x)
        with jax.enable_x64(True):
            out, aux = self._forward(p, x)
            return self._result(list(p), out, aux)

    def vjp(self, params: Mapping[str, Any], x: Any, g: Any) -> Result:
        """Forward plus the pullback of cotangent ``g`` (same shape as the output)."""
        p, x, out_shape = prepare(self.spec, params, x)
        g = prepare_cotangent(g, out_shape)
        tr, buf, eps = self._split(p, x)
        with jax.enable_x64(True):
            out, aux, g, grads = self._vjp(tr, buf, x, eps, g)
            return self._result(list(p), out, aux, g, grads)

    def loss_vjp(self, params: Mapping[str, Any], x: Any, loss: Loss, target: Any) -> Result:
        """Forward, ``loss(output, target)``, and the pullback of g = d loss / d output."""
        p, x, out_shape = prepare(self.spec, params, x)
        t = prepare_target(loss, target, out_shape)
        tr, buf, eps = self._split(p, x)
        with jax.enable_x64(True):
            out, aux, g, grads, value = self._loss_vjp(loss, tr, buf, x, eps, t)
            res = self._result(list(p), out, aux, g, grads)
            res.loss = float(value)
            return res

    def _split(self, p: dict[str, np.ndarray], x: np.ndarray):
        """(trainable params, buffers, zero eps per walked layer output)."""
        info = named_params(self.spec, x.shape)
        tr = {k: v for k, v in p.items() if info[k].trainable}
        buf = {k: v for k, v in p.items() if not info[k].trainable}
        shapes = layer_shapes(self.spec, x.shape)
        eps = {path: np.zeros(shapes[path][1]) for path, _ in walk(self.spec)}
        return tr, buf, eps

    def _result(self, names: list[str], out, aux, g=None, grads=None) -> Result:
        """Numpy Result; ``names`` (canonical parameter order) and the walk order re-sort
        the dicts, which jit returns with sorted keys."""
        _check_f64((out, aux, g, grads))
        inputs, outputs, state = aux
        paths = [path for path, _ in walk(self.spec)]
        res = Result(
            output=_np(out),
            inputs={k: _np(inputs[k]) for k in paths},
            outputs={k: _np(outputs[k]) for k in paths},
            state={k: _np(state[k]) for k in names if k in state},
        )
        if grads is not None:
            pg, xg, eg = grads
            res.cotangent = _np(g)
            res.input_grad = None if xg is None else _np(xg)
            res.param_grads = {k: _np(pg[k]) for k in names if k in pg}
            res.output_grads = {k: _np(eg[k]) for k in paths}
        return res


__all__ = ["JaxReference"]
