"""Fully connected layers and normalisations: weights (in, out) and (out, in), a square W,
w1/b1 names, bias (1, D), a loop over the batch, gradients returned in a list or a dict,
a fused ReLU, a flatten folded into the affine; batch norm 1d/2d (eps 1e-5 and 1e-3, with
and without running statistics, NHWC), layer norm."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layouts import Layout

from .entry import Entry, ctor, rng_normal

IN_OUT = Layout(linear="in_out")


class FullyConnected:
    """PyTorch orientation: weights (out, in), y = x W^T + b."""

    def __init__(self, n_in, n_out, seed=0, dtype=np.float64):
        self.weights = rng_normal(seed, (n_out, n_in), 1 / np.sqrt(n_in), dtype)
        self.bias = rng_normal(seed + 1, (n_out,), 0.1, dtype)

    def forward(self, x):
        self.input = x
        return x @ self.weights.T + self.bias

    def backward(self, grad_output):
        self.weights_grad = grad_output.T @ self.input
        self.bias_grad = grad_output.sum(0)
        return grad_output @ self.weights


class Affine:
    """CS231n habit: a 4-D input flattened inside, params['W'] (D, M), grads['W']."""

    def __init__(self, d, m, seed=0, dtype=np.float64):
        self.params = {"W": rng_normal(seed, (d, m), 0.2, dtype), "b": rng_normal(seed + 1, (m,), 0.1, dtype)}
        self.grads = {}

    def forward(self, x):
        self.x_shape = x.shape
        self.x2 = x.reshape(x.shape[0], -1)
        return self.x2.dot(self.params["W"]) + self.params["b"]

    def backward(self, dout):
        self.grads["W"] = self.x2.T.dot(dout)
        self.grads["b"] = np.sum(dout, axis=0)
        return dout.dot(self.params["W"].T).reshape(self.x_shape)


class Dense:
    """W (in, out), b (1, out), in-place bias add; gradients returned as (dx, [dW, db])."""

    def __init__(self, n_in, n_out, seed=0, dtype=np.float64):
        self.W = rng_normal(seed, (n_in, n_out), 1 / np.sqrt(n_in), dtype)
        self.b = rng_normal(seed + 1, (1, n_out), 0.1, dtype)

    def forward(self, X):
        self.X = X
        out = X @ self.W
        out += self.b
        return out

    def backward(self, dY):
        dW = self.X.T @ dY
        db = dY.sum(axis=0, keepdims=True)
        return dY @ self.W.T, [dW, db]


class Linear:
    """A square weight under names w1 / b1 (out, in); a loop over the batch."""

    def __init__(self, n, seed=0, dtype=np.float64):
        self.w1 = rng_normal(seed, (n, n), 1 / np.sqrt(n), dtype)
        self.b1 = rng_normal(seed + 1, (n,), 0.1, dtype)

    def forward(self, x):
        self.x = x
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = self.w1 @ x[i] + self.b1
        return out

    def backward(self, dy):
        self.dw1 = np.zeros_like(self.w1)
        dx = np.empty_like(dy)
        for i in range(dy.shape[0]):
            self.dw1 += np.outer(dy[i], self.x[i])
            dx[i] = self.w1.T @ dy[i]
        self.db1 = dy.sum(axis=0)
        return dx


class NoBiasLinear:
    """No bias; (in, out); gradients returned in a dict keyed like the parameters."""

    def __init__(self, n_in, n_out, seed=0, dtype=np.float64):
        self.weight = rng_normal(seed, (n_in, n_out), 0.3, dtype)

    def forward(self, x):
        self.x = x
        return np.einsum("ni,io->no", x, self.weight)

    def backward(self, g):
        return np.einsum("no,io->ni", g, self.weight), {"weight": np.einsum("ni,no->io", self.x, g)}


class DenseReLU:
    """A Dense with the activation fused in (activation='relu')."""

    def __init__(self, n_in, n_out, seed=0, dtype=np.float64):
        self.W = rng_normal(seed, (n_in, n_out), 1 / np.sqrt(n_in), dtype)
        self.b = rng_normal(seed + 1, (n_out,), 0.1, dtype)

    def forward(self, x):
        self.x = x
        self.z = x @ self.W + self.b
        return np.maximum(self.z, 0)

    def backward(self, dy):
        dz = dy * (self.z > 0)
        self.dW, self.db = self.x.T @ dz, dz.sum(axis=0)
        return dz @ self.W.T


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
        self.parameters = {"gamma": (1 + rng_normal(seed, (c,), 0.2, dtype)).astype(dtype),
                           "beta": rng_normal(seed + 1, (c,), 0.2, dtype)}
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
        self.params = {"gamma": (1 + rng_normal(seed, (1, d), 0.2, dtype)).astype(dtype),
                       "beta": rng_normal(seed + 1, (1, d), 0.2, dtype)}
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


BN_ATTRS = {"params": {"weight": "gamma", "bias": "beta"}}

DENSE = [
    Entry("fc_out_in", ctor(FullyConnected, 5, 3), (4, 5), S.Linear("fc", 5, 3),
          quirks=("weights (out, in)", "weights_grad suffix")),
    Entry("affine_flattens_4d", ctor(Affine, 24, 5), (2, 2, 3, 4),
          S.Sequential([S.Flatten("flat"), S.Linear("fc", 24, 5)], name="affine"),
          {"layout": IN_OUT, "params": {"fc.weight": "params['W']", "fc.bias": "params['b']"}},
          quirks=("flatten folded in", "params dict", "grads dict", "W (in, out)")),
    Entry("dense_bias_row_returns_list", ctor(Dense, 6, 4), (3, 6), S.Linear("fc", 6, 4), {"layout": IN_OUT},
          quirks=("W (in, out)", "bias (1, D)", "in-place +=", "returns (dx, [dW, db])")),
    Entry("linear_square_w1_batch_loop", ctor(Linear, 5), (4, 5), S.Linear("fc", 5, 5),
          {"params": {"weight": "w1", "bias": "b1"}, "grads": {"weight": "dw1", "bias": "db1"}},
          quirks=("square W", "w1/b1 names", "batch loop")),
    Entry("linear_nobias_returns_dict", ctor(NoBiasLinear, 4, 6), (3, 4), S.Linear("fc", 4, 6, bias=False),
          {"layout": IN_OUT}, quirks=("no bias", "einsum", "returns (dx, {'weight': dW})")),
    Entry("dense_fused_relu", ctor(DenseReLU, 5, 4), (6, 5),
          S.Sequential([S.Linear("fc", 5, 4), S.ReLU("relu")], name="dense"), {"layout": IN_OUT},
          quirks=("fused activation", "W (in, out)")),
    Entry("bn1d_running_stats", ctor(BatchNorm1D, 5), (8, 5), S.BatchNorm1d("bn", 5), BN_ATTRS,
          quirks=("running statistics", "gamma/beta", "eps 1e-5")),
    Entry("bn2d_params_dict_eps1e-3", ctor(BN, 3), (4, 3, 3, 2), S.BatchNorm2d("bn", 3, eps=1e-3),
          {"params": {"weight": "parameters['gamma']", "bias": "parameters['beta']"},
           "grads": {"weight": "gradients['gamma']", "bias": "gradients['beta']"}},
          quirks=("parameters dict", "gradients dict", "eps 1e-3", "no running statistics")),
    Entry("bn_nhwc_keras", ctor(BatchNormalization, 4), (3, 3, 2, 4), S.BatchNorm2d("bn", 4, eps=1e-3),
          {"layout": Layout(data="NHWC"), "params": {"weight": "gamma", "bias": "beta"},
           "grads": {"weight": "gamma_grad", "bias": "beta_grad"}},
          quirks=("NHWC", "eps 1e-3", "epsilon name")),
    Entry("layernorm_params_dict", ctor(LayerNorm, 6), (4, 6), S.LayerNorm("ln", 6),
          {"params": {"weight": "params['gamma']", "bias": "params['beta']"},
           "grads": {"weight": "grads['gamma']", "bias": "grads['beta']"}},
          quirks=("params dict", "gamma (1, D)")),
]
