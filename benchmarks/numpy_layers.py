"""Handwritten numpy layers for the benchmarks' large networks, built from a spec.

These play the user's code for workloads too big to write by hand layer by layer (a
ResNet-18 in float64): object-style layers with ``forward(x)`` / ``backward(dout)`` in
NCHW data and PyTorch parameter layouts (conv ``W`` (O, I, kh, kw), linear ``W`` (out,
in)), vectorised the way a careful person would (sliding windows + one tensordot per conv;
col2im by kernel position), gradients in ``dW`` / ``db`` / ``dgamma`` / ``dbeta``.
:func:`layers_from_spec` gives ``{spec path: layer}`` for :func:`harness.wrap_network`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness import spec as S
from numpy_nets import Flatten, GlobalAvgPool, ReLU, Tanh  # the parameter-free layers, shared with the peers' nets


class Conv2d:
    """Cross-correlation with stride and zero padding (dilation 1, groups 1).
    x: (N, C, H, W) -> (N, O, H', W'); W: (O, C, kh, kw); b: (O,) or None."""

    def __init__(self, layer: S.Conv2d, rng: np.random.Generator) -> None:
        o, c, (kh, kw) = layer.out_channels, layer.in_channels, layer.kernel_size
        self.W = rng.standard_normal((o, c, kh, kw)) * np.sqrt(2.0 / (c * kh * kw))
        self.b = rng.standard_normal(o) * 0.1 if layer.bias else None
        self.stride, self.pad = layer.stride, layer.padding  # pad: ((top, bottom), (left, right))

    def forward(self, x: np.ndarray) -> np.ndarray:
        (t, bo), (le, r) = self.pad
        xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (le, r)))
        kh, kw = self.W.shape[2:]
        sh, sw = self.stride
        self.shape, self.xp_shape = x.shape, xp.shape
        self.cols = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, oh, ow, kh, kw)
        out = np.tensordot(self.cols, self.W, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
        return out + self.b[None, :, None, None] if self.b is not None else np.ascontiguousarray(out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        kh, kw = self.W.shape[2:]
        sh, sw = self.stride
        oh, ow = dout.shape[2:]
        self.dW = np.tensordot(dout, self.cols, axes=([0, 2, 3], [0, 2, 3]))  # (O, C, kh, kw)
        if self.b is not None:
            self.db = dout.sum(axis=(0, 2, 3))
        dcols = np.tensordot(self.W, dout, axes=([0], [1]))  # (C, kh, kw, N, oh, ow)
        dxp = np.zeros(self.xp_shape)
        for u in range(kh):
            for v in range(kw):
                dxp[:, :, u:u + sh * oh:sh, v:v + sw * ow:sw] += dcols[:, u, v].transpose(1, 0, 2, 3)
        (t, _), (le, _) = self.pad
        return dxp[:, :, t:t + self.shape[2], le:le + self.shape[3]]


class BatchNorm2d:
    """Training-mode batch norm over (N, H, W) per channel; gamma, beta: (C,)."""

    def __init__(self, layer: S.BatchNorm2d, rng: np.random.Generator) -> None:
        c = layer.num_features
        self.gamma, self.beta = 1 + 0.1 * rng.standard_normal(c), 0.1 * rng.standard_normal(c)
        self.running_mean, self.running_var = np.zeros(c), np.ones(c)
        self.eps = layer.eps

    def forward(self, x: np.ndarray) -> np.ndarray:
        mu, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
        self.inv = 1.0 / np.sqrt(var + self.eps)
        self.xh = (x - mu) * self.inv
        return self.gamma[None, :, None, None] * self.xh + self.beta[None, :, None, None]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        m = dout.shape[0] * dout.shape[2] * dout.shape[3]
        self.dgamma, self.dbeta = (dout * self.xh).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))
        dxh = dout * self.gamma[None, :, None, None]
        return (self.inv / m) * (m * dxh - dxh.sum(axis=(0, 2, 3), keepdims=True)
                                 - self.xh * (dxh * self.xh).sum(axis=(0, 2, 3), keepdims=True))


class AvgPool2d:
    """Average over non-overlapping windows (stride = kernel, no padding), as LeNet-5's."""

    def __init__(self, layer: S.AvgPool2d, rng: np.random.Generator) -> None:
        if layer.stride != layer.kernel_size or layer.padding != (0, 0):
            raise NotImplementedError("benchmarks' AvgPool2d: non-overlapping, unpadded windows only")
        self.k = layer.kernel_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (n, c, h, w) = self.k, x.shape
        self.shape = x.shape
        return x[:, :, :h - h % kh, :w - w % kw].reshape(n, c, h // kh, kh, w // kw, kw).mean(axis=(3, 5))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        kh, kw = self.k
        dx = np.zeros(self.shape)
        up = np.repeat(np.repeat(dout, kh, axis=2), kw, axis=3) / (kh * kw)
        dx[:, :, :up.shape[2], :up.shape[3]] = up
        return dx


class MaxPool2d:
    """Max over windows with -inf padding; the gradient goes to the first maximum."""

    def __init__(self, layer: S.MaxPool2d, rng: np.random.Generator) -> None:
        self.k, self.stride, self.pad = layer.kernel_size, layer.stride, layer.padding

    def forward(self, x: np.ndarray) -> np.ndarray:
        (ph, pw), (kh, kw), (sh, sw) = self.pad, self.k, self.stride
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
        win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        flat = win.reshape(*win.shape[:4], kh * kw)
        self.arg, self.shape, self.xp_shape = flat.argmax(axis=-1), x.shape, xp.shape
        return np.take_along_axis(flat, self.arg[..., None], axis=-1)[..., 0]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (ph, pw), (_, kw), (sh, sw) = self.pad, self.k, self.stride
        n, c, oh, ow = dout.shape
        rows = (np.arange(oh) * sh)[:, None] + self.arg // kw
        cols = (np.arange(ow) * sw)[None, :] + self.arg % kw
        dxp = np.zeros(self.xp_shape)
        ni, ci = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
        np.add.at(dxp, (ni[..., None, None], ci[..., None, None], rows, cols), dout)
        return dxp[:, :, ph:ph + self.shape[2], pw:pw + self.shape[3]]


class Linear:
    """x: (N, in) -> (N, out); W: (out, in); b: (out,)."""

    def __init__(self, layer: S.Linear, rng: np.random.Generator) -> None:
        self.W = rng.standard_normal((layer.out_features, layer.in_features)) / np.sqrt(layer.in_features)
        self.b = 0.1 * rng.standard_normal(layer.out_features) if layer.bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        out = x @ self.W.T
        return out + self.b if self.b is not None else out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = dout.T @ self.x
        if self.b is not None:
            self.db = dout.sum(axis=0)
        return dout @ self.W


_MAKERS: dict[type, Any] = {S.Conv2d: Conv2d, S.BatchNorm2d: BatchNorm2d, S.MaxPool2d: MaxPool2d, S.Linear: Linear,
                            S.AvgPool2d: AvgPool2d}
_PLAIN: dict[type, Any] = {S.ReLU: ReLU, S.Tanh: Tanh, S.GlobalAvgPool2d: GlobalAvgPool, S.Flatten: Flatten}


def layers_from_spec(spec: S.Layer, seed: int = 0) -> dict[str, Any]:
    """``{leaf path: numpy layer}`` in forward order for every leaf of ``spec``."""
    rng = np.random.default_rng(seed)
    out = {}
    for path, layer in S.walk(spec):
        if layer.children():
            continue
        kind = type(layer)
        if kind in _MAKERS:
            out[path] = _MAKERS[kind](layer, rng)
        elif kind in _PLAIN:
            out[path] = _PLAIN[kind]()
        else:
            raise NotImplementedError(f"benchmarks/numpy_layers.py has no numpy {kind.__name__} (layer '{path}')")
    return out



def wrap(spec: S.Layer, input_shape: tuple[int, ...], seed: int = 0) -> Any:
    """The numpy layers of ``spec`` wrapped as a network (chained in spec order)."""
    import harness as tg

    layers = layers_from_spec(spec, seed)
    wrapped = {}
    for path, obj in layers.items():
        leaf = dict(S.walk(spec))[path]
        kwargs: dict[str, Any] = {"name": path}
        if isinstance(leaf, S.BatchNorm2d):
            kwargs["params"] = {"weight": "gamma", "bias": "beta", "running_mean": "running_mean",
                                "running_var": "running_var"}
            kwargs["grads"] = {"weight": "dgamma", "bias": "dbeta"}
        wrapped[path] = tg.wrap_layer(obj, leaf, **kwargs)
    return tg.wrap_network(wrapped, spec, input_shape=input_shape)


__all__ = ["layers_from_spec", "wrap"]
