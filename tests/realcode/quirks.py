"""Layers for the messages of a missing declaration (tests/test_hints.py): each has the quirk
a declaration handles, or a real bug that must *not* be mistaken for one.

- a small conv net written as one object (conv 3x3, relu, flatten, dense), checked as a span;
- a training flag the forward requires (``forward(x, training)``, Keras' ``call``);
- a keras-like dense built by its first forward that also requires ``training``;
- a dense with a leaky relu fused in (Keras' default slope 0.3), and a dense adding its bias twice;
- a one-image conv whose forward adds its bias twice;
- a relu that uses a cache its forward never set (it raises on any input);
- an affine pair whose forward calls its helper without the bias.
"""

from __future__ import annotations

import numpy as np

from . import keras_like, single


class TinyConvNet:
    """conv 3x3 (C -> F, valid) - relu - flatten (C, H, W order) - dense; NCHW, im2col with
    a list of patches, W2 (out, F*H'*W')."""

    def __init__(self, in_channels=3, filters=4, size=6, classes=5, seed=0):
        rng = np.random.default_rng(seed)
        self.W1 = rng.normal(0, 0.3, (filters, in_channels, 3, 3))
        self.b1 = rng.normal(0, 0.1, filters)
        self.W2 = rng.normal(0, 0.3, (classes, filters * (size - 2) ** 2))
        self.b2 = rng.normal(0, 0.1, classes)

    def forward(self, x):
        N, C, H, W = x.shape
        self.x_shape = x.shape
        self.cols = np.stack([x[:, :, i:i + 3, j:j + 3].reshape(N, -1) for i in range(H - 2) for j in range(W - 2)], 1)
        self.z = self.cols @ self.W1.reshape(len(self.W1), -1).T + self.b1  # (N, P, F)
        a = np.maximum(self.z, 0).transpose(0, 2, 1)  # (N, F, P): flattened in (F, H', W') order
        self.a = a.reshape(N, -1)
        return self.a @ self.W2.T + self.b2

    def backward(self, dy):
        N, C, H, W = self.x_shape
        F = len(self.W1)
        self.dW2, self.db2 = dy.T @ self.a, dy.sum(axis=0)
        dz = (dy @ self.W2).reshape(N, F, -1).transpose(0, 2, 1) * (self.z > 0)
        self.dW1 = np.einsum("npf,npk->fk", dz, self.cols).reshape(self.W1.shape)
        self.db1 = dz.sum(axis=(0, 1))
        dcols = dz @ self.W1.reshape(F, -1)
        dx = np.zeros(self.x_shape)
        for k, (i, j) in enumerate((i, j) for i in range(H - 2) for j in range(W - 2)):
            dx[:, :, i:i + 3, j:j + 3] += dcols[:, k].reshape(N, C, 3, 3)
        return dx


class TinyConvNetDW2Averaged(TinyConvNet):
    def backward(self, dy):
        dx = super().backward(dy)
        self.dW2 /= len(dy)  # bug: the loss's 1/N applied to one gradient only
        return dx


class DenseTraining(keras_like.Dense):
    """A Keras-style ``call(inputs, training)``: the flag is required (and unused by a dense)."""

    def forward(self, x, training):
        return super().forward(x)


class LazyDenseTraining(keras_like.LazyDense):
    """Built by its first forward, which also requires the training flag."""

    def forward(self, x, training):
        return super().forward(x)


class DenseLeaky(keras_like.Dense):
    """y = leaky_relu(x @ W + b, 0.3), Keras' default slope."""

    def forward(self, x):
        self.x = x
        self.z = x @ self.W + self.b
        return np.where(self.z > 0, self.z, 0.3 * self.z)

    def backward(self, dy):
        dy = dy * np.where(self.z > 0, 1.0, 0.3)
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class DenseBiasTwice(keras_like.Dense):
    def forward(self, x):
        self.x = x
        self.z = x @ self.W + 2 * self.b  # bug: the bias added twice
        return self.z


class Conv3x3BiasTwice(single.Conv3x3):
    """One grayscale image at a time, with a forward bug: the bias added twice."""

    def forward(self, image):
        return super().forward(image) + self.biases[:, None, None]


class ReLUCacheFirst:
    """The backward's mask is read in forward before anything set it (it raises on any input)."""

    def forward(self, x):
        out = x * self.mask
        self.mask = x > 0
        return out

    def backward(self, dout):
        return dout * self.mask


def _affine(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b


def affine_forward_helper_unbound(x, w, b):
    """Calls its own helper without the bias: a TypeError raised *inside* the user's code."""
    out = _affine(x, w)  # noqa (the bug)
    return out, (x, w, b)
