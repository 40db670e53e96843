"""CS231n-style ``softmax_loss(x, y) -> (loss, dx)`` and a two-layer net whose
``loss(X, y)`` returns ``(loss, grads)`` keyed like ``self.params`` (W1, b1, W2, b2).
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


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
