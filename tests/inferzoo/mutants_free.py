"""The parameter-free wrong-kind mutants' code (their entries are in :mod:`inferzoo.mutants`):
each forward computes another kind than the one its name and its backward mean."""

from __future__ import annotations

import numpy as np


class MaxPool:
    """Intended 2x2 max pool; the forward averages, the backward routes to the argmax."""

    def forward(self, x):
        n, c, h, w = x.shape
        win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        self.arg = win.argmax(axis=-1)
        return win.mean(axis=-1)  # bug: mean where max is meant

    def backward(self, dy):
        n, c, oh, ow = dy.shape
        d = np.zeros(dy.shape + (4,), dy.dtype)
        np.put_along_axis(d, self.arg[..., None], dy[..., None], axis=-1)
        return d.reshape(n, c, oh, ow, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * oh, 2 * ow)


class AvgPool:
    """Intended 2x2 average pool; the forward takes the max, the backward spreads 1/4."""

    def forward(self, x):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))  # bug

    def backward(self, dy):
        return np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4


class ReLU:
    """Intended ReLU; the forward leaks 0.01 x, the backward uses the ReLU mask."""

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, 0.01 * x)  # bug: a leak left in

    def backward(self, dy):
        return dy * (self.x > 0)


class LeakyReLU:
    """Intended slope 0.01 (its backward); the forward uses 0.1."""

    def __init__(self, negative_slope=0.01):
        self.negative_slope = negative_slope

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, 0.1 * x)  # bug: a hard-coded slope

    def backward(self, dy):
        return dy * np.where(self.x > 0, 1.0, self.negative_slope)


class Sigmoid:
    """Intended sigmoid; the forward computes tanh, the backward the sigmoid's derivative."""

    def forward(self, x):
        self.x = x
        return np.tanh(x)  # bug

    def backward(self, dy):
        s = 1 / (1 + np.exp(-self.x))
        return dy * s * (1 - s)


class GELU:
    """Intended the tanh approximation (its backward); the forward is the exact erf GELU."""

    def forward(self, x):
        from math import erf

        self.x = x
        return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))  # bug: not the approximation used below

    def backward(self, dy):
        c, x = np.sqrt(2 / np.pi), self.x
        t = np.tanh(c * (x + 0.044715 * x**3))
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * c * (1 + 3 * 0.044715 * x**2))


class Softmax:
    """Intended over the features (axis 1, the backward's); the forward normalises over the batch."""

    def forward(self, x):
        self.x = x
        e = np.exp(x - x.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)  # bug: axis 0

    def backward(self, dy):
        e = np.exp(self.x - self.x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return p * (dy - (dy * p).sum(axis=1, keepdims=True))


class Flatten:
    """Intended C, H, W order (its backward); the forward flattens H, W, C."""

    def forward(self, x):
        self.shape = x.shape
        return x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)  # bug: a TensorFlow habit

    def backward(self, dy):
        return dy.reshape(self.shape)
