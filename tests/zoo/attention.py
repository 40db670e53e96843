"""Attention and the temporal softmax loss, handwritten in numpy the way from-scratch code
writes them, and realistic mutants.

* A CS231n-style function pair ``attention_forward(q, k, v, mask=None, causal=False) ->
  (out, cache)`` / ``attention_backward(dout, cache) -> (dq, dk, dv)``: heads as leading
  axes, ``mask`` (N, S) True = ignore that key; checked as ``ScaledDotProductAttention`` with
  ``k``, ``v`` (and the mask) as its parameters in order.
* A ``MultiHeadAttention`` class in CS231n assignment 3's shape, ported to numpy: separate
  ``query``, ``key``, ``value`` and ``proj`` layers with ``(in, out)`` weights, a causal
  ``attn_mask`` (T, T) (0 = masked) and a ``key_padding_mask`` (N, T) handed to forward.
* CS231n's ``temporal_softmax_loss(x, y, mask)``.

``CORRECT`` / ``MUTANTS`` have tests/zoo/layers.py's layout (name, factory, spec, wrap kwargs,
input shape[, verdict, diagnosis fragment]); ``LOSS_CORRECT`` / ``LOSS_MUTANTS`` are (name,
function, loss spec, scores shape[, verdict, diagnosis fragment]) for ``check_loss``."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layer import wrap_functions
from harness.adapters.layouts import Layout
from harness.spec.attention import padding_mask


def softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------ scaled dot-product attention, function pair


def _hidden(q, k, mask, causal):
    """(N, ..., T, S) bool: the keys each query must not see."""
    T, S = q.shape[-2], k.shape[-2]
    hide = np.zeros(q.shape[:-2] + (T, S), bool)
    if mask is not None:
        m = np.asarray(mask, bool)
        hide |= m.reshape(m.shape[0], *([1] * (q.ndim - 2)), S)
    if causal:
        hide |= np.triu(np.ones((T, S), bool), 1)
    return hide


def attention_forward(q, k, v, mask=None, causal=False):
    d = q.shape[-1]
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(d)
    hide = _hidden(q, k, mask, causal)
    p = softmax(np.where(hide, -np.inf, scores))
    return p @ v, (q, k, v, scores, p, mask, causal)


def attention_backward(dout, cache):
    q, k, v, _, p, _, _ = cache
    d = q.shape[-1]
    dv = np.swapaxes(p, -1, -2) @ dout
    dp = dout @ np.swapaxes(v, -1, -2)
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    ds = ds / np.sqrt(d)
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, dv


def attention_backward_no_subtraction(dout, cache):
    """The softmax Jacobian's diagonal only: p * dp, without - p * sum(p * dp)."""
    q, k, v, _, p, _, _ = cache
    dv = np.swapaxes(p, -1, -2) @ dout
    ds = p * (dout @ np.swapaxes(v, -1, -2)) / np.sqrt(q.shape[-1])
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, dv


def attention_backward_unscaled(dout, cache):
    """The 1/sqrt(d) of the forward forgotten in the backward."""
    q, k, v, _, p, _, _ = cache
    dv = np.swapaxes(p, -1, -2) @ dout
    dp = dout @ np.swapaxes(v, -1, -2)
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, dv


def attention_backward_recomputed_unmasked(dout, cache):
    """Saves memory by recomputing the softmax from the cached scores, and forgets the mask there."""
    q, k, v, scores, _, _, causal = cache
    p = softmax(np.where(_hidden(q, k, None, causal), -np.inf, scores))
    return attention_backward(dout, (q, k, v, scores, p, None, causal))


def attention_backward_recomputed_not_causal(dout, cache):
    """Recomputes the softmax from the cached scores with the padding mask but not the causal one."""
    q, k, v, scores, _, mask, _ = cache
    p = softmax(np.where(_hidden(q, k, mask, False), -np.inf, scores))
    return attention_backward(dout, (q, k, v, scores, p, mask, True))


def _pair(backward, spec: S.ScaledDotProductAttention, shape):
    """A factory (seed, dtype) -> the pair wrapped with k, v (and a bool padding mask) drawn at ``shape``."""

    def make(seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        _, s, d, dv = spec.sizes(shape)
        lead = shape[:-2]
        params = [rng.normal(size=(*lead, s, d)).astype(dtype), rng.normal(size=(*lead, s, dv)).astype(dtype)]
        if spec.key_padding:
            params.append(padding_mask(rng, (shape[0], s), spec.causal) == 1)
        kwargs = {"causal": True} if spec.causal else {}
        return wrap_functions(attention_forward, backward, spec, params, kwargs=kwargs)

    return make


PAD = S.ScaledDotProductAttention("attn", key_padding=True)
CAUSAL = S.ScaledDotProductAttention("attn", causal=True, key_padding=True)
HEADS = S.ScaledDotProductAttention("attn", kv_len=6, key_padding=True)  # (N, H, T, d), T != S

CORRECT = [
    ("sdpa pair, padding mask", _pair(attention_backward, PAD, (3, 5, 4)), PAD, {}, (3, 5, 4)),
    ("sdpa pair, causal and padding", _pair(attention_backward, CAUSAL, (2, 6, 4)), CAUSAL, {}, (2, 6, 4)),
    ("sdpa pair, heads, T != S", _pair(attention_backward, HEADS, (2, 3, 4, 5)), HEADS, {}, (2, 3, 4, 5)),
]

MUTANTS = [
    (
        "sdpa: softmax backward missing the subtraction term",
        _pair(attention_backward_no_subtraction, PAD, (3, 5, 4)),
        PAD,
        {},
        (3, 5, 4),
        "backward",
        "softmax backward misses the subtracted term",
    ),
    (
        "sdpa: scale 1/sqrt(d) forgotten in the backward only",
        _pair(attention_backward_unscaled, PAD, (3, 5, 4)),
        PAD,
        {},
        (3, 5, 4),
        "backward",
        "scale 1/sqrt(d) = 0.5 is missing in the backward",
    ),
    (
        "sdpa: padding mask in the forward, not in the backward",
        _pair(attention_backward_recomputed_unmasked, PAD, (3, 5, 4)),
        PAD,
        {},
        (3, 5, 4),
        "backward",
        "padding mask is applied in the forward but not in the backward",
    ),
    (
        "sdpa: causal mask missing in the backward",
        _pair(attention_backward_recomputed_not_causal, CAUSAL, (2, 6, 4)),
        CAUSAL,
        {},
        (2, 6, 4),
        "backward",
        "causal mask is applied in the forward but not in the backward",
    ),
]


# ------------------------------------------------------------------ multi-head attention, CS231n's class in numpy


class Linear:
    """y = x W + b over the last axis, W (in, out)."""

    def __init__(self, din, dout, rng, dtype):
        self.W = (rng.normal(size=(din, dout)) / np.sqrt(din)).astype(dtype)
        self.b = (0.1 * rng.normal(size=dout)).astype(dtype)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        x2, d2 = self.x.reshape(-1, self.x.shape[-1]), dout.reshape(-1, dout.shape[-1])
        self.dW, self.db = x2.T @ d2, d2.sum(axis=0)
        return dout @ self.W.T


class MultiHeadAttention:
    def __init__(self, embed_dim=8, num_heads=2, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.key, self.query, self.value, self.proj = (Linear(embed_dim, embed_dim, rng, dtype) for _ in range(4))
        self.n_head, self.head_dim = num_heads, embed_dim // num_heads

    def _split(self, a):  # (N, T, E) -> (N, H, T, D)
        N, T, _ = a.shape
        return a.reshape(N, T, self.n_head, self.head_dim).transpose(0, 2, 1, 3)

    def _merge(self, a):  # (N, H, T, D) -> (N, T, E)
        N, H, T, D = a.shape
        return a.transpose(0, 2, 1, 3).reshape(N, T, H * D)

    def _hidden(self, attn_mask, key_padding_mask):
        hide = False
        if attn_mask is not None:
            hide = attn_mask == 0  # CS231n: attn_mask[i, j] == 0 keeps query i from key j
        if key_padding_mask is not None:
            hide = hide | np.asarray(key_padding_mask, bool)[:, None, None, :]
        return hide

    def forward(self, x, attn_mask=None, key_padding_mask=None):
        q, k, v = (
            self._split(self.query.forward(x)),
            self._split(self.key.forward(x)),
            self._split(self.value.forward(x)),
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(self.head_dim)
        p = softmax(np.where(self._hidden(attn_mask, key_padding_mask), -np.inf, scores))
        self.cache = (q, k, v, scores, p, attn_mask, key_padding_mask)
        return self.proj.forward(self._merge(p @ v))

    def _probs_for_backward(self):
        return self.cache[4]

    def _scores_grad(self, dp, p):
        return p * (dp - np.sum(dp * p, axis=-1, keepdims=True)) / np.sqrt(self.head_dim)

    def _merge_grad(self, d):
        return self._merge(d)

    def backward(self, dout):
        q, k, v = self.cache[:3]
        p = self._probs_for_backward()
        do = self._split(self.proj.backward(dout))
        dv = p.transpose(0, 1, 3, 2) @ do
        ds = self._scores_grad(do @ v.transpose(0, 1, 3, 2), p)
        dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
        dx = self.query.backward(self._merge_grad(dq))
        dx = dx + self.key.backward(self._merge_grad(dk))
        return dx + self.value.backward(self._merge_grad(dv))


class MHAHeadLoopOffByOne(MultiHeadAttention):
    """Merges the heads' gradients in a loop that stops one head short: the last head's never written."""

    def _merge_grad(self, d):
        N, H, T, D = d.shape
        out = np.zeros((N, T, H * D), d.dtype)
        for h in range(H - 1):
            out[:, :, h * D : (h + 1) * D] = d[:, h]
        return out


class MHAUnscaledBackward(MultiHeadAttention):
    def _scores_grad(self, dp, p):
        return p * (dp - np.sum(dp * p, axis=-1, keepdims=True))


class MHARecomputedUnmasked(MultiHeadAttention):
    """Recomputes the softmax from the cached scores in the backward, with the causal mask only."""

    def _probs_for_backward(self):
        scores, attn_mask = self.cache[3], self.cache[5]
        return softmax(np.where(self._hidden(attn_mask, None), -np.inf, scores))


class MHARecomputedNotCausal(MultiHeadAttention):
    """Recomputes the softmax from the cached scores in the backward, with the padding mask only."""

    def _probs_for_backward(self):
        scores, padding = self.cache[3], self.cache[6]
        return softmax(np.where(self._hidden(None, padding), -np.inf, scores))


T_MHA = 5
# a fixed padding mask for N = 3, T = 5 (True = ignore): key 0 always visible, for the causal mask
KPM = np.array([[0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 1, 1, 0, 0]], bool)
MHA_SPEC = S.MultiheadAttention("attn", 8, 2, causal=True, key_padding=True)
MHA_KW = {
    "params": {
        "in_proj_weight": ("query.W", "key.W", "value.W"),
        "in_proj_bias": ("query.b", "key.b", "value.b"),
        "out_proj_weight": "proj.W",
        "out_proj_bias": "proj.b",
    },
    "layout": Layout(linear="in_out"),
    "forward_kwargs": {"attn_mask": np.tril(np.ones((T_MHA, T_MHA))), "key_padding_mask": KPM},
}
MHA_SHAPE = (3, T_MHA, 8)

CORRECT += [("mha, separate projections, causal and padding", MultiHeadAttention, MHA_SPEC, MHA_KW, MHA_SHAPE)]

MUTANTS += [
    (
        "mha: head merge loop stops one head short in the backward",
        MHAHeadLoopOffByOne,
        MHA_SPEC,
        MHA_KW,
        MHA_SHAPE,
        "backward",
        "only in head 1 of 2",
    ),
    (
        "mha: scale 1/sqrt(d) forgotten in the backward only",
        MHAUnscaledBackward,
        MHA_SPEC,
        MHA_KW,
        MHA_SHAPE,
        "backward",
        "scale 1/sqrt(d) = 0.5 is missing in the backward",
    ),
    (
        "mha: padding mask in the forward, not in the backward",
        MHARecomputedUnmasked,
        MHA_SPEC,
        MHA_KW,
        MHA_SHAPE,
        "backward",
        "padding mask is applied in the forward but not in the backward",
    ),
    (
        "mha: causal mask missing in the backward",
        MHARecomputedNotCausal,
        MHA_SPEC,
        MHA_KW,
        MHA_SHAPE,
        "backward",
        "causal mask is applied in the forward but not in the backward",
    ),
]


# ------------------------------------------------------------------ temporal softmax loss (CS231n)


def temporal_softmax_loss(x, y, mask, verbose=False):
    N, T, V = x.shape
    x_flat, y_flat, mask_flat = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    dx_flat *= mask_flat[:, None]
    return loss, dx_flat.reshape(N, T, V)


def temporal_softmax_loss_grad_over_nt(x, y, mask, verbose=False):
    """The gradient divided by N * T (the number of positions), the loss by N."""
    loss, dx = temporal_softmax_loss(x, y, mask)
    return loss, dx / x.shape[1]


def temporal_softmax_loss_mask_ignored_in_grad(x, y, mask, verbose=False):
    """Masks the loss, forgets ``dx_flat *= mask_flat[:, None]``."""
    N, T, V = x.shape
    loss, _ = temporal_softmax_loss(x, y, mask)
    probs = softmax(x.reshape(N * T, V))
    probs[np.arange(N * T), y.reshape(N * T)] -= 1
    return loss, (probs / N).reshape(N, T, V)


def temporal_loss_torch_style(x, y):
    """PyTorch's convention: no mask argument, positions labelled -1 ignored, mean over the kept ones."""
    N, T, V = x.shape
    keep = (y != -1).reshape(-1)
    y_flat = np.where(keep, y.reshape(-1), 0)
    probs = softmax(x.reshape(N * T, V))
    count = keep.sum()
    loss = -np.sum(keep * np.log(probs[np.arange(N * T), y_flat])) / count
    probs[np.arange(N * T), y_flat] -= 1
    return loss, (probs * keep[:, None] / count).reshape(N, T, V)


TSCE = S.TemporalSoftmaxCrossEntropy()
NULL0 = S.TemporalSoftmaxCrossEntropy(ignore_index=0)  # CS231n's <NULL> token is word 0

LOSS_CORRECT = [
    ("cs231n temporal_softmax_loss", temporal_softmax_loss, TSCE, (3, 4, 6)),
    ("cs231n temporal_softmax_loss, NULL = 0", temporal_softmax_loss, NULL0, (4, 5, 7)),
    (
        "torch-style temporal loss (mean, ignore -1)",
        temporal_loss_torch_style,
        S.TemporalSoftmaxCrossEntropy("mean"),
        (3, 4, 6),
    ),
]

LOSS_MUTANTS = [
    (
        "temporal loss: gradient divided by N*T, not N",
        temporal_softmax_loss_grad_over_nt,
        TSCE,
        (3, 4, 6),
        "backward",
        "divided by N*T",
    ),
    (
        "temporal loss: mask ignored in the gradient",
        temporal_softmax_loss_mask_ignored_in_grad,
        TSCE,
        (3, 4, 6),
        "backward",
        "mask is ignored in the gradient",
    ),
]
