"""CS231n-style function pairs: ``layer_forward(x, *params, param_dict) -> (out, cache)`` and
``layer_backward(dout, cache) -> (dx, *grads)``; data NCHW, affine weights (in, out), four
nested loops, im2col with fancy indexing, ``conv_param`` / ``pool_param`` dicts. Batch norm
and dropout: :mod:`.cs231n_norm`; the loss and a two-layer net: :mod:`.cs231n_net`.

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
