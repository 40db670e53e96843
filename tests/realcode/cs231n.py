"""CS231n-style function pairs: ``layer_forward(x, *params, param_dict) -> (out, cache)`` and
``layer_backward(dout, cache) -> (dx, *grads)``; data NCHW, affine weights (in, out), loops
over the batch, im2col with fancy indexing, ``bn_param`` / ``dropout_param`` dicts.

Buggy variants sit next to the function they break, named ``<function>_<bug>``.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


# --------------------------------------------------------------------------- affine


def affine_forward(x, w, b):
    """x: (N, d_1, ..., d_k) flattened to (N, D); w: (D, M); b: (M,)."""
    out = x.reshape(x.shape[0], -1).dot(w) + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    x, w, b = cache
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = np.sum(dout, axis=0)
    return dx, dw, db


def affine_backward_dw_averaged(dout, cache):
    x, w, b = cache
    N = x.shape[0]
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(N, -1).T.dot(dout) / N  # bug: the loss's 1/N applied again
    db = np.sum(dout, axis=0)
    return dx, dw, db


def affine_backward_db_averaged(dout, cache):
    x, w, b = cache
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = np.mean(dout, axis=0)  # bug: averaged instead of summed over the batch
    return dx, dw, db


def affine_backward_mean(dout, cache):
    """Gradients of the batch *mean*: this code folds the loss's 1/N into the layer."""
    x, w, b = cache
    N = x.shape[0]
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(N, -1).T.dot(dout) / N
    db = np.sum(dout, axis=0) / N
    return dx, dw, db


def affine_backward_mean_db_summed(dout, cache):
    x, w, b = cache
    N = x.shape[0]
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(N, -1).T.dot(dout) / N
    db = np.sum(dout, axis=0)  # bug: dw was divided by N, db was forgotten
    return dx, dw, db


def first_affine_backward(dout, cache):
    """The network's first layer: nobody needs dx, so it is not computed."""
    x, w, b = cache
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = np.sum(dout, axis=0)
    return None, dw, db


def first_affine_backward_db_averaged(dout, cache):
    x, w, b = cache
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = dout.sum(axis=0) / x.shape[0]  # bug
    return None, dw, db


AFFINE = NS(affine_forward=affine_forward, affine_backward=affine_backward)
AFFINE_DW_AVERAGED = NS(affine_forward=affine_forward, affine_backward=affine_backward_dw_averaged)
AFFINE_DB_AVERAGED = NS(affine_forward=affine_forward, affine_backward=affine_backward_db_averaged)
AFFINE_MEAN = NS(affine_forward=affine_forward, affine_backward=affine_backward_mean)
AFFINE_MEAN_DB_SUMMED = NS(affine_forward=affine_forward, affine_backward=affine_backward_mean_db_summed)
FIRST_AFFINE = NS(affine_forward=affine_forward, affine_backward=first_affine_backward)
FIRST_AFFINE_DB_AVERAGED = NS(affine_forward=affine_forward, affine_backward=first_affine_backward_db_averaged)


# --------------------------------------------------------------------------- relu (float32)


def relu_forward(x):
    out = np.maximum(0, x)
    cache = x
    return out, cache


def relu_backward(dout, cache):
    x = cache
    dx = dout * (x > 0)
    return dx


def relu_backward_no_dout(dout, cache):
    x = cache
    dx = (x > 0).astype(dout.dtype)  # bug: the upstream gradient is never multiplied in
    return dx


RELU = NS(relu_forward=relu_forward, relu_backward=relu_backward)
RELU_NO_DOUT = NS(relu_forward=relu_forward, relu_backward=relu_backward_no_dout)


# --------------------------------------------------------------------------- conv, naive loops


def conv_forward_naive(x, w, b, conv_param):
    """x: (N, C, H, W); w: (F, C, HH, WW); b: (F,); conv_param: {'stride', 'pad'}."""
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    stride, pad = conv_param['stride'], conv_param['pad']
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode='constant')
    out = np.zeros((N, F, H_out, W_out))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    cache = (x, w, b, conv_param)
    return out, cache


def _conv_backward_naive(dout, cache, use_stride):
    x, w, b, conv_param = cache
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    stride, pad = conv_param['stride'], conv_param['pad']
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode='constant')
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = np.sum(dout, axis=(0, 2, 3))
    s = stride if use_stride else 1
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * s, j * s
                    dw[f] += x_pad[n, :, hs:hs + HH, ws:ws + WW] * dout[n, f, i, j]
                    dx_pad[n, :, hs:hs + HH, ws:ws + WW] += w[f] * dout[n, f, i, j]
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def conv_backward_naive(dout, cache):
    return _conv_backward_naive(dout, cache, use_stride=True)


def conv_backward_naive_stride_ignored(dout, cache):
    return _conv_backward_naive(dout, cache, use_stride=False)  # bug: windows start at i, j


CONV_NAIVE = NS(conv_forward_naive=conv_forward_naive, conv_backward_naive=conv_backward_naive)
CONV_NAIVE_STRIDE_IGNORED = NS(conv_forward_naive=conv_forward_naive,
                               conv_backward_naive=conv_backward_naive_stride_ignored)


# --------------------------------------------------------------------------- conv, im2col with fancy indexing


def _patch_indices(C, H, W, HH, WW, pad, stride):
    """(k, i, j) index arrays so that x_pad[:, k, i, j] is (N, C*HH*WW, H_out*W_out)."""
    H_out = (H + 2 * pad - HH) // stride + 1
    W_out = (W + 2 * pad - WW) // stride + 1
    rows = np.tile(np.repeat(np.arange(HH), WW), C)  # kernel row of each patch entry
    cols = np.tile(np.arange(WW), HH * C)
    starts_i = stride * np.repeat(np.arange(H_out), W_out)
    starts_j = stride * np.tile(np.arange(W_out), H_out)
    i = rows[:, None] + starts_i[None, :]
    j = cols[:, None] + starts_j[None, :]
    k = np.repeat(np.arange(C), HH * WW)[:, None]
    return k, i, j, H_out, W_out


def conv_forward_im2col(x, w, b, conv_param):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    stride, pad = conv_param['stride'], conv_param['pad']
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode='constant')
    k, i, j, H_out, W_out = _patch_indices(C, H, W, HH, WW, pad, stride)
    cols = x_pad[:, k, i, j]  # (N, C*HH*WW, L)
    cols = cols.transpose(1, 2, 0).reshape(C * HH * WW, -1)  # columns ordered (L, N)
    out = w.reshape(F, -1) @ cols + b.reshape(-1, 1)
    out = out.reshape(F, H_out, W_out, N).transpose(3, 0, 1, 2)
    cache = (x, w, b, conv_param, cols)
    return out, cache


def _conv_backward_im2col(dout, cache, scatter):
    x, w, b, conv_param, cols = cache
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    stride, pad = conv_param['stride'], conv_param['pad']
    db = np.sum(dout, axis=(0, 2, 3))
    dout_r = dout.transpose(1, 2, 3, 0).reshape(F, -1)
    dw = (dout_r @ cols.T).reshape(w.shape)
    dcols = w.reshape(F, -1).T @ dout_r
    k, i, j, H_out, W_out = _patch_indices(C, H, W, HH, WW, pad, stride)
    dcols = dcols.reshape(C * HH * WW, H_out * W_out, N).transpose(2, 0, 1)
    dx_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dout.dtype)
    scatter(dx_pad, k, i, j, dcols)
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W] if pad else dx_pad
    return dx, dw, db


def _add_at(dx_pad, k, i, j, dcols):
    np.add.at(dx_pad, (slice(None), k, i, j), dcols)


def _fancy_iadd(dx_pad, k, i, j, dcols):
    dx_pad[:, k, i, j] += dcols  # bug: buffered: a pixel in several windows gets one contribution


def conv_backward_im2col(dout, cache):
    return _conv_backward_im2col(dout, cache, _add_at)


def conv_backward_im2col_fancy_iadd(dout, cache):
    return _conv_backward_im2col(dout, cache, _fancy_iadd)


CONV_IM2COL = NS(conv_forward=conv_forward_im2col, conv_backward=conv_backward_im2col)
CONV_IM2COL_FANCY_IADD = NS(conv_forward=conv_forward_im2col, conv_backward=conv_backward_im2col_fancy_iadd)


# --------------------------------------------------------------------------- max pool, naive loops


def max_pool_forward_naive(x, pool_param):
    N, C, H, W = x.shape
    ph, pw, stride = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    H_out, W_out = 1 + (H - ph) // stride, 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = np.max(x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw])
    return out, (x, pool_param)


def _max_pool_backward_naive(dout, cache, use_stride):
    x, pool_param = cache
    ph, pw, stride = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    s = stride if use_stride else 1
    N, C, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * s, j * s
                    window = x[n, c, hs:hs + ph, ws:ws + pw]
                    r, q = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, hs + r, ws + q] += dout[n, c, i, j]
    return dx


def max_pool_backward_naive(dout, cache):
    return _max_pool_backward_naive(dout, cache, use_stride=True)


def max_pool_backward_naive_stride_ignored(dout, cache):
    return _max_pool_backward_naive(dout, cache, use_stride=False)  # bug


MAXPOOL = NS(max_pool_forward_naive=max_pool_forward_naive, max_pool_backward_naive=max_pool_backward_naive)
MAXPOOL_STRIDE_IGNORED = NS(max_pool_forward_naive=max_pool_forward_naive,
                            max_pool_backward_naive=max_pool_backward_naive_stride_ignored)


# --------------------------------------------------------------------------- batch norm with bn_param


def batchnorm_forward(x, gamma, beta, bn_param):
    """x: (N, D). bn_param: {'mode': 'train' | 'test', 'eps', 'momentum'}; the running
    statistics are created in bn_param on the first call."""
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get('running_var', np.zeros(D, dtype=x.dtype))
    if mode == 'train':
        mu = x.mean(axis=0)
        xc = x - mu
        var = np.mean(xc ** 2, axis=0)
        std = np.sqrt(var + eps)
        xhat = xc / std
        out = gamma * xhat + beta
        cache = (xhat, gamma, std)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
    else:
        xhat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * xhat + beta
        cache = None
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dx = (N * dxhat - dxhat.sum(axis=0) - xhat * np.sum(dxhat * xhat, axis=0)) / (N * std)
    return dx, dgamma, dbeta


def batchnorm_backward_direct_path_only(dout, cache):
    xhat, gamma, std = cache
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dx = dout * gamma / std  # bug: as if the batch mean and variance did not depend on x
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    x_flat = x.transpose(0, 2, 3, 1).reshape(-1, C)
    out_flat, cache = batchnorm_forward(x_flat, gamma, beta, bn_param)
    return out_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dx_flat, dgamma, dbeta = batchnorm_backward(dout.transpose(0, 2, 3, 1).reshape(-1, C), cache)
    return dx_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2), dgamma, dbeta


def spatial_batchnorm_forward_no_transpose(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    out_flat, cache = batchnorm_forward(x.reshape(-1, C), gamma, beta, bn_param)  # bug: mixes channels
    return out_flat.reshape(N, C, H, W), cache


def spatial_batchnorm_backward_no_transpose(dout, cache):
    N, C, H, W = dout.shape
    dx_flat, dgamma, dbeta = batchnorm_backward(dout.reshape(-1, C), cache)
    return dx_flat.reshape(N, C, H, W), dgamma, dbeta


BATCHNORM = NS(batchnorm_forward=batchnorm_forward, batchnorm_backward=batchnorm_backward)
BATCHNORM_DIRECT_PATH_ONLY = NS(batchnorm_forward=batchnorm_forward,
                                batchnorm_backward=batchnorm_backward_direct_path_only)
SPATIAL_BATCHNORM = NS(spatial_batchnorm_forward=spatial_batchnorm_forward,
                       spatial_batchnorm_backward=spatial_batchnorm_backward)
SPATIAL_BATCHNORM_NO_TRANSPOSE = NS(spatial_batchnorm_forward=spatial_batchnorm_forward_no_transpose,
                                    spatial_batchnorm_backward=spatial_batchnorm_backward_no_transpose)


# --------------------------------------------------------------------------- batch norm, running stats positional


def bn_forward(x, gamma, beta, running_mean, running_var, train=True, momentum=0.1, eps=1e-5):
    """Running statistics passed positionally and updated in place (training)."""
    if train:
        mu, var = x.mean(axis=0), x.var(axis=0)
        running_mean *= 1 - momentum
        running_mean += momentum * mu
        running_var *= 1 - momentum
        running_var += momentum * var * x.shape[0] / (x.shape[0] - 1)
    else:
        mu, var = running_mean, running_var
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    return gamma * xhat + beta, (xhat, gamma, std, train)


def bn_backward(dout, cache):
    xhat, gamma, std, train = cache
    dgamma, dbeta = (dout * xhat).sum(axis=0), dout.sum(axis=0)
    dxhat = dout * gamma
    if not train:  # the statistics are constants in evaluation mode
        return dxhat / std, dgamma, dbeta
    return (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std, dgamma, dbeta


def bn_backward_ignores_mode(dout, cache):
    xhat, gamma, std, train = cache
    dgamma, dbeta = (dout * xhat).sum(axis=0), dout.sum(axis=0)
    dxhat = dout * gamma  # bug: the training formula in evaluation mode too
    return (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std, dgamma, dbeta


BN_POSITIONAL = NS(bn_forward=bn_forward, bn_backward=bn_backward)
BN_POSITIONAL_IGNORES_MODE = NS(bn_forward=bn_forward, bn_backward=bn_backward_ignores_mode)


# --------------------------------------------------------------------------- dropout with dropout_param


def dropout_forward(x, dropout_param):
    """dropout_param: {'p': keep probability, 'mode', optional 'seed'}; the 0/1 mask is
    kept in dropout_param['mask'] (the caller reuses the same units)."""
    p, mode = dropout_param['p'], dropout_param['mode']
    if 'seed' in dropout_param:
        np.random.seed(dropout_param['seed'])
    if mode == 'train':
        mask = np.random.rand(*x.shape) < p
        out = x * mask / p
        dropout_param['mask'] = mask
    else:
        out = x
    return out, dropout_param


def dropout_backward(dout, cache):
    dropout_param = cache
    if dropout_param['mode'] == 'train':
        return dout * dropout_param['mask'] / dropout_param['p']
    return dout


def dropout_backward_unscaled(dout, cache):
    dropout_param = cache
    if dropout_param['mode'] == 'train':
        return dout * dropout_param['mask']  # bug: the 1/p of the forward is missing
    return dout


DROPOUT = NS(dropout_forward=dropout_forward, dropout_backward=dropout_backward)
DROPOUT_UNSCALED = NS(dropout_forward=dropout_forward, dropout_backward=dropout_backward_unscaled)


# --------------------------------------------------------------------------- softmax loss and a two-layer net


def softmax_loss(x, y):
    """x: (N, C) scores, y: (N,) labels -> (mean cross-entropy, dx)."""
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


def softmax_loss_not_averaged(x, y):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1  # bug: dx /= N forgotten
    return loss, dx


def softmax_loss_summed(x, y):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y])  # bug: the value is not averaged, the gradient is
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


SOFTMAX_LOSS = NS(softmax_loss=softmax_loss)
SOFTMAX_LOSS_SUMMED = NS(softmax_loss=softmax_loss_summed)
SOFTMAX_LOSS_NOT_AVERAGED = NS(softmax_loss=softmax_loss_not_averaged)


class TwoLayerNet:
    """affine - relu - affine - softmax; params W1 (D, H), b1, W2 (H, C), b2."""

    relu_mask_on_output = False

    def __init__(self, input_dim=6, hidden_dim=8, num_classes=4, weight_scale=0.5, reg=0.0, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {
            'W1': weight_scale * rng.standard_normal((input_dim, hidden_dim)),
            'b1': np.zeros(hidden_dim),
            'W2': weight_scale * rng.standard_normal((hidden_dim, num_classes)),
            'b2': np.zeros(num_classes),
        }
        self.reg = reg

    def loss(self, X, y=None):
        W1, b1, W2, b2 = (self.params[k] for k in ('W1', 'b1', 'W2', 'b2'))
        h = X.reshape(X.shape[0], -1).dot(W1) + b1
        a = np.maximum(0, h)
        scores = a.dot(W2) + b2
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        loss += 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        grads = {'W2': a.T.dot(dscores) + self.reg * W2, 'b2': dscores.sum(axis=0)}
        da = dscores.dot(W2.T)
        dh = da * (a >= 0) if self.relu_mask_on_output else da * (h > 0)
        grads['W1'] = X.reshape(X.shape[0], -1).T.dot(dh) + self.reg * W1
        grads['b1'] = dh.sum(axis=0)
        return loss, grads


class TwoLayerNetMaskOnOutput(TwoLayerNet):
    relu_mask_on_output = True  # bug: a >= 0 holds everywhere after the relu: no mask at all


TWO_LAYER_NET = NS(TwoLayerNet=TwoLayerNet)
TWO_LAYER_NET_MASK_ON_OUTPUT = NS(TwoLayerNet=TwoLayerNetMaskOnOutput)
