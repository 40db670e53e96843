"""CS231n-style batch norm and dropout pairs: ``bn_param`` / ``dropout_param`` dicts that the
forward reads and writes (running statistics created on the first call, the dropout mask
kept for the backward), and a variant with the running statistics passed positionally.

Buggy variants sit next to the function they break.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


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
