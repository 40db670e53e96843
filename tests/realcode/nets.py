"""Networks and losses: a float32 MLP whose activation has no parameters, a two-layer net whose
``loss(X, y) -> (loss, grads)`` keys everything by dotted names (``"fc1.weight"``), and a loss
object whose ``forward(scores, y, reg)`` needs the regularisation strength.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


class Dense32:
    def __init__(self, n_in, n_out, seed=0):
        rng = np.random.default_rng(seed)
        self.W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        self.b = (0.1 * rng.standard_normal(n_out)).astype(np.float32)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW = self.x.T @ dy
        self.db = dy.sum(axis=0)
        return dy @ self.W.T


class LeakyReLU:
    """No parameters: computes in whatever dtype it is handed."""

    def __init__(self, alpha=0.1):
        self.alpha = alpha

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, self.alpha * x)

    def backward(self, dy):
        return np.where(self.x > 0, dy, self.alpha * dy)


class LeakyReLUNoSlope(LeakyReLU):
    def backward(self, dy):
        return dy * (self.x > 0)  # bug: the negative side's slope is dropped


class MLP32:
    act = LeakyReLU

    def __init__(self, seed=0):
        self.fc1, self.act, self.fc2 = Dense32(6, 8, seed), self.act(0.1), Dense32(8, 3, seed + 1)

    def forward(self, x):
        return self.fc2.forward(self.act.forward(self.fc1.forward(x)))

    def backward(self, dy):
        return self.fc1.backward(self.act.backward(self.fc2.backward(dy)))


class MLP32NoSlope(MLP32):
    act = LeakyReLUNoSlope


MLP_FLOAT32 = NS(MLP32=MLP32)
MLP_FLOAT32_NO_SLOPE = NS(MLP32=MLP32NoSlope)


class TanhNet:
    """fc1 - tanh - fc2 - softmax cross-entropy; weights stored (out, in) and keyed by dotted
    names, gradients returned under the same keys."""

    tanh_grad_squared = True

    def __init__(self, sizes=(5, 7, 3), seed=0):
        rng = np.random.default_rng(seed)
        d, h, c = sizes
        self.params = {
            "fc1.weight": rng.standard_normal((h, d)) / np.sqrt(d), "fc1.bias": 0.1 * rng.standard_normal(h),
            "fc2.weight": rng.standard_normal((c, h)) / np.sqrt(h), "fc2.bias": 0.1 * rng.standard_normal(c),
        }

    def loss(self, X, y):
        p = self.params
        a = np.tanh(X @ p["fc1.weight"].T + p["fc1.bias"])
        scores = a @ p["fc2.weight"].T + p["fc2.bias"]
        scores = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        N = len(X)
        loss = -np.log(probs[np.arange(N), y]).mean()
        ds = probs.copy()
        ds[np.arange(N), y] -= 1
        ds /= N
        da = ds @ p["fc2.weight"]
        dz = da * (1 - a ** 2) if self.tanh_grad_squared else da * (1 - a)  # bug variant: 1 - a
        grads = {"fc2.weight": ds.T @ a, "fc2.bias": ds.sum(axis=0), "fc1.weight": dz.T @ X, "fc1.bias": dz.sum(axis=0)}
        return loss, grads


class TanhNetWrongDerivative(TanhNet):
    tanh_grad_squared = False


TANH_NET = NS(TanhNet=TanhNet)
TANH_NET_WRONG_DERIVATIVE = NS(TanhNet=TanhNetWrongDerivative)


class SoftmaxCrossEntropyLoss:
    """forward(scores, y, reg, weights=()) -> mean cross-entropy + 0.5 * reg * sum ||W||^2;
    backward() -> d loss / d scores."""

    averaged = True

    def forward(self, scores, y, reg, weights=()):
        shifted = scores - scores.max(axis=1, keepdims=True)
        self.probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        self.y = y
        data_loss = -np.mean(np.log(self.probs[np.arange(len(y)), y]))
        return data_loss + 0.5 * reg * sum(np.sum(w * w) for w in weights)

    def backward(self):
        d = self.probs.copy()
        d[np.arange(len(self.y)), self.y] -= 1
        return d / len(self.y) if self.averaged else d  # bug variant: not divided by N


class SoftmaxCrossEntropyLossNotAveraged(SoftmaxCrossEntropyLoss):
    averaged = False


LOSS_OBJECT = NS(SoftmaxCrossEntropyLoss=SoftmaxCrossEntropyLoss)
LOSS_OBJECT_NOT_AVERAGED = NS(SoftmaxCrossEntropyLoss=SoftmaxCrossEntropyLossNotAveraged)
