"""Object-style layers with the quirks of from-scratch code: batch norm without running
statistics or with ``(1, D)`` rows, a bias ``(F, 1)``, in-place ``*=`` in backward, SGD inside
backward, a first layer that returns no input gradient, gradients returned instead of stored
(``(dx, [dW, db])``, ``(dx, (dgamma, dbeta))``), a dropout mask kept in ``self._mask``.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


class BatchNorm:
    """Training-only batch norm over the channels of (N, C, H, W); gamma, beta (C,); no
    running statistics are kept (the model is never evaluated in inference mode)."""

    mean_path = True

    def __init__(self, num_channels, eps=1e-5, seed=0):
        rng = np.random.default_rng(seed)
        self.gamma = rng.uniform(0.5, 1.5, num_channels)
        self.beta = rng.normal(0, 0.1, num_channels)
        self.eps = eps

    def forward(self, x):
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        var = x.var(axis=(0, 2, 3), keepdims=True)
        self.std = np.sqrt(var + self.eps)
        self.xhat = (x - mu) / self.std
        return self.gamma[None, :, None, None] * self.xhat + self.beta[None, :, None, None]

    def backward(self, dy):
        m = dy.shape[0] * dy.shape[2] * dy.shape[3]
        self.dgamma = (dy * self.xhat).sum(axis=(0, 2, 3))
        self.dbeta = dy.sum(axis=(0, 2, 3))
        dxhat = dy * self.gamma[None, :, None, None]
        mean_term = dxhat.sum(axis=(0, 2, 3), keepdims=True) if self.mean_path else 0  # bug variant: dropped
        return (m * dxhat - mean_term - self.xhat * (dxhat * self.xhat).sum(axis=(0, 2, 3), keepdims=True)) / (m * self.std)


class BatchNormNoMeanPath(BatchNorm):
    mean_path = False


BATCHNORM = NS(BatchNorm=BatchNorm)
BATCHNORM_NO_MEAN_PATH = NS(BatchNorm=BatchNormNoMeanPath)


class BatchNormRows:
    """Batch norm over (N, D) with every array kept as a row: gamma, beta, running_mean,
    running_var (1, D), broadcast against the batch without reshapes."""

    dgamma_forgets_xhat = False

    def __init__(self, D, momentum=0.9, eps=1e-5, seed=0):
        rng = np.random.default_rng(seed)
        self.gamma = rng.uniform(0.5, 1.5, (1, D))
        self.beta = rng.normal(0, 0.1, (1, D))
        self.running_mean, self.running_var = np.zeros((1, D)), np.ones((1, D))
        self.momentum, self.eps = momentum, eps

    def forward(self, x):
        mu, var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)
        self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
        self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.xhat = (x - mu) * self.inv_std
        return self.gamma * self.xhat + self.beta

    def backward(self, dy):
        N = dy.shape[0]
        self.dbeta = dy.sum(axis=0, keepdims=True)
        if self.dgamma_forgets_xhat:
            self.dgamma = dy.sum(axis=0, keepdims=True)  # bug: copied from dbeta
        else:
            self.dgamma = (dy * self.xhat).sum(axis=0, keepdims=True)
        dxhat = dy * self.gamma
        return self.inv_std / N * (N * dxhat - dxhat.sum(axis=0) - self.xhat * (dxhat * self.xhat).sum(axis=0))


class BatchNormRowsDgammaForgetsXhat(BatchNormRows):
    dgamma_forgets_xhat = True


BATCHNORM_ROWS = NS(BatchNormRows=BatchNormRows)
BATCHNORM_ROWS_DGAMMA_FORGETS_XHAT = NS(BatchNormRows=BatchNormRowsDgammaForgetsXhat)


class ConvIm2col:
    """Conv with stride 1, 'same' padding for odd kernels, as a matrix product:
    W (F, C, k, k), b (F, 1) so that W_col @ X_col + b broadcasts over the columns."""

    forgets_transpose = False

    def __init__(self, in_channels, filters, k, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(0, 0.3, (filters, in_channels, k, k))
        self.b = rng.normal(0, 0.1, (filters, 1))
        self.pad = k // 2

    def _columns(self, x):
        N, C, H, W = x.shape
        k = self.W.shape[2]
        xp = np.pad(x, ((0, 0), (0, 0), (self.pad, self.pad), (self.pad, self.pad)))
        cols = np.empty((C, k, k, H, W, N), dtype=x.dtype)
        for di in range(k):
            for dj in range(k):
                cols[:, di, dj] = xp[:, :, di:di + H, dj:dj + W].transpose(1, 2, 3, 0)
        return cols.reshape(C * k * k, -1)  # rows (c, di, dj), columns (h, w, n)

    def forward(self, x):
        self.x_shape = x.shape
        self.X_col = self._columns(x)
        F = self.W.shape[0]
        N, _, H, W = x.shape
        out = self.W.reshape(F, -1) @ self.X_col + self.b
        return out.reshape(F, H, W, N).transpose(3, 0, 1, 2)

    def backward(self, dout):
        F = self.W.shape[0]
        N, C, H, W = self.x_shape
        k = self.W.shape[2]
        self.db = np.sum(dout, axis=(0, 2, 3)).reshape(F, -1)
        if self.forgets_transpose:
            dout_col = dout.reshape(F, -1)  # bug: (N, F, H, W) reshaped as if it were (F, H, W, N)
        else:
            dout_col = dout.transpose(1, 2, 3, 0).reshape(F, -1)
        self.dW = (dout_col @ self.X_col.T).reshape(self.W.shape)
        dcols = (self.W.reshape(F, -1).T @ dout_col).reshape(C, k, k, H, W, N)
        dxp = np.zeros((N, C, H + 2 * self.pad, W + 2 * self.pad), dtype=dout.dtype)
        for di in range(k):
            for dj in range(k):
                dxp[:, :, di:di + H, dj:dj + W] += dcols[:, di, dj].transpose(3, 0, 1, 2)
        return dxp[:, :, self.pad:self.pad + H, self.pad:self.pad + W]


class ConvIm2colForgetsTranspose(ConvIm2col):
    forgets_transpose = True


CONV_IM2COL = NS(ConvIm2col=ConvIm2col)
CONV_IM2COL_FORGETS_TRANSPOSE = NS(ConvIm2col=ConvIm2colForgetsTranspose)


class ReLU:
    """The backward multiplies the upstream gradient in place and returns it."""

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        dout *= self.mask
        return dout


class ReLUMaskFromDout(ReLU):
    def backward(self, dout):
        dout *= dout > 0  # bug: the mask recomputed, from the gradient instead of the input
        return dout


RELU_INPLACE = NS(ReLU=ReLU)
RELU_INPLACE_MASK_FROM_DOUT = NS(ReLU=ReLUMaskFromDout)


class DenseSGD:
    """Updates its weights inside backward (no gradient is kept): W (in, out)."""

    bias_mean = False

    def __init__(self, n_in, n_out, lr=0.1, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out))
        self.b = rng.normal(0, 0.1, n_out)
        self.lr = lr

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, grad):
        grad_input = grad @ self.W.T
        self.W -= self.lr * self.x.T @ grad
        self.b -= self.lr * (grad.mean(axis=0) if self.bias_mean else grad.sum(axis=0))  # bug variant: mean
        return grad_input


class DenseSGDBiasMean(DenseSGD):
    bias_mean = True


DENSE_SGD = NS(DenseSGD=DenseSGD)
DENSE_SGD_BIAS_MEAN = NS(DenseSGD=DenseSGDBiasMean)


class FirstConv:
    """The network's first conv (stride 1, padding k // 2), one image at a time in a loop
    over the batch; backward computes dW and db only and returns None."""

    overwrite = False

    def __init__(self, in_channels, filters, k, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(0, 0.3, (filters, in_channels, k, k))
        self.b = rng.normal(0, 0.1, filters)

    def _patches(self, img):
        C, H, W = img.shape
        k, p = self.W.shape[2], self.W.shape[2] // 2
        padded = np.pad(img, ((0, 0), (p, p), (p, p)))
        return np.stack([padded[:, i:i + k, j:j + k].ravel() for i in range(H) for j in range(W)], axis=1)

    def forward(self, x):
        N, C, H, W = x.shape
        F = self.W.shape[0]
        self.patches = [self._patches(img) for img in x]
        out = np.stack([self.W.reshape(F, -1) @ p for p in self.patches])
        return out.reshape(N, F, H, W) + self.b[None, :, None, None]

    def backward(self, dout):
        F = self.W.shape[0]
        self.dW = np.zeros_like(self.W)
        for n, p in enumerate(self.patches):
            if self.overwrite:
                self.dW = (dout[n].reshape(F, -1) @ p.T).reshape(self.W.shape)  # bug: = instead of +=
            else:
                self.dW += (dout[n].reshape(F, -1) @ p.T).reshape(self.W.shape)
        self.db = dout.sum(axis=(0, 2, 3))
        return None


class FirstConvOverwrites(FirstConv):
    overwrite = True


FIRST_CONV = NS(FirstConv=FirstConv)
FIRST_CONV_OVERWRITES = NS(FirstConv=FirstConvOverwrites)


class Linear:
    """PyTorch-like storage, weight (out, in); backward returns (dx, [dW, db])."""

    transposed_dx = False

    def __init__(self, in_features, out_features, seed=0):
        rng = np.random.default_rng(seed)
        self.weight = rng.normal(0, 1 / np.sqrt(in_features), (out_features, in_features))
        self.bias = rng.normal(0, 0.1, out_features)

    def forward(self, x):
        self.cache = x
        return x @ self.weight.T + self.bias

    def backward(self, grad_out):
        x = self.cache
        grad_w = grad_out.T @ x
        grad_b = grad_out.sum(axis=0)
        grad_in = grad_out @ (self.weight.T if self.transposed_dx else self.weight)  # bug variant: .T
        return grad_in, [grad_w, grad_b]


class LinearTransposedDx(Linear):
    transposed_dx = True


LINEAR_RETURNS_LIST = NS(Linear=Linear)
LINEAR_RETURNS_LIST_TRANSPOSED_DX = NS(Linear=LinearTransposedDx)


class LayerNorm:
    """Normalises each row of (N, D); backward returns (dx, (dgamma, dbeta))."""

    stats_axis = -1

    def __init__(self, D, eps=1e-5, seed=0):
        rng = np.random.default_rng(seed)
        self.gamma, self.beta = rng.uniform(0.5, 1.5, D), rng.normal(0, 0.1, D)
        self.eps = eps

    def forward(self, x):
        self.x = x
        mu, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
        xhat = (x - mu) / np.sqrt(var + self.eps)
        return self.gamma * xhat + self.beta

    def backward(self, dy):
        ax = self.stats_axis  # bug variant: axis=0, batch statistics, in the recomputation only
        mu, var = self.x.mean(axis=ax, keepdims=True), self.x.var(axis=ax, keepdims=True)
        rstd = 1 / np.sqrt(var + self.eps)
        xhat = (self.x - mu) * rstd
        dxhat = dy * self.gamma
        dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
        return dx, ((dy * xhat).sum(axis=0), dy.sum(axis=0))


class LayerNormBatchAxis(LayerNorm):
    stats_axis = 0


LAYERNORM_RETURNS_TUPLE = NS(LayerNorm=LayerNorm)
LAYERNORM_RETURNS_TUPLE_BATCH_AXIS = NS(LayerNorm=LayerNormBatchAxis)


class Dropout:
    """Drop probability p; its own generator draws a 0/1 mask every forward, kept in
    self._mask."""

    scale_in_backward = True
    scale_in_forward = True

    def __init__(self, p=0.5, seed=None):
        self.p = p
        self.rng = np.random.default_rng(seed)
        self._mask = None

    def forward(self, X):
        self._mask = (self.rng.random(X.shape) > self.p).astype(X.dtype)
        return X * self._mask / (1 - self.p) if self.scale_in_forward else X * self._mask

    def backward(self, dLdy):
        return dLdy * self._mask / (1 - self.p) if self.scale_in_backward else dLdy * self._mask


class DropoutUnscaled(Dropout):
    scale_in_backward = False  # bug: the 1 / (1 - p) of the forward is missing


class DropoutForwardUnscaled(Dropout):
    scale_in_forward = False  # bug: plain dropout in the forward, the inverted scale in backward


DROPOUT_OBJECT = NS(Dropout=Dropout)
DROPOUT_OBJECT_UNSCALED = NS(Dropout=DropoutUnscaled)
DROPOUT_OBJECT_FORWARD_UNSCALED = NS(Dropout=DropoutForwardUnscaled)


class DenseGradsGW:
    """Keeps its gradients as gW and gb, names no search would guess."""

    def __init__(self, n_in, n_out, seed=0):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)), rng.normal(0, 0.1, n_out)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.gW, self.gb = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T
