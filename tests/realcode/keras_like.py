"""Keras-like layers in numpy: data NHWC, conv kernels HWIO ``(kh, kw, in, out)``, dense
``x @ W + b`` with W ``(in, out)``, an optional fused activation, weights built by the first
call, a training flag on forward, and a model that runs its ``layers`` list forward and in
reverse.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


class Conv2D:
    """'valid' padding, stride 1; kernel (kh, kw, in, filters), bias (filters,)."""

    overwrite_dx = False

    def __init__(self, filters, kernel_size, in_channels, seed=0):
        rng = np.random.default_rng(seed)
        self.kernel = rng.normal(0, 0.3, (kernel_size, kernel_size, in_channels, filters))
        self.bias = rng.normal(0, 0.1, filters)

    def forward(self, x):
        self.x = x
        N, H, W, C = x.shape
        kh, kw, _, F = self.kernel.shape
        out = np.empty((N, H - kh + 1, W - kw + 1, F), dtype=x.dtype)
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                patch = x[:, i:i + kh, j:j + kw, :]
                out[:, i, j, :] = np.tensordot(patch, self.kernel, axes=([1, 2, 3], [0, 1, 2]))
        return out + self.bias

    def backward(self, dy):
        kh, kw, _, _ = self.kernel.shape
        dx = np.zeros_like(self.x)
        self.dkernel = np.zeros_like(self.kernel)
        for i in range(dy.shape[1]):
            for j in range(dy.shape[2]):
                patch = self.x[:, i:i + kh, j:j + kw, :]
                self.dkernel += np.tensordot(patch, dy[:, i, j, :], axes=([0], [0]))
                contribution = np.tensordot(dy[:, i, j, :], self.kernel, axes=([1], [3]))
                if self.overwrite_dx:
                    dx[:, i:i + kh, j:j + kw, :] = contribution  # bug: overlapping windows overwrite
                else:
                    dx[:, i:i + kh, j:j + kw, :] += contribution
        self.dbias = dy.sum(axis=(0, 1, 2))
        return dx


class Conv2DOverwritesDx(Conv2D):
    overwrite_dx = True


class Dense:
    """y = act(x @ W + b); W (in, units)."""

    averaged_dw = False
    ignore_activation = False

    def __init__(self, units, input_dim, activation=None, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(0, 1 / np.sqrt(input_dim), (input_dim, units)).astype(dtype)
        self.b = rng.normal(0, 0.1, units).astype(dtype)
        self.activation = activation

    def forward(self, x):
        self.x = x
        self.z = x @ self.W + self.b
        return np.maximum(self.z, 0) if self.activation == "relu" else self.z

    def backward(self, dy):
        if self.activation == "relu" and not self.ignore_activation:
            dy = dy * (self.z > 0)
        self.dW = self.x.T @ dy
        if self.averaged_dw:
            self.dW /= len(dy)  # bug: an extra 1/N
        self.db = dy.sum(axis=0)
        return dy @ self.W.T


class DenseAveragedDW(Dense):
    averaged_dw = True


class DenseIgnoresActivation(Dense):
    ignore_activation = True  # bug: the fused relu's derivative is skipped


class LazyDense:
    """Keras-style deferred build: W (in, units) is created by the first forward, when the
    input's width is known."""

    cache_once = False

    def __init__(self, units, seed=0):
        self.units, self.seed = units, seed
        self.W = self.b = self.x = None

    def build(self, input_dim):
        rng = np.random.default_rng(self.seed)
        self.W = rng.normal(0, 1 / np.sqrt(input_dim), (input_dim, self.units))
        self.b = rng.normal(0, 0.1, self.units)

    def forward(self, x):
        if self.W is None:
            self.build(x.shape[-1])
        if not (self.cache_once and self.x is not None):  # bug variant: the input cached at build time only
            self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class LazyDenseCachesOnce(LazyDense):
    cache_once = True


class ReLU:
    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dy):
        return dy * (self.x > 0)


class Flatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


class Dropout:
    """Inverted dropout; the 0/1 mask, drawn anew every training forward, kept in self.mask
    (the input's shape, NHWC)."""

    redraw_in_backward = False

    def __init__(self, rate):
        self.rate = rate
        self.mask = None

    def forward(self, x, training=False):
        if not training:
            return x
        self.mask = (np.random.rand(*x.shape) >= self.rate).astype(x.dtype)
        return x * self.mask / (1 - self.rate)

    def backward(self, dy):
        mask = self.mask
        if self.redraw_in_backward:
            mask = np.random.rand(*dy.shape) >= self.rate  # bug: a new mask, not the forward's
        return dy * mask / (1 - self.rate)


class DropoutRedrawn(Dropout):
    redraw_in_backward = True


class Sequential:
    def __init__(self, layers):
        self.layers = layers

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy


def _model(conv, dense, seed):
    """conv 3->4 (3x3) - relu - flatten (HWC order) - dense 64->5, for (N, 6, 6, 3) inputs."""
    return Sequential([conv(4, 3, 3, seed=seed), ReLU(), Flatten(), dense(5, 4 * 4 * 4, seed=seed + 1)])


CONV2D = NS(Conv2D=Conv2D)
CONV2D_OVERWRITES_DX = NS(Conv2D=Conv2DOverwritesDx)
DENSE_RELU = NS(Dense=Dense)
DENSE_RELU_IGNORES_ACTIVATION = NS(Dense=DenseIgnoresActivation)
LAZY_DENSE = NS(LazyDense=LazyDense)
LAZY_DENSE_CACHES_ONCE = NS(LazyDense=LazyDenseCachesOnce)
DROPOUT = NS(Dropout=Dropout)
DROPOUT_REDRAWN = NS(Dropout=DropoutRedrawn)
MODEL = NS(model=lambda seed: _model(Conv2D, Dense, seed))
MODEL_AVERAGED_DW = NS(model=lambda seed: _model(Conv2D, DenseAveragedDW, seed))
