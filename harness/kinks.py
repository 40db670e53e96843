"""Where gradients are not defined, and how the check keeps away from there.

A ReLU-family layer has a kink at 0 and a max pool one wherever two elements of a window
tie; finite differences across a kink measure neither side's slope. The check therefore
draws its points off kinks (:func:`random_input`, :func:`off_kinks`) and reads each probe's
activation pattern off the reference (:func:`pattern`), so a probe that still crosses one
is recognised, discarded and replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import fd
from .spec import ELU, Layer, LeakyReLU, MaxPool2d, ReLU, Sequential, _Recurrent, index_layer, walk

KINKED = (ReLU, LeakyReLU, ELU)  # a kink at input 0


def random_input(spec: Layer, shape: tuple[int, ...], rng: np.random.Generator, dtype: Any = np.float64) -> np.ndarray:
    """A standard normal input; for a ReLU-family layer kept at least 0.1 (and the dtype's
    :func:`margin`) away from 0; for a max pool ``(N, C, H, W)``, every window's maximum
    leading its runner-up by the margin, so no finite-difference probe in ``dtype``
    (float32 steps are ~300 times float64's) can cross a tie. A spec opened by an Embedding
    takes int64 indices instead (:meth:`~harness.spec.Embedding.random_indices`)."""
    first = index_layer(spec)
    if first is not None:
        return first.random_indices(shape, rng)  # type: ignore[attr-defined]
    x = rng.standard_normal(shape)
    if isinstance(spec, KINKED):
        x = np.sign(x) * (0.1 + np.abs(x))
        x = np.sign(x) * np.maximum(np.abs(x), margin(x, dtype))
    if isinstance(spec, MaxPool2d) and len(shape) == 4:
        x = _separate(spec, x, margin(x, dtype))
    return x


def margin(x: np.ndarray, dtype: Any) -> float:
    """How far from a kink a point must be: a finite-difference probe moves no element by more
    than ``STEP[dtype]`` times the rms of ``x`` (see :func:`harness.fd.step_for`), and two
    elements of a pool window can move towards each other, so three times that."""
    scale = max(float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0, 1e-2)
    return 3 * fd.STEP.get(fd.key(dtype), fd.STEP[np.dtype(np.float32)]) * scale


def off_kinks(spec: Layer, x: np.ndarray, rng: np.random.Generator, dtype: Any) -> np.ndarray:
    """The reference's input to a layer, moved off its kinks for an isolated check: a
    ReLU-family layer's inputs at least :func:`margin` from 0; a max pool's inputs (after a
    ReLU, whole windows of exact zeros) jittered, then every window's maximum lifted until it
    leads the runner-up by the margin. Other layers take ``x`` as it is."""
    if isinstance(spec, KINKED):
        m = margin(x, dtype)
        return np.where(x < 0, -1.0, 1.0) * np.maximum(np.abs(x), m)
    pools = [layer for _, layer in walk(Sequential([spec])) if isinstance(layer, MaxPool2d)]
    if isinstance(spec, MaxPool2d) and x.ndim == 4:
        scale = float(np.sqrt(np.mean(np.square(x)))) or 1.0
        return _separate(spec, x + 0.1 * scale * rng.standard_normal(x.shape), margin(x, dtype))
    if pools:  # a span with a pool inside: its input is not the pool's, jitter only
        scale = float(np.sqrt(np.mean(np.square(x)))) or 1.0
        return x + 0.1 * scale * rng.standard_normal(x.shape)
    return x


def _taps(size: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """``(outputs, k)`` input index of every tap of every window along one axis (-1: padding)."""
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    taps = (np.arange(out) * s - p)[:, None] + np.arange(k) * d
    return np.where((taps >= 0) & (taps < size), taps, -1)


def _separate(layer: MaxPool2d, x: np.ndarray, gap: float, rounds: int = 20) -> np.ndarray:
    """Lift each window's maximum until it exceeds the window's other elements by ``gap``.
    Overlapping windows can undo each other's lifts, so repeat a few rounds."""
    x = np.array(x, dtype=np.float64, copy=True)
    n, c, h, w = x.shape
    th = _taps(h, layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0])
    tw = _taps(w, layer.kernel_size[1], layer.stride[1], layer.padding[1], layer.dilation[1])
    rows = np.broadcast_to(th[:, None, :, None], (len(th), len(tw), th.shape[1], tw.shape[1])).reshape(
        len(th), len(tw), -1
    )
    cols = np.broadcast_to(tw[None, :, None, :], (len(th), len(tw), th.shape[1], tw.shape[1])).reshape(
        len(th), len(tw), -1
    )
    valid = (rows >= 0) & (cols >= 0)
    flat = np.where(valid, rows * w + cols, 0)  # (OH, OW, taps) into the H*W plane
    plane = x.reshape(n, c, h * w)
    for _ in range(rounds):
        vals = np.where(valid, plane[:, :, flat], -np.inf)  # (N, C, OH, OW, taps)
        if vals.shape[-1] < 2:
            break
        top2 = -np.sort(-vals, axis=-1)[..., :2]
        short = gap - (top2[..., 0] - top2[..., 1])
        close = short > 0
        if not close.any():
            break
        winner = np.take_along_axis(flat[None, None], vals.argmax(axis=-1)[..., None], axis=-1)[..., 0]
        ni, ci, oi, wi = np.nonzero(close)
        np.maximum.at(plane, (ni, ci, winner[ni, ci, oi, wi]), top2[ni, ci, oi, wi, 1] + gap)
    return plane.reshape(n, c, h, w)


def pool_argmax(layer: MaxPool2d, x: np.ndarray) -> bytes:
    """Which element wins each max-pool window (PyTorch's indices): a change is a kink."""
    import torch
    import torch.nn.functional as F

    _, idx = F.max_pool2d(
        torch.from_numpy(x), layer.kernel_size, layer.stride, layer.padding, layer.dilation, return_indices=True
    )
    return idx.numpy().tobytes()


def _side(layer: Layer, x: np.ndarray, y: np.ndarray) -> bytes:
    """One kinked layer's part of the pattern at its input ``x`` (output ``y``): the element that
    wins each max-pool window, which side of 0 each input of a ReLU-family layer is, or each
    pre-activation of a relu RNN (h = relu(pre) > 0 exactly where pre > 0)."""
    if isinstance(layer, _Recurrent):
        return (y > 0).tobytes()
    return pool_argmax(layer, x) if isinstance(layer, MaxPool2d) else (x > 0).tobytes()


def _kinked(layer: Layer) -> bool:
    return isinstance(layer, (*KINKED, MaxPool2d)) or getattr(layer, "nonlinearity", None) == "relu"


def pattern(reference: Any, spec: Layer) -> Callable[[dict, np.ndarray], bytes] | None:
    """``f(params, x) -> bytes``: the reference's activation pattern at a point (which side
    of 0 each ReLU-family input or relu RNN pre-activation is, which element wins each max-pool
    window); None when the spec has no kinks. ``reference``: a torch reference of ``spec`` (``forward(params, x)``)."""
    layers = dict(walk(spec))
    kinked = [p for p, layer in layers.items() if _kinked(layer)]
    if not kinked:
        return None

    def at(params: dict, x: np.ndarray) -> bytes:
        res = reference.forward(params, x)
        return b"".join(_side(layers[p], res.inputs[p], res.outputs[p]) for p in kinked)

    return at


def upstream(rng: np.random.Generator, shape: tuple[int, ...], x: np.ndarray, seed: int) -> np.ndarray:
    """The random upstream gradient of a check (never all ones: that hides transposes and
    flips), and never the input itself: a user who draws ``x`` from ``default_rng(seed)`` with
    the check's own seed would otherwise get ``g == x``, under which a ReLU mask taken from the
    gradient instead of the input cannot be told from the right one."""
    g = rng.standard_normal(shape)
    if g.shape == x.shape and np.array_equal(g, x):
        g = np.random.default_rng([seed, 1]).standard_normal(shape)
    return g


__all__ = ["KINKED", "margin", "off_kinks", "pattern", "pool_argmax", "random_input", "upstream"]
