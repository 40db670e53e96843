"""numpy-ml style objects: parameters in ``self.parameters``, gradients accumulated into
``self.gradients``, every forward's input appended to the list ``self.X`` (so a backward can
serve several forwards), and ``flush_gradients()`` to clear both between steps.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


class FullyConnected:
    """Y = X @ W + b; W (n_in, n_out), b (1, n_out)."""

    transposed_dw = False

    def __init__(self, n_in, n_out, seed=0):
        rng = np.random.default_rng(seed)
        W = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out))
        b = rng.normal(0, 0.1, (1, n_out))
        self.parameters = {"W": W, "b": b}
        self.gradients = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self.X = []
        self.trainable = True

    def flush_gradients(self):
        self.X = []
        for k, v in self.gradients.items():
            self.gradients[k] = np.zeros_like(v)

    def forward(self, X, retain_derived=True):
        Y = X @ self.parameters["W"] + self.parameters["b"]
        if retain_derived:
            self.X.append(X)
        return Y

    def backward(self, dLdy, retain_grads=True):
        if not isinstance(dLdy, list):
            dLdy = [dLdy]
        dX = []
        for dy, x in zip(dLdy, self.X):
            dx, dw, db = self._bwd(dy, x)
            dX.append(dx)
            if retain_grads:
                self.gradients["W"] += dw
                self.gradients["b"] += db
        return dX[0] if len(self.X) == 1 else dX

    def _bwd(self, dLdy, X):
        W = self.parameters["W"]
        dX = dLdy @ W.T
        dW = (dLdy.T @ X) if self.transposed_dw else (X.T @ dLdy)
        dB = dLdy.sum(axis=0, keepdims=True)
        return dX, dW, dB


class FullyConnectedTransposedDW(FullyConnected):
    transposed_dw = True  # bug: dLdy.T @ X, the transpose (unnoticed on a square layer)


FULLY_CONNECTED = NS(FullyConnected=FullyConnected)
FULLY_CONNECTED_TRANSPOSED_DW = NS(FullyConnected=FullyConnectedTransposedDW)


class BatchNorm1D:
    """Training-mode batch norm over (N, n_in); parameters 'scaler' and 'intercept' and the
    running statistics all in self.parameters."""

    n_in_denominator = True

    def __init__(self, n_in, momentum=0.9, epsilon=1e-5, seed=0):
        rng = np.random.default_rng(seed)
        self.hyperparameters = {"momentum": momentum, "epsilon": epsilon}
        self.parameters = {
            "scaler": rng.uniform(0.5, 1.5, n_in),
            "intercept": rng.normal(0, 0.1, n_in),
            "running_mean": np.zeros(n_in),
            "running_var": np.ones(n_in),
        }
        self.gradients = {"scaler": np.zeros(n_in), "intercept": np.zeros(n_in)}
        self.X = []

    def flush_gradients(self):
        self.X = []
        for k, v in self.gradients.items():
            self.gradients[k] = np.zeros_like(v)

    def forward(self, X, retain_derived=True):
        mm, ep = self.hyperparameters["momentum"], self.hyperparameters["epsilon"]
        X_mean, X_var = X.mean(axis=0), X.var(axis=0)
        if retain_derived:
            rm, rv = self.parameters["running_mean"], self.parameters["running_var"]
            self.parameters["running_mean"] = mm * rm + (1 - mm) * X_mean
            self.parameters["running_var"] = mm * rv + (1 - mm) * X_var
            self.X.append(X)
        N = (X - X_mean) / np.sqrt(X_var + ep)
        return self.parameters["scaler"] * N + self.parameters["intercept"]

    def backward(self, dLdy, retain_grads=True):
        if not isinstance(dLdy, list):
            dLdy = [dLdy]
        dX = []
        for dy, x in zip(dLdy, self.X):
            dx, d_scaler, d_intercept = self._bwd(dy, x)
            dX.append(dx)
            if retain_grads:
                self.gradients["scaler"] += d_scaler
                self.gradients["intercept"] += d_intercept
        return dX[0] if len(self.X) == 1 else dX

    def _bwd(self, dLdy, X):
        scaler, ep = self.parameters["scaler"], self.hyperparameters["epsilon"]
        n_ex = X.shape[0]
        X_mean, X_var = X.mean(axis=0), X.var(axis=0)
        N = (X - X_mean) / np.sqrt(X_var + ep)
        d_intercept = dLdy.sum(axis=0)
        d_scaler = np.sum(dLdy * N, axis=0)
        dN = dLdy * scaler
        num = n_ex * dN - dN.sum(axis=0) - N * (dN * N).sum(axis=0)
        denom = (n_ex if self.n_in_denominator else 1) * np.sqrt(X_var + ep)
        return num / denom, d_scaler, d_intercept


class BatchNorm1DMissingOneOverN(BatchNorm1D):
    n_in_denominator = False  # bug: the 1/N in front of the input gradient is missing


BATCHNORM1D = NS(BatchNorm1D=BatchNorm1D)
BATCHNORM1D_MISSING_1_OVER_N = NS(BatchNorm1D=BatchNorm1DMissingOneOverN)
