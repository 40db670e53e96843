"""Wrong-kind mutants: a forward bug that makes ANOTHER kind (or hyperparameter, or layout)
fit better than the one the code means. The class name and the backward say what was
intended (``spec``); checked against it the verdict must be ``forward`` (the backward is the
intended layer's true gradient), and inference must not call the better-fitting wrong kind
``exact``."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness import spec as S
from harness.adapters.layouts import Layout

from .entry import Entry, ctor, free, rng_normal
from .mutants_free import GELU, AvgPool, Flatten, LeakyReLU, MaxPool, ReLU, Sigmoid, Softmax


class Dense:
    """Intended y = x W^T + b with W (out, in) (its backward); the forward forgets the transpose
    of the square W, which is Linear under Layout(linear='in_out')."""

    def __init__(self, n=5, seed=0, dtype=np.float64):
        self.W = rng_normal(seed, (n, n), 1 / np.sqrt(n), dtype)
        self.b = rng_normal(seed + 1, (n,), 0.1, dtype)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b  # bug: W, not W.T

    def backward(self, dy):
        self.dW, self.db = dy.T @ self.x, dy.sum(axis=0)
        return dy @ self.W


class Conv:
    """Intended cross-correlation (its backward); the forward flips the kernel (a true conv)."""

    def __init__(self, cin=2, cout=3, seed=0, dtype=np.float64):
        self.W = rng_normal(seed, (cout, cin, 3, 3), 0.3, dtype)
        self.b = rng_normal(seed + 1, (cout,), 0.1, dtype)

    def forward(self, x):
        self.x = x
        win = sliding_window_view(x, (3, 3), axis=(2, 3))
        return np.einsum("nchwij,fcij->nfhw", win, self.W[:, :, ::-1, ::-1]) + self.b[:, None, None]  # bug

    def backward(self, dy):
        win = sliding_window_view(self.x, (3, 3), axis=(2, 3))
        self.dW, self.db = np.einsum("nfhw,nchwij->fcij", dy, win), dy.sum(axis=(0, 2, 3))
        dx = np.zeros_like(self.x)
        oh, ow = dy.shape[2:]
        for i in range(3):
            for j in range(3):
                dx[:, :, i : i + oh, j : j + ow] += np.einsum("nfhw,fc->nchw", dy, self.W[:, :, i, j])
        return dx


class ConvPad:
    """Intended padding 1 (its backward crops 1); the forward pads by edge replication instead
    of zeros: closest to the padding-1 conv, exactly no kind."""

    def __init__(self, cin=2, cout=3, seed=0, dtype=np.float64):
        self.W = rng_normal(seed, (cout, cin, 3, 3), 0.3, dtype)
        self.b = rng_normal(seed + 1, (cout,), 0.1, dtype)

    def forward(self, x):
        self.xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")  # bug: edge, not zeros
        win = sliding_window_view(self.xp, (3, 3), axis=(2, 3))
        return np.einsum("nchwij,fcij->nfhw", win, self.W) + self.b[:, None, None]

    def backward(self, dy):
        xp = self.xp.copy()
        xp[:, :, 0, :], xp[:, :, -1, :], xp[:, :, :, 0], xp[:, :, :, -1] = 0, 0, 0, 0  # the zero-padded input
        win = sliding_window_view(xp, (3, 3), axis=(2, 3))
        self.dW, self.db = np.einsum("nfhw,nchwij->fcij", dy, win), dy.sum(axis=(0, 2, 3))
        dxp = np.zeros_like(xp)
        h, w = dy.shape[2:]
        for i in range(3):
            for j in range(3):
                dxp[:, :, i : i + h, j : j + w] += np.einsum("nfhw,fc->nchw", dy, self.W[:, :, i, j])
        return dxp[:, :, 1:-1, 1:-1]


class BatchNorm:
    """Intended eps 1e-5 (the attribute and the backward); the forward hard-codes 1e-3."""

    def __init__(self, d=4, seed=0, dtype=np.float64):
        self.gamma = (1 + rng_normal(seed, (d,), 0.2, dtype)).astype(dtype)
        self.beta = rng_normal(seed + 1, (d,), 0.2, dtype)
        self.eps = 1e-5

    def forward(self, x):
        self.x, self.mu, self.var = x, x.mean(axis=0), x.var(axis=0)
        return self.gamma * (x - self.mu) / np.sqrt(self.var + 1e-3) + self.beta  # bug

    def backward(self, dy):
        n, std = dy.shape[0], np.sqrt(self.var + self.eps)
        xhat = (self.x - self.mu) / std
        self.dgamma, self.dbeta = (dy * xhat).sum(0), dy.sum(0)
        g = dy * self.gamma
        return (n * g - g.sum(0) - xhat * (g * xhat).sum(0)) / (n * std)


BN_NAMES = {"params": {"weight": "gamma", "bias": "beta"}}

MUTANTS = [
    Entry(
        "maxpool_forward_averages",
        free(MaxPool),
        (2, 3, 4, 6),
        S.MaxPool2d("pool", 2),
        verdict="forward",
        bug="AvgPool2d(2) fits the forward",
        fits=(S.AvgPool2d("pool", 2), {}),
    ),
    Entry(
        "avgpool_forward_maxes",
        free(AvgPool),
        (2, 3, 4, 4),
        S.AvgPool2d("pool", 2),
        verdict="forward",
        bug="MaxPool2d(2) fits the forward",
        fits=(S.MaxPool2d("pool", 2), {}),
    ),
    Entry(
        "relu_forward_leaks",
        free(ReLU),
        (4, 6),
        S.ReLU("relu"),
        verdict="forward",
        bug="LeakyReLU(0.01) fits the forward",
        fits=(S.LeakyReLU("relu", 0.01), {}),
    ),
    Entry(
        "leaky_forward_slope_0.1",
        free(LeakyReLU),
        (4, 6),
        S.LeakyReLU("lrelu", 0.01),
        verdict="forward",
        bug="LeakyReLU(0.1) fits the forward",
        fits=(S.LeakyReLU("lrelu", 0.1), {}),
    ),
    Entry(
        "sigmoid_forward_tanh",
        free(Sigmoid),
        (3, 5),
        S.Sigmoid("sig"),
        verdict="forward",
        bug="Tanh fits the forward",
        fits=(S.Tanh("sig"), {}),
    ),
    Entry(
        "gelu_forward_exact_backward_tanh",
        free(GELU),
        (4, 5),
        S.GELU("gelu", approximate="tanh"),
        verdict="forward",
        bug="GELU(approximate='none') fits the forward",
        fits=(S.GELU("gelu"), {}),
    ),
    Entry(
        "softmax_forward_axis0",
        free(Softmax),
        (4, 6),
        S.Softmax("softmax", axis=1),
        verdict="forward",
        bug="Softmax(axis=0) fits the forward",
        fits=(S.Softmax("softmax", axis=0), {}),
    ),
    Entry(
        "dense_square_forgets_transpose",
        ctor(Dense),
        (4, 5),
        S.Linear("fc", 5, 5),
        verdict="forward",
        bug="Linear under Layout(linear='in_out') fits the forward",
        fits=(S.Linear("fc", 5, 5), {"layout": Layout(linear="in_out")}),
    ),
    Entry(
        "conv_forward_flips_kernel",
        ctor(Conv),
        (2, 2, 5, 6),
        S.Conv2d("conv", 2, 3, 3),
        verdict="forward",
        bug="Conv2d under Layout(flip=True) fits the forward",
        fits=(S.Conv2d("conv", 2, 3, 3), {"layout": Layout(flip=True)}),
    ),
    Entry(
        "conv_forward_edge_padding",
        ctor(ConvPad),
        (2, 2, 5, 5),
        S.Conv2d("conv", 2, 3, 3, padding=1),
        verdict="forward",
        bug="no kind fits; the padding-1 conv is closest",
    ),
    Entry(
        "bn_forward_eps_1e-3",
        ctor(BatchNorm),
        (8, 4),
        S.BatchNorm1d("bn", 4),
        BN_NAMES,
        verdict="forward",
        bug="BatchNorm1d(eps=1e-3) fits the forward",
        fits=(S.BatchNorm1d("bn", 4, eps=1e-3), BN_NAMES),
    ),
    Entry(
        "flatten_forward_hwc",
        free(Flatten),
        (2, 3, 2, 4),
        S.Flatten("flat"),
        verdict="forward",
        bug="Flatten under Layout(flatten='HWC') fits the forward",
        fits=(S.Flatten("flat"), {"layout": Layout(flatten="HWC")}),
    ),
]


class ConvPadZero(ConvPad):
    """Intended padding 1 (its backward crops 1); the forward does not pad at all, so its
    output is 2 pixels smaller: Conv2d with padding 0 fits the forward, and the shape the
    intended layer expects does not come out (the explicit check says ``error``)."""

    def forward(self, x):
        self.xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = sliding_window_view(x, (3, 3), axis=(2, 3))  # bug: slides over the unpadded input
        return np.einsum("nchwij,fcij->nfhw", win, self.W) + self.b[:, None, None]


# forward bugs that change the output's shape: the intended spec cannot even be compared
SHAPE_MUTANTS = [
    Entry(
        "conv_forward_pads_0_backward_1",
        ctor(ConvPadZero),
        (2, 2, 5, 5),
        S.Conv2d("conv", 2, 3, 3, padding=1),
        verdict="error",
        bug="Conv2d(padding=0) fits the forward; its output shape is not the intended one",
        fits=(S.Conv2d("conv", 2, 3, 3), {}),
    ),
]
