"""Candidates for a layer WITH parameters, from the parameters' shapes and the input's and
output's shapes (all in the user's layout): a 4-D weight is a Conv2d under every kernel order
and data order that fits (and flipped: a true convolution), stride / padding / dilation from
the output size, groups from the input's channels over the weight's; a 2-D weight a Linear in
either orientation (a Flatten + Linear span on a 4-D input, in either flatten order); 1-D
arrays of one size a BatchNorm1d / BatchNorm2d (per channel or per flattened feature) or a
LayerNorm, every eps of :data:`EPS`, in training and (four arrays) evaluation mode.

Every array found must be used by a candidate (a forward that ignores a parameter it holds is
not explained by a layer without it). Each candidate comes with a ``prior``: lower is simpler
or more common (the default layout, no dilation, eps 1e-5 ...), used only to choose among
candidates that compute the same function.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from itertools import permutations, product

import numpy as np

from ..adapters.inputs import canonical_shape
from ..adapters.layouts import KERNEL_ORDERS, Layout
from ..spec import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, LayerNorm, Linear, Sequential
from .result import Fit

# eps values real code writes, the most common first
EPS = (1e-5, 1e-3, 1e-6, 1e-8, 1e-7, 1e-4, 1e-12)
_WEIGHT = ("gamma", "weight", "scale", "scaler", "g", "w", "alpha")
_BIAS = ("beta", "bias", "shift", "intercept", "b", "offset")


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _last(path: str) -> str:
    """The last name of a path: ``params['W']`` -> ``W``."""
    return path.rstrip("]'\"").split("'")[-1].split("[")[-1].split(".")[-1].lower()


def candidates(
    name: str,
    params: dict[str, np.ndarray],
    running: dict[str, np.ndarray],
    x_shape: tuple[int, ...],
    y_shape: tuple[int, ...],
) -> list[tuple[Fit, int]]:
    """Every (candidate, prior) whose parameters' shapes fit ``params`` (path -> value, user
    shape) for an input of ``x_shape`` giving ``y_shape`` (user layout); ``running``: arrays
    a training forward changed (running statistics). Empty when no kind fits."""
    shapes = {p: tuple(v.shape) for p, v in params.items()}
    big = [p for p, s in shapes.items() if len(_squeezed(s)) >= 2]
    if len(big) == 1 and len(shapes[big[0]]) == 4:
        return list(_convs(name, big[0], shapes, x_shape, y_shape))
    if len(big) == 1 and len(shapes[big[0]]) == 3 and len(x_shape) == 4 and x_shape[1] == 1:
        return list(_convs(name, big[0], shapes, x_shape, y_shape))  # (F, k, k): one input channel, no axis for it
    if len(big) == 1 and len(shapes[big[0]]) == 2:
        return list(_linears(name, big[0], shapes, x_shape, y_shape))
    if params and (not big or len(big) == len(shapes)):  # per-feature / per-element statistics
        return list(_norms(name, params, running, x_shape))
    return []


def _bias_for(shapes: dict[str, tuple[int, ...]], weight: str, size: int) -> tuple[bool, str | None]:
    """(fits, path): the other array as a bias of ``size`` (unit axes allowed), or none."""
    rest = [p for p in shapes if p != weight]
    if not rest:
        return True, None
    if len(rest) == 1 and int(np.prod(shapes[rest[0]])) == size and len(_squeezed(shapes[rest[0]])) <= 1:
        return True, rest[0]
    return False, None


# --------------------------------------------------------------------------- convolution


def _windows(size: int, out: int, k: int) -> list[tuple[int, int, int]]:
    """(stride, padding, dilation) giving ``out`` from ``size`` with a kernel of ``k``."""
    found = []
    for s, d in product(range(1, 5), (1, 2, 3) if k > 1 else (1,)):
        for p in range(0, d * (k - 1) + 1):
            if (size + 2 * p - d * (k - 1) - 1) // s + 1 == out and size + 2 * p >= d * (k - 1) + 1:
                found.append((s, p, d))
    return found


def _one(a: int, b: int) -> int | tuple[int, int]:
    return a if a == b else (a, b)


def _convs(name: str, wp: str, shapes: dict, x_shape: tuple, y_shape: tuple) -> Iterator[tuple[Fit, int]]:
    if len(x_shape) != 4 or len(y_shape) != 4:
        return
    for oi, order in enumerate(KERNEL_ORDERS):
        user = shapes[wp]
        if len(user) == 3:  # a single-channel kernel stored without its I axis: read with it as 1
            if "I" not in order[1:] or order.index("I") == 0:
                continue
            user = (*user[: order.index("I")], 1, *user[order.index("I") :])
        dims = dict(zip(order, user))
        o, i, kh, kw = dims["O"], dims["I"], dims["H"], dims["W"]
        ok, bp = _bias_for(shapes, wp, o)
        if not ok:
            continue
        for di, data in enumerate(("NCHW", "NHWC")):
            cx, cy = canonical_shape(x_shape, data), canonical_shape(y_shape, data)
            if cy[1] != o or cx[1] % i or o % (cx[1] // i) or cy[0] != cx[0]:
                continue
            groups = cx[1] // i
            for (sh, ph, dh), (sw, pw, dw) in product(_windows(cx[2], cy[2], kh), _windows(cx[3], cy[3], kw)):
                spec = Conv2d(name, cx[1], o, _one(kh, kw), stride=_one(sh, sw), padding=_one(ph, pw),
                              dilation=_one(dh, dw), groups=groups, bias=bp is not None)  # fmt: skip
                where = {"weight": wp, **({"bias": bp} if bp else {})}
                base = oi + 3 * di + 4 * (dh + dw - 2) + (ph + pw) + 2 * (groups > 1)
                for flip in (False, True) if kh * kw > 1 else (False,):
                    yield Fit(spec, Layout(data=data, kernel=order, flip=flip), where), base + 5 * flip
            yield from _same(name, wp, (cx, cy, kh, kw, groups), bp, Layout(data=data, kernel=order), oi + 3 * di)


def _same(name: str, wp: str, dims: tuple, bp: str | None, layout: Layout, prior: int) -> Iterator[tuple[Fit, int]]:
    """TensorFlow's ``"same"`` padding (the odd pixel at the bottom / right) for a stride
    giving the output size; after the symmetric paddings, which are simpler when they fit."""
    (cx, cy, kh, kw, groups), where = dims, {"weight": wp, **({"bias": bp} if bp else {})}
    for s in range(2, 5):  # stride 1 "same" is a symmetric padding for an odd kernel, tried above
        if -(-cx[2] // s) == cy[2] and -(-cx[3] // s) == cy[3]:
            spec = Conv2d(
                name, cx[1], cy[1], _one(kh, kw), stride=s, padding="same", groups=groups, bias=bp is not None
            )
            for flip in (False, True) if kh * kw > 1 else (False,):
                yield Fit(spec, replace(layout, flip=flip), where), prior + 8 + 5 * flip


def other_shapes(best: Fit, x_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Output shapes (user layout) the same convolution would give with another padding
    (0 .. k//2 + 1) or stride (1, 2): what a backward written for the intended layer expects
    when the forward's bug changed the shape (it forgot its padding, or its stride)."""
    spec = best.spec
    if not isinstance(spec, Conv2d) or len(x_shape) != 4:
        return []
    cx = canonical_shape(x_shape, best.layout.data)
    y = spec.output_shape(cx)
    out = []
    for s, p in product((1, 2), range(max(spec.kernel_size) // 2 + 2)):
        hw = [(cx[2 + a] + 2 * p - spec.dilation[a] * (spec.kernel_size[a] - 1) - 1) // s + 1 for a in (0, 1)]
        shape = (cx[0], y[1], *hw)
        if min(hw) > 0 and shape != y:
            user = shape if best.layout.data == "NCHW" else (shape[0], shape[2], shape[3], shape[1])
            out.append(user)
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- linear


def _linears(name: str, wp: str, shapes: dict, x_shape: tuple, y_shape: tuple) -> Iterator[tuple[Fit, int]]:
    if len(y_shape) != 2 or len(x_shape) not in (2, 4):
        return
    out, w = y_shape[1], shapes[wp]
    ok, bp = _bias_for(shapes, wp, out)
    if not ok:
        return
    feats = int(np.prod(x_shape[1:]))
    for li, lin in enumerate(("out_in", "in_out")):
        if (w if lin == "out_in" else w[::-1]) != (out, feats):
            continue
        if len(x_shape) == 2:
            where = {"weight": wp, **({"bias": bp} if bp else {})}
            yield Fit(Linear(name, feats, out, bias=bp is not None), Layout(linear=lin), where), li
            continue
        span = Sequential([Flatten("flat"), Linear("fc", feats, out, bias=bp is not None)], name=name)
        where = {"fc.weight": wp, **({"fc.bias": bp} if bp else {})}
        for pi, (data, flat) in enumerate((("NCHW", "CHW"), ("NHWC", "HWC"), ("NCHW", "HWC"), ("NHWC", "CHW"))):
            yield Fit(span, Layout(data=data, linear=lin, flatten=flat), where), li + 2 * pi


# --------------------------------------------------------------------------- normalisation


def _named(path: str, words: tuple[str, ...]) -> bool:
    return _last(path) in words


def _role_pairs(paths: list[str]) -> list[tuple[str, str, int]]:
    """(weight, bias, prior) assignments, the names' reading first."""
    out = []
    for a, b in permutations(paths, 2):
        prior = 0 if _named(a, _WEIGHT) and _named(b, _BIAS) else (1 if not _named(a, _BIAS) else 3)
        out.append((a, b, prior))
    return sorted(out, key=lambda t: t[2])


def _stat(path: str, word: str) -> bool:
    return word in _last(path)


def _norms(name: str, params: dict, running: dict, x_shape: tuple) -> Iterator[tuple[Fit, int]]:
    sizes = {int(np.prod(v.shape)) for v in (*params.values(), *running.values())}
    if len(sizes) != 1:
        return
    size = sizes.pop()
    stats = [p for p in params if _stat(p, "mean") or _stat(p, "var")]
    trainable = [p for p in params if p not in stats]
    run = {**{p: p for p in running}, **{p: p for p in stats}}
    layers = list(_norm_layers(name, size, x_shape, bool(running)))
    for (layer, layout, lp), eps in product(layers, EPS):
        spec = _with_eps(layer, eps)
        ep = EPS.index(eps)
        if len(trainable) == 2:
            for w, b, prior in _role_pairs(trainable):
                roles = {} if isinstance(spec, LayerNorm) else _running_roles(list(run))
                where = {"weight": w, "bias": b, **roles}
                if getattr(spec, "training", True) and (isinstance(spec, LayerNorm) or len(where) in (2, 4)):
                    yield Fit(spec, layout, where), lp + prior + ep
        if len(params) == 4 and not running and not isinstance(spec, LayerNorm):
            yield from _eval_norms(spec, layout, params, lp + ep)


def _running_roles(paths: list[str]) -> dict[str, str]:
    """running_mean / running_var among ``paths`` by name (two of them, else none)."""
    mean = [p for p in paths if _stat(p, "mean")]
    var = [p for p in paths if _stat(p, "var")]
    if len(paths) == 2 and len(mean) == 1 and len(var) == 1:
        return {"running_mean": mean[0], "running_var": var[0]}
    return {}


def _eval_norms(spec, layout: Layout, params: dict, prior: int) -> Iterator[tuple[Fit, int]]:
    """Evaluation mode: four unchanged arrays as weight, bias, running mean and variance (a
    variance is positive), the names' reading first."""
    ev = type(spec)(spec.name, spec.num_features, eps=spec.eps, training=False, over=spec.over)
    for w, b, m, v in permutations(params, 4):
        if np.any(params[v] <= 0):
            continue
        named = _named(w, _WEIGHT) + _named(b, _BIAS) + _stat(m, "mean") + _stat(v, "var")
        yield Fit(ev, layout, {"weight": w, "bias": b, "running_mean": m, "running_var": v}), prior + 2 * (4 - named)


def _norm_layers(name: str, size: int, x_shape: tuple, has_running: bool) -> Iterator[tuple]:
    """(layer, layout, prior) for per-``size`` statistics on an input of ``x_shape``: batch
    norm per channel (axis 1, or C of NHWC data) or per flattened feature; layer norm over
    the trailing axes of the array as stored (no running statistics)."""
    if len(x_shape) in (2, 3) and x_shape[1] == size:
        yield BatchNorm1d(name, size), Layout(), 0
    if len(x_shape) == 4:
        for di, data in enumerate(("NCHW", "NHWC")):
            c = canonical_shape(x_shape, data)
            if c[1] == size:
                yield BatchNorm2d(name, size), Layout(data=data), di
            if c[1] * c[2] * c[3] == size:
                yield BatchNorm2d(name, c[1], over="feature"), Layout(data=data), 2 + di
    for k in range(1, len(x_shape)) if not has_running else ():
        if int(np.prod(x_shape[-k:])) == size:
            yield LayerNorm(name, tuple(x_shape[-k:])), Layout(), 1 + 3 * (len(x_shape) > 2)


def _with_eps(layer, eps: float):
    from dataclasses import replace

    return replace(layer, eps=eps)


__all__ = ["EPS", "candidates"]
