"""From-scratch layers for tests/test_losses_and_composites.py, written the way public
numpy code writes them: CS231n's im2col with fancy indexing and np.add.at, batch norm that
updates its running statistics in place, a ResNet basic block holding its sub-layers as
attributes, a small stack looping over ``self.layers``."""

from __future__ import annotations

import numpy as np


def im2col_indices(x_shape, k, pad, stride):
    """CS231n's fancy-indexing im2col: rows (channel, ki, kj), columns the output positions."""
    _, c, h, w = x_shape
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    i = np.tile(np.repeat(np.arange(k), k), c)[:, None] + stride * np.repeat(np.arange(oh), ow)[None, :]
    j = np.tile(np.arange(k), k * c)[:, None] + stride * np.tile(np.arange(ow), oh)[None, :]
    return np.repeat(np.arange(c), k * k)[:, None], i, j, oh, ow


class Conv:
    """No bias (it would feed batch norm), weight (F, C, k, k)."""

    def __init__(self, cin, cout, k, stride, pad, rng):
        self.W = rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        self.stride, self.pad = stride, pad

    def forward(self, x):
        p, self.x_shape = self.pad, x.shape
        self.idx = im2col_indices(x.shape, self.W.shape[2], p, self.stride)
        c, i, j, oh, ow = self.idx
        self.cols = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))[:, c, i, j]
        out = np.einsum("fk,nkl->nfl", self.W.reshape(len(self.W), -1), self.cols)
        return out.reshape(x.shape[0], len(self.W), oh, ow)

    def backward(self, dout):
        n, f, p = dout.shape[0], dout.shape[1], self.pad
        d = dout.reshape(n, f, -1)
        self.dW = np.einsum("nfl,nkl->fk", d, self.cols).reshape(self.W.shape)
        c, i, j, _, _ = self.idx
        _, ch, h, w = self.x_shape
        dxp = np.zeros((n, ch, h + 2 * p, w + 2 * p))
        np.add.at(dxp, (slice(None), c, i, j), np.einsum("fk,nfl->nkl", self.W.reshape(f, -1), d))
        return dxp[:, :, p : p + h, p : p + w]


class BatchNorm:
    """Training mode; running statistics updated in place."""

    def __init__(self, c, bug=False):
        self.gamma, self.beta = np.linspace(0.8, 1.2, c), np.linspace(-0.1, 0.1, c)
        self.running_mean, self.running_var, self.bug = np.zeros(c), np.ones(c), bug

    def forward(self, x):
        mu, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        self.running_mean *= 0.9
        self.running_mean += 0.1 * mu
        self.std = np.sqrt(var + 1e-5)[None, :, None, None]
        self.xhat = (x - mu[None, :, None, None]) / self.std
        return self.gamma[None, :, None, None] * self.xhat + self.beta[None, :, None, None]

    def backward(self, dy):
        self.dgamma, self.dbeta = (dy * self.xhat).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))
        dxhat = dy * self.gamma[None, :, None, None]
        mean = 0 if self.bug else dxhat.mean(axis=(0, 2, 3), keepdims=True)  # the bug: the mean term dropped
        return (dxhat - mean - self.xhat * (dxhat * self.xhat).mean(axis=(0, 2, 3), keepdims=True)) / self.std


class ReLU:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


class BasicBlock:
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), ResNet's basic block."""

    def __init__(self, cin=2, cout=3, stride=2, seed=0, bug=None):
        rng = np.random.default_rng(seed)
        self.conv1, self.bn1, self.relu1 = Conv(cin, cout, 3, stride, 1, rng), BatchNorm(cout), ReLU()
        self.conv2, self.bn2 = Conv(cout, cout, 3, 1, 1, rng), BatchNorm(cout, bug=bug == "bn")
        self.shortcut, self.relu2, self.bug = Conv(cin, cout, 1, stride, 0, rng), ReLU(), bug

    def forward(self, x):
        out = self.relu1.forward(self.bn1.forward(self.conv1.forward(x)))
        return self.relu2.forward(self.bn2.forward(self.conv2.forward(out)) + self.shortcut.forward(x))

    def backward(self, dout):
        d = self.relu2.backward(dout)
        dx = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(d)))))
        ds = self.shortcut.backward(d)
        return dx if self.bug == "shortcut" else dx + ds  # the bug: the shortcut's gradient never added


class Dense:
    def __init__(self, fin, fout, rng):
        self.W, self.b = rng.standard_normal((fin, fout)) / np.sqrt(fin), np.zeros(fout)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class GlobalAvgPool:
    def forward(self, x):
        self.shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        n, c, h, w = self.shape
        return np.broadcast_to(dy[:, :, None, None] / (h * w), self.shape).copy()


class Stack:
    """A small stack run by looping over ``self.layers``; ``params_only``: ReLU and pooling
    applied inline, only the layers with parameters in the list."""

    def __init__(self, seed=0, params_only=False):
        rng = np.random.default_rng(seed)
        self.layers = [Conv(2, 4, 3, 1, 1, rng), ReLU(), GlobalAvgPool(), Dense(4, 3, rng)]
        if params_only:
            self.layers, self.inline = [self.layers[0], self.layers[3]], self.layers[1:3]

    def forward(self, x):
        every = self.layers if len(self.layers) == 4 else [self.layers[0], *self.inline, self.layers[1]]
        for layer in every:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        every = self.layers if len(self.layers) == 4 else [self.layers[0], *self.inline, self.layers[1]]
        for layer in reversed(every):
            dy = layer.backward(dy)
        return dy


def softmax_loss(x, y):
    """CS231n's softmax_loss: ``(loss, dx)`` for scores ``x`` (N, C) and integer labels ``y``."""
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    dx = np.exp(log_p)
    dx[np.arange(n), y] -= 1
    return -log_p[np.arange(n), y].mean(), dx / n
