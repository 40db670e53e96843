"""Composite objects: a residual block holding its conv / batch-norm / relu sub-objects as
attributes, and a small network object holding its layers in a ``.layers`` list; each
sub-layer keeps its own parameters and gradients (``W``/``dW``, ``gamma``/``dgamma``).
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


class Conv:
    """3x3, stride 1, padding 1, no bias (a batch norm follows): shift-and-add over the kernel
    taps, each an einsum over the channels."""

    def __init__(self, in_channels, out_channels, seed=0):
        self.W = np.random.default_rng(seed).normal(0, 0.4, (out_channels, in_channels, 3, 3))

    def forward(self, x):
        self.xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        H, W = x.shape[2:]
        return sum(np.einsum("nchw,fc->nfhw", self.xp[:, :, a:a + H, b:b + W], self.W[:, :, a, b])
                   for a in range(3) for b in range(3))

    def backward(self, dy):
        H, W = dy.shape[2:]
        self.dW = np.zeros_like(self.W)
        dxp = np.zeros_like(self.xp)
        for a in range(3):
            for b in range(3):
                self.dW[:, :, a, b] = np.einsum("nfhw,nchw->fc", dy, self.xp[:, :, a:a + H, b:b + W])
                dxp[:, :, a:a + H, b:b + W] += np.einsum("nfhw,fc->nchw", dy, self.W[:, :, a, b])
        return dxp[:, :, 1:-1, 1:-1]


class BatchNorm2d:
    """Training mode; gamma, beta (C,); running statistics updated, not used here."""

    def __init__(self, C, momentum=0.1, eps=1e-5, seed=0):
        rng = np.random.default_rng(seed)
        self.gamma, self.beta = rng.uniform(0.5, 1.5, C), rng.normal(0, 0.1, C)
        self.running_mean, self.running_var = np.zeros(C), np.ones(C)
        self.momentum, self.eps = momentum, eps

    def forward(self, x):
        mu, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        m = x.size // x.shape[1]
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mu
        self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var * m / (m - 1)
        self.rstd = 1 / np.sqrt(var + self.eps)[None, :, None, None]
        self.xhat = (x - mu[None, :, None, None]) * self.rstd
        return self.gamma[None, :, None, None] * self.xhat + self.beta[None, :, None, None]

    def backward(self, dy):
        self.dgamma, self.dbeta = (dy * self.xhat).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))
        g = dy * self.gamma[None, :, None, None]
        mean = lambda t: t.mean(axis=(0, 2, 3), keepdims=True)  # noqa: E731
        return self.rstd * (g - mean(g) - self.xhat * mean(g * self.xhat))


class ReLU:
    def forward(self, x):
        self.out = np.maximum(x, 0)
        return self.out

    def backward(self, dy):
        return dy * (self.out > 0)


class ReLUMaskFromDy(ReLU):
    def backward(self, dy):
        return dy * (dy > 0)  # bug: the mask recomputed from the gradient


class ResidualBlock:
    """relu(bn2(conv2(relu1(bn1(conv1(x))))) + x)."""

    shortcut_grad = True

    def __init__(self, channels, seed=0):
        self.conv1, self.bn1, self.relu1 = Conv(channels, channels, seed), BatchNorm2d(channels, seed=seed + 1), ReLU()
        self.conv2, self.bn2, self.relu = Conv(channels, channels, seed + 2), BatchNorm2d(channels, seed=seed + 3), ReLU()

    def forward(self, x):
        out = self.bn1.forward(self.conv1.forward(x))
        out = self.bn2.forward(self.conv2.forward(self.relu1.forward(out)))
        return self.relu.forward(out + x)

    def backward(self, dy):
        d = self.relu.backward(dy)
        dblock = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(d)))))
        return dblock + d if self.shortcut_grad else dblock  # bug variant: the identity path is forgotten


class ResidualBlockNoShortcutGrad(ResidualBlock):
    shortcut_grad = False


RESIDUAL_BLOCK = NS(ResidualBlock=ResidualBlock)
RESIDUAL_BLOCK_NO_SHORTCUT_GRAD = NS(ResidualBlock=ResidualBlockNoShortcutGrad)


class MaxPool2x2:
    """2x2 windows, stride 2, via a reshape; the gradient goes to each window's first maximum."""

    def forward(self, x):
        N, C, H, W = x.shape
        win = x.reshape(N, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, H // 2, W // 2, 4)
        self.arg, self.shape = win.argmax(axis=-1), x.shape
        return win.max(axis=-1)

    def backward(self, dy):
        N, C, H, W = self.shape
        win = np.zeros(dy.shape + (4,), dtype=dy.dtype)
        np.put_along_axis(win, self.arg[..., None], dy[..., None], axis=-1)
        return win.reshape(N, C, H // 2, W // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, H, W)


class Flatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


class Linear:
    def __init__(self, n_in, n_out, seed=0):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)), rng.normal(0, 0.1, n_out)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class Net:
    """conv(2->3, no bias) - relu - maxpool - flatten - linear(3*3*3 -> 4) on (N, 2, 6, 6),
    held as a list and run in order."""

    relu = ReLU

    def __init__(self, seed=0):
        self.layers = [Conv(2, 3, seed), self.relu(), MaxPool2x2(), Flatten(), Linear(27, 4, seed + 1)]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in self.layers[::-1]:
            dy = layer.backward(dy)
        return dy


class NetMaskFromDy(Net):
    relu = ReLUMaskFromDy


LAYERS_LIST = NS(Net=Net)
LAYERS_LIST_MASK_FROM_DY = NS(Net=NetMaskFromDy)
