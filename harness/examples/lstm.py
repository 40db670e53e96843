"""A handwritten numpy LSTM language model, written the way CS231n's third assignment has
students write one.

Functions in the assignment's style (each forward returns ``(out, cache)``, each backward
takes ``(dout, cache)``; caches are tuples) and thin layer objects holding the weights:

    tokens (N, T) int -> embed: word embedding, W (V, D)        -> (N, T, D)
                      -> lstm:  Wx (D, 4H), Wh (H, 4H), one fused b (4H,),
                                gate order i, f, o, g; h0 (N, H)  -> (N, T, H)
                      -> vocab: temporal affine, W (H, V), b (V,) -> scores (N, T, V)

``h0`` is the hidden state carried in from the previous chunk of text (truncated BPTT),
one row per sequence in the batch; ``lstm_backward`` returns its gradient ``dh0`` as
CS231n's does. The cell state starts at zero (CS231n's ``lstm_forward``). The loss,
:func:`temporal_softmax_loss`, is CS231n's: masked, summed over time, divided by N.

Nothing here knows about trigrad: this module is the "user's code" of the bundled LSTM
example and imports only numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

NULL = 0  # the padding token: targets equal to it are masked out of the loss

# --------------------------------------------------------------------------- word embedding


def word_embedding_forward(x: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, tuple]:
    """x: (N, T) integer tokens in [0, V); W: (V, D) -> out (N, T, D) = W[x]."""
    out = W[x]
    cache = (x, W.shape)
    return out, cache


def word_embedding_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dout: (N, T, D) -> dW (V, D). A token that appears several times collects the sum
    of its rows' gradients (np.add.at accumulates over repeated indices)."""
    x, w_shape = cache
    dW = np.zeros(w_shape, dout.dtype)
    np.add.at(dW, x, dout)
    return dW


# --------------------------------------------------------------------------- LSTM


def sigmoid(x: np.ndarray) -> np.ndarray:
    """A numerically stable logistic sigmoid (no overflow for large |x|)."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def lstm_step_forward(
    x: np.ndarray, prev_h: np.ndarray, prev_c: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One timestep. x: (N, D), prev_h, prev_c: (N, H), Wx: (D, 4H), Wh: (H, 4H), b: (4H,)
    -> next_h, next_c (N, H), cache. The 4H activations are the gates i, f, o, g in order."""
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H : 2 * H])
    o = sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h: np.ndarray, dnext_c: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
    """dnext_h, dnext_c: (N, H) -> dx (N, D), dprev_h, dprev_c (N, H), dWx (D, 4H),
    dWh (H, 4H), db (4H,)."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    di = dc * g
    df = dc * prev_c
    dg = dc * i
    dprev_c = dc * f
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)))
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(
    x: np.ndarray,
    h0: np.ndarray,
    Wx: np.ndarray,
    Wh: np.ndarray,
    b: np.ndarray,
    step: Callable[..., tuple[np.ndarray, np.ndarray, tuple]] = lstm_step_forward,
) -> tuple[np.ndarray, tuple]:
    """x: (N, T, D), h0: (N, H) -> h (N, T, H) (every timestep's hidden state), cache.
    The cell state starts at zero. ``step``: the single-step forward to loop over."""
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), np.result_type(x, h0))
    prev_h, prev_c = h0, np.zeros_like(h0)
    caches = []
    for t in range(T):
        prev_h, prev_c, step_cache = step(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(step_cache)
    return h, tuple(caches)


def lstm_backward(
    dh: np.ndarray, cache: tuple, step: Callable[..., tuple[np.ndarray, ...]] = lstm_step_backward
) -> tuple[np.ndarray, ...]:
    """Backpropagation through time. dh: (N, T, H), the loss's gradient in every hidden
    state (not through the recurrence) -> dx (N, T, D), dh0 (N, H), dWx, dWh, db.
    ``step``: the single-step backward to loop over."""
    N, T, H = dh.shape
    x0, _, _, Wx, Wh = cache[0][:5]
    dx = np.zeros((N, T, x0.shape[1]), dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H, dh.dtype)
    dprev_h = np.zeros((N, H), dh.dtype)
    dprev_c = np.zeros((N, H), dh.dtype)
    for t in reversed(range(T)):
        # h_t feeds both the output at t and the next step: the two gradients add
        dx[:, t, :], dprev_h, dprev_c, dWx_t, dWh_t, db_t = step(dh[:, t, :] + dprev_h, dprev_c, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


# --------------------------------------------------------------------------- temporal affine and loss


def temporal_affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """x: (N, T, D), w: (D, M), b: (M,) -> out (N, T, M) = x @ w + b at every timestep."""
    N, T, D = x.shape
    M = b.shape[0]
    out = x.reshape(N * T, D).dot(w).reshape(N, T, M) + b
    cache = (x, w, b)
    return out, cache


def temporal_affine_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, T, M) -> dx (N, T, D), dw (D, M), db (M,)."""
    x, w, b = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy at every timestep. x: (N, T, V) scores, y: (N, T) integer
    targets, mask: (N, T) booleans, False where the target is padding -> (loss, dx (N, T, V)).
    The loss sums over the unmasked timesteps and divides by N (not by their count)."""
    N, T, V = x.shape
    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = mask.reshape(N * T)
    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    dx_flat *= mask_flat[:, None]
    return float(loss), dx_flat.reshape(N, T, V)


# --------------------------------------------------------------------------- layers and the model


class WordEmbedding:
    """Tokens (N, T) -> vectors (N, T, D). W: (V, D). The input is not differentiable:
    ``backward`` sets ``dW`` and returns None."""

    def __init__(self, vocab_size: int, wordvec_dim: int, *, rng: np.random.Generator, dtype: Any) -> None:
        self.W = rng.standard_normal((vocab_size, wordvec_dim)).astype(dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self.cache = word_embedding_forward(x, self.W)
        return out

    def backward(self, dout: np.ndarray) -> None:
        self.dW = word_embedding_backward(dout, self.cache)


class LSTM:
    """(N, T, D) -> (N, T, H). Wx: (D, 4H), Wh: (H, 4H), b: (4H,), h0: (N, H) (the state
    carried in; ``batch`` rows). ``backward`` returns dx and sets dWx, dWh, db, dh0."""

    step_forward = staticmethod(lstm_step_forward)
    step_backward = staticmethod(lstm_step_backward)

    def __init__(self, input_dim: int, hidden_dim: int, batch: int, *, rng: np.random.Generator, dtype: Any) -> None:
        H = hidden_dim
        self.Wx = (rng.standard_normal((input_dim, 4 * H)) / np.sqrt(input_dim)).astype(dtype)
        self.Wh = (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(dtype)
        self.b = (0.1 * rng.standard_normal(4 * H)).astype(dtype)  # nonzero: bias mistakes then show
        self.h0 = np.tanh(rng.standard_normal((batch, H))).astype(dtype)  # nonzero: dh0 mistakes then show

    def forward(self, x: np.ndarray) -> np.ndarray:
        h, self.cache = lstm_forward(x, self.h0, self.Wx, self.Wh, self.b, step=self.step_forward)
        return h

    def backward(self, dh: np.ndarray) -> np.ndarray:
        dx, self.dh0, self.dWx, self.dWh, self.db = lstm_backward(dh, self.cache, step=self.step_backward)
        return dx


class TemporalAffine:
    """(N, T, H) -> (N, T, V) = x @ W + b. W: (H, V), b: (V,)."""

    def __init__(self, n_in: int, n_out: int, *, rng: np.random.Generator, dtype: Any) -> None:
        self.W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
        self.b = (0.1 * rng.standard_normal(n_out)).astype(dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self.cache = temporal_affine_forward(x, self.W, self.b)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, self.dW, self.db = temporal_affine_backward(dout, self.cache)
        return dx


CLASSES: dict[str, type] = {"embed": WordEmbedding, "lstm": LSTM, "vocab": TemporalAffine}
NAMES = tuple(CLASSES)  # forward order


class LSTMLanguageModel:
    """tokens (N, T) -> scores (N, T, V) for the next token at every timestep.

    ``batch``: N, the rows of the carried state h0. ``layers`` replaces the class of some
    layers by name (``{"lstm": MyLSTM}``); each takes the same constructor arguments, and
    the parameters come from ``seed`` the same way whatever the classes."""

    def __init__(
        self,
        vocab_size: int = 12,
        wordvec_dim: int = 6,
        hidden_dim: int = 8,
        batch: int = 3,
        *,
        seed: int = 0,
        dtype: Any = np.float64,
        layers: dict[str, type] | None = None,
    ) -> None:
        make = {**CLASSES, **(layers or {})}
        rng = np.random.default_rng(seed)
        self.embed = make["embed"](vocab_size, wordvec_dim, rng=rng, dtype=dtype)
        self.lstm = make["lstm"](wordvec_dim, hidden_dim, batch, rng=rng, dtype=dtype)
        self.vocab = make["vocab"](hidden_dim, vocab_size, rng=rng, dtype=dtype)

    def layers(self) -> dict[str, Any]:
        """``{name: layer}`` in forward order."""
        return {name: getattr(self, name) for name in NAMES}

    def forward(self, tokens: np.ndarray) -> np.ndarray:
        return self.vocab.forward(self.lstm.forward(self.embed.forward(tokens)))

    def backward(self, dscores: np.ndarray) -> dict[str, np.ndarray]:
        """dscores: (N, T, V) -> every parameter's gradient, by CS231n's names."""
        self.embed.backward(self.lstm.backward(self.vocab.backward(dscores)))
        return {
            "W_embed": self.embed.dW,
            "Wx": self.lstm.dWx,
            "Wh": self.lstm.dWh,
            "b": self.lstm.db,
            "h0": self.lstm.dh0,
            "W_vocab": self.vocab.dW,
            "b_vocab": self.vocab.db,
        }

    def loss(self, tokens: np.ndarray, targets: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """CS231n's ``loss``: forward, the masked temporal softmax loss (targets equal to
        :data:`NULL` are padding), backward -> (loss, grads)."""
        loss, dscores = temporal_softmax_loss(self.forward(tokens), targets, targets != NULL)
        return loss, self.backward(dscores)


def toy_batch(
    batch: int = 3, steps: int = 5, vocab_size: int = 12, *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A batch of padded token sequences -> (tokens (N, T), targets (N, T)), the targets
    the tokens shifted by one. Sequences end at different lengths (the first runs the full
    T + 1 tokens) and are padded with :data:`NULL`, so some targets are padding; tokens
    repeat (N * T > V), so the embedding's gradient has to accumulate."""
    words = rng.integers(1, vocab_size, size=(batch, steps + 1))  # 0 is NULL
    lengths = np.concatenate([[steps + 1], rng.integers(2, steps + 1, size=batch - 1)])
    words[np.arange(steps + 1) >= lengths[:, None]] = NULL
    return words[:, :-1], words[:, 1:]


__all__ = [
    "CLASSES",
    "LSTM",
    "NAMES",
    "NULL",
    "LSTMLanguageModel",
    "TemporalAffine",
    "WordEmbedding",
    "lstm_backward",
    "lstm_forward",
    "lstm_step_backward",
    "lstm_step_forward",
    "sigmoid",
    "temporal_affine_backward",
    "temporal_affine_forward",
    "temporal_softmax_loss",
    "toy_batch",
    "word_embedding_backward",
    "word_embedding_forward",
]
