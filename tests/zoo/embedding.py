"""The embedding family's zoo: word embeddings (CS231n function pairs, numpy-ml style objects)
and temporal affine layers over (N, T, D), correct and mutated the way from-scratch code goes
wrong. Same tuple layout as :mod:`zoo.layers`: ``CORRECT`` lists (name, factory, spec, wrap
kwargs, input shape); ``MUTANTS`` adds the expected verdict and a diagnosis fragment.

Factories take ``(seed=0, dtype=np.float64)``; pairs come back wrapped (their parameters are
the arrays handed to ``wrap_functions``), objects bare (``check_layer`` wraps them with the
kwargs)."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layouts import Layout

V, D, M = 9, 4, 6
EMB = S.Embedding("embed", V, D)
EMB_PAD = S.Embedding("embed", V, D, padding_idx=0)
AFFINE = S.Linear("affine", D, M)
IN_OUT = Layout(linear="in_out")
TOKENS = (3, 6)  # (N, T) captions
SEQ = (3, 5, D)  # (N, T, D) hidden states

# ------------------------------------------------------------------ CS231n word embedding pairs


def word_embedding_forward(x, W):
    out = W[x]
    cache = (x, W)
    return out, cache


def word_embedding_backward(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    return dW


def word_embedding_backward_padded(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    dW[0] = 0  # the <NULL> token (index 0) learns nothing
    return dW


def word_embedding_backward_assign(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    dW[x] = dout  # repeated words: only one of them lands
    return dW


def _embedding_pair(backward, spec):
    from harness.adapters.layer import wrap_functions

    def make(seed=0, dtype=np.float64):
        W = np.random.default_rng(seed).normal(size=(V, D)).astype(dtype)
        return wrap_functions(word_embedding_forward, backward, spec, [W])

    return make


# ------------------------------------------------------------------ object-style embeddings


class Embedding:
    """A W attribute, forward(X) / backward(dLdY), a loop over the tokens with +=."""

    def __init__(self, seed=0, dtype=np.float64, padding_idx=None):
        self.W = np.random.default_rng(seed).normal(size=(V, D)).astype(dtype)
        self.padding_idx = padding_idx

    def forward(self, X):
        self.X = X
        return self.W[X]

    def backward(self, dLdY):
        self.dW = np.zeros_like(self.W)
        dLdY = dLdY.reshape(-1, self.W.shape[1])
        for ix, token in enumerate(self.X.flatten()):
            if token != self.padding_idx:
                self.dW[token] += dLdY[ix]


class PaddedEmbedding(Embedding):
    def __init__(self, seed=0, dtype=np.float64):
        super().__init__(seed, dtype, padding_idx=0)


class EmbeddingLoopAssign(Embedding):
    def backward(self, dLdY):
        self.dW = np.zeros_like(self.W)
        dLdY = dLdY.reshape(-1, self.W.shape[1])
        for ix, token in enumerate(self.X.flatten()):
            self.dW[token] = dLdY[ix]  # = where += is needed


class EmbeddingNotZeroed(Embedding):
    """The gradient buffer is made once and never cleared: each backward adds to the last."""

    def __init__(self, seed=0, dtype=np.float64):
        super().__init__(seed, dtype)
        self.dW = np.zeros_like(self.W)

    def backward(self, dLdY):
        np.add.at(self.dW, self.X, dLdY)


class EmbeddingPaddingLearns(Embedding):
    """Declared with padding_idx=0 (as the spec says), but the loop never skips it."""

    def backward(self, dLdY):
        self.padding_idx = None
        super().backward(dLdY)


# ------------------------------------------------------------------ temporal affine (CS231n)


def temporal_affine_forward(x, w, b):
    N, T, D = x.shape
    M = b.shape[0]
    out = x.reshape(N * T, D).dot(w).reshape(N, T, M) + b
    cache = x, w, b, out
    return out, cache


def temporal_affine_backward(dout, cache):
    x, w, b, _ = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_affine_backward_time_major(dout, cache):
    x, w, b, _ = cache
    N, T, D = x.shape
    M = b.shape[0]
    flat = dout.transpose(1, 0, 2).reshape(T * N, M)  # rows (t, n), as a time-major loop builds them
    dx = flat.dot(w.T).reshape(N, T, D)  # ... read back as (n, t)
    dw = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_affine_backward_mean_over_time(dout, cache):
    dx, dw, db = temporal_affine_backward(dout, cache)
    return dx, dw / dout.shape[1], db  # dw averaged over the timesteps


def _affine_pair(backward):
    from harness.adapters.layer import wrap_functions

    def make(seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        w = (rng.normal(size=(D, M)) / np.sqrt(D)).astype(dtype)
        b = rng.normal(size=M).astype(dtype)
        return wrap_functions(temporal_affine_forward, backward, AFFINE, [w, b], layout=IN_OUT)

    return make


class TemporalAffine:
    """An object over (N, T, D): w (D, M), b (M,), matmul over the last axis."""

    def __init__(self, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.w = (rng.normal(size=(D, M)) / np.sqrt(D)).astype(dtype)
        self.b = rng.normal(size=M).astype(dtype)

    def forward(self, x):
        self.x = x
        return x @ self.w + self.b

    def backward(self, dout):
        self.dw = np.einsum("ntd,ntm->dm", self.x, dout)
        self.db = dout.sum(axis=(0, 1))
        return dout @ self.w.T


CORRECT = [
    ("embedding pair", _embedding_pair(word_embedding_backward, EMB), EMB, {}, TOKENS),
    ("embedding pair with padding", _embedding_pair(word_embedding_backward_padded, EMB_PAD), EMB_PAD, {}, TOKENS),
    ("embedding object", Embedding, EMB, {}, TOKENS),
    ("embedding object with padding", PaddedEmbedding, EMB_PAD, {}, TOKENS),
    ("temporal affine pair", _affine_pair(temporal_affine_backward), AFFINE, {}, SEQ),
    ("temporal affine object", TemporalAffine, AFFINE, {"layout": IN_OUT}, SEQ),
]

OVERWRITE = "overwritten instead of accumulated for repeated tokens"
MUTANTS = [
    (
        "embedding pair: dW[x] = dout",
        _embedding_pair(word_embedding_backward_assign, EMB),
        EMB,
        {},
        TOKENS,
        "backward",
        OVERWRITE,
    ),
    (
        "embedding object: = in the token loop",
        EmbeddingLoopAssign,
        EMB,
        {},
        TOKENS,
        "backward",
        "hold only the last occurrence's upstream gradient",
    ),
    (
        "embedding object: dW never zeroed between backward calls",
        EmbeddingNotZeroed,
        EMB,
        {},
        TOKENS,
        "backward",
        "doubled on a second backward call",
    ),
    (
        "embedding object: the padding row learns",
        EmbeddingPaddingLearns,
        EMB_PAD,
        {},
        TOKENS,
        "backward",
        "the padding row (padding_idx=0) receives a gradient",
    ),
    (
        "embedding pair: dW[x] = dout and the padding row learns",
        _embedding_pair(word_embedding_backward_assign, EMB_PAD),
        EMB_PAD,
        {},
        TOKENS,
        "backward",
        "the padding row (padding_idx=0) receives a gradient too",
    ),
    (
        "temporal affine pair: dx reshaped time-major",
        _affine_pair(temporal_affine_backward_time_major),
        AFFINE,
        {},
        SEQ,
        "backward",
        "laid out as (T, N, D) and reshaped as (N, T, D)",
    ),
    (
        "temporal affine pair: dw averaged over time",
        _affine_pair(temporal_affine_backward_mean_over_time),
        AFFINE,
        {},
        SEQ,
        "backward",
        "1/the number of timesteps T 5",
    ),
]
