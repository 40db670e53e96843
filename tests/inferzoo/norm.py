"""Normalisations: batch norm 1d/2d (eps 1e-5 and 1e-3, with and without running statistics,
parameters in attributes or dicts, NHWC), layer norm on (N, D) and (N, T, D)."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layouts import Layout

from .entry import Entry, ctor, rng_normal


class BatchNorm1D:
    """(N, D), eps 1e-5, running statistics (momentum 0.1, unbiased variance as PyTorch)."""

    def __init__(self, d, eps=1e-5, momentum=0.1, seed=0, dtype=np.float64):
        self.gamma = (1 + rng_normal(seed, (d,), 0.2, dtype)).astype(dtype)
        self.beta = rng_normal(seed + 1, (d,), 0.2, dtype)
        self.running_mean, self.running_var = np.zeros(d, dtype), np.ones(d, dtype)
        self.eps, self.momentum = eps, momentum

    def forward(self, x):
        n = x.shape[0]
        mu, var = x.mean(axis=0), x.var(axis=0)
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mu
        self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var * n / (n - 1)
        self.std = np.sqrt(var + self.eps)
        self.xhat = (x - mu) / self.std
        return self.gamma * self.xhat + self.beta

    def backward(self, dout):
        n = dout.shape[0]
        self.dgamma = np.sum(dout * self.xhat, axis=0)
        self.dbeta = np.sum(dout, axis=0)
        dxhat = dout * self.gamma
        return (n * dxhat - dxhat.sum(0) - self.xhat * (dxhat * self.xhat).sum(0)) / (n * self.std)


class BN:
    """NCHW spatial batch norm, eps 1e-3, parameters['gamma'], no running statistics."""

    def __init__(self, c, seed=0, dtype=np.float64):
        self.parameters = {
            "gamma": (1 + rng_normal(seed, (c,), 0.2, dtype)).astype(dtype),
            "beta": rng_normal(seed + 1, (c,), 0.2, dtype),
        }
        self.gradients = {}
        self.eps = 1e-3

    def forward(self, x):
        g, b = self.parameters["gamma"], self.parameters["beta"]
        self.mu = x.mean(axis=(0, 2, 3), keepdims=True)
        self.inv = 1.0 / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + self.eps)
        self.xhat = (x - self.mu) * self.inv
        return g.reshape(1, -1, 1, 1) * self.xhat + b.reshape(1, -1, 1, 1)

    def backward(self, dy):
        m = dy.size // dy.shape[1]
        self.gradients["gamma"] = (dy * self.xhat).sum(axis=(0, 2, 3))
        self.gradients["beta"] = dy.sum(axis=(0, 2, 3))
        dxh = dy * self.parameters["gamma"].reshape(1, -1, 1, 1)
        mean_d = dxh.mean(axis=(0, 2, 3), keepdims=True)
        mean_dx = (dxh * self.xhat).sum(axis=(0, 2, 3), keepdims=True) / m
        return self.inv * (dxh - mean_d - self.xhat * mean_dx)


class BatchNormalization:
    """Keras habits: NHWC, axis -1, eps 1e-3, moving statistics not kept in training."""

    def __init__(self, c, seed=0, dtype=np.float64):
        self.gamma = (1 + rng_normal(seed, (c,), 0.2, dtype)).astype(dtype)
        self.beta = rng_normal(seed + 1, (c,), 0.2, dtype)
        self.epsilon = 1e-3

    def forward(self, x):
        self.var = x.var(axis=(0, 1, 2))
        self.xc = x - x.mean(axis=(0, 1, 2))
        self.xn = self.xc / np.sqrt(self.var + self.epsilon)
        return self.gamma * self.xn + self.beta

    def backward(self, dy):
        m = dy.shape[0] * dy.shape[1] * dy.shape[2]
        self.gamma_grad = (dy * self.xn).sum(axis=(0, 1, 2))
        self.beta_grad = dy.sum(axis=(0, 1, 2))
        dxn = dy * self.gamma
        s = np.sqrt(self.var + self.epsilon)
        return (dxn - dxn.sum(axis=(0, 1, 2)) / m - self.xn * (dxn * self.xn).sum(axis=(0, 1, 2)) / m) / s


class LayerNorm:
    """Over the last axis; params['gamma'] / params['beta'] of shape (1, D); eps 1e-5."""

    def __init__(self, d, seed=0, dtype=np.float64):
        self.params = {
            "gamma": (1 + rng_normal(seed, (1, d), 0.2, dtype)).astype(dtype),
            "beta": rng_normal(seed + 1, (1, d), 0.2, dtype),
        }
        self.grads = {}

    def forward(self, x):
        mu = x.mean(axis=-1, keepdims=True)
        self.rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5)
        self.xhat = (x - mu) * self.rstd
        return self.xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy):
        d = dy.shape[-1]
        self.grads["gamma"] = (dy * self.xhat).reshape(-1, d).sum(axis=0, keepdims=True)
        self.grads["beta"] = dy.reshape(-1, d).sum(axis=0, keepdims=True)
        g = dy * self.params["gamma"]
        return self.rstd / d * (d * g - g.sum(-1, keepdims=True) - self.xhat * (g * self.xhat).sum(-1, keepdims=True))


class SeqLayerNorm(LayerNorm):
    """The same layer norm on a (N, T, D) sequence (a transformer block's habit)."""


class BatchNorm1d:
    """(N, D), eps 1e-3, gamma / beta shaped (1, D), the cached-std backward."""

    def __init__(self, d, seed=0, dtype=np.float64):
        self.gamma = (1 + rng_normal(seed, (1, d), 0.2, dtype)).astype(dtype)
        self.beta = rng_normal(seed + 1, (1, d), 0.2, dtype)

    def forward(self, x):
        self.xmu = x - x.mean(axis=0, keepdims=True)
        self.std = np.sqrt((self.xmu**2).mean(axis=0, keepdims=True) + 1e-3)
        self.xn = self.xmu / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        self.dgamma = (dout * self.xn).sum(axis=0, keepdims=True)
        self.dbeta = dout.sum(axis=0, keepdims=True)
        dxn = dout * self.gamma
        return (dxn - dxn.mean(0) - self.xn * (dxn * self.xn).mean(0)) / self.std


BN_ATTRS = {"params": {"weight": "gamma", "bias": "beta"}}

NORM = [
    Entry(
        "bn1d_running_stats",
        ctor(BatchNorm1D, 5),
        (8, 5),
        S.BatchNorm1d("bn", 5),
        BN_ATTRS,
        quirks=("running statistics", "gamma/beta", "eps 1e-5"),
    ),
    Entry(
        "bn2d_params_dict_eps1e-3",
        ctor(BN, 3),
        (4, 3, 3, 2),
        S.BatchNorm2d("bn", 3, eps=1e-3),
        {
            "params": {"weight": "parameters['gamma']", "bias": "parameters['beta']"},
            "grads": {"weight": "gradients['gamma']", "bias": "gradients['beta']"},
        },
        quirks=("parameters dict", "gradients dict", "eps 1e-3", "no running statistics"),
    ),
    Entry(
        "bn_nhwc_keras",
        ctor(BatchNormalization, 4),
        (3, 3, 2, 4),
        S.BatchNorm2d("bn", 4, eps=1e-3),
        {
            "layout": Layout(data="NHWC"),
            "params": {"weight": "gamma", "bias": "beta"},
            "grads": {"weight": "gamma_grad", "bias": "beta_grad"},
        },
        quirks=("NHWC", "eps 1e-3", "epsilon name"),
    ),
    Entry(
        "layernorm_params_dict",
        ctor(LayerNorm, 6),
        (4, 6),
        S.LayerNorm("ln", 6),
        {
            "params": {"weight": "params['gamma']", "bias": "params['beta']"},
            "grads": {"weight": "grads['gamma']", "bias": "grads['beta']"},
        },
        quirks=("params dict", "gamma (1, D)"),
    ),
    Entry(
        "layernorm_sequence",
        ctor(SeqLayerNorm, 4),
        (2, 3, 4),
        S.LayerNorm("ln", 4),
        {
            "params": {"weight": "params['gamma']", "bias": "params['beta']"},
            "grads": {"weight": "grads['gamma']", "bias": "grads['beta']"},
        },
        quirks=("3-D input (N, T, D)", "params dict"),
    ),
    Entry(
        "bn1d_eps1e-3_row_params",
        ctor(BatchNorm1d, 6),
        (7, 6),
        S.BatchNorm1d("bn", 6, eps=1e-3),
        BN_ATTRS,
        quirks=("eps 1e-3", "gamma (1, D)", "no running statistics"),
    ),
]
