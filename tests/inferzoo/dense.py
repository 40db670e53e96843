"""Fully connected layers: weights (in, out) and (out, in), a square W, w1/b1 names, bias
(1, D), a loop over the batch, gradients returned in a list or a dict, a fused ReLU, a
flatten folded into the affine."""

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


DENSE = [
    Entry(
        "fc_out_in",
        ctor(FullyConnected, 5, 3),
        (4, 5),
        S.Linear("fc", 5, 3),
        quirks=("weights (out, in)", "weights_grad suffix"),
    ),
    Entry(
        "affine_flattens_4d",
        ctor(Affine, 24, 5),
        (2, 2, 3, 4),
        S.Sequential([S.Flatten("flat"), S.Linear("fc", 24, 5)], name="affine"),
        {"layout": IN_OUT, "params": {"fc.weight": "params['W']", "fc.bias": "params['b']"}},
        quirks=("flatten folded in", "params dict", "grads dict", "W (in, out)"),
    ),
    Entry(
        "dense_bias_row_returns_list",
        ctor(Dense, 6, 4),
        (3, 6),
        S.Linear("fc", 6, 4),
        {"layout": IN_OUT},
        quirks=("W (in, out)", "bias (1, D)", "in-place +=", "returns (dx, [dW, db])"),
    ),
    Entry(
        "linear_square_w1_batch_loop",
        ctor(Linear, 5),
        (4, 5),
        S.Linear("fc", 5, 5),
        {"params": {"weight": "w1", "bias": "b1"}, "grads": {"weight": "dw1", "bias": "db1"}},
        quirks=("square W", "w1/b1 names", "batch loop"),
    ),
    Entry(
        "linear_nobias_returns_dict",
        ctor(NoBiasLinear, 4, 6),
        (3, 4),
        S.Linear("fc", 4, 6, bias=False),
        {"layout": IN_OUT},
        quirks=("no bias", "einsum", "returns (dx, {'weight': dW})"),
    ),
    Entry(
        "dense_fused_relu",
        ctor(DenseReLU, 5, 4),
        (6, 5),
        S.Sequential([S.Linear("fc", 5, 4), S.ReLU("relu")], name="dense"),
        {"layout": IN_OUT},
        quirks=("fused activation", "W (in, out)"),
    ),
]
