"""Review of issue 17's families: hostile from-scratch code that once made trigrad change the
user's arrays or raise false alarms (each test failed before its fix)."""

from __future__ import annotations

import numpy as np

import harness as tg
from harness import spec as S


def _softmax(x: np.ndarray) -> np.ndarray:
    p = np.exp(x - x.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def temporal_loss_fixing_labels_in_place(x, y):
    """PyTorch's convention (no mask argument), written as from-scratch code: the ignored labels
    are replaced in place (``y[~mask] = 0``) before the gather."""
    n, t, v = x.shape
    mask = y != -1
    y[~mask] = 0
    p, yf, mf = _softmax(x).reshape(n * t, v), y.reshape(n * t), mask.reshape(n * t)
    loss = -np.sum(mf * np.log(p[np.arange(n * t), yf])) / mf.sum()
    d = p.copy()
    d[np.arange(n * t), yf] -= 1
    return loss, (d * (mf[:, None] / mf.sum())).reshape(n, t, v)


def softmax_loss_scribbling_labels(x, y):
    n = x.shape[0]
    p = _softmax(x)
    loss = -np.log(p[np.arange(n), y]).mean()
    p[np.arange(n), y] -= 1
    y[:] = 0
    return loss, p / n


def test_a_loss_writing_into_its_labels_changes_neither_the_callers_y_nor_the_verdict() -> None:
    y = np.array([[1, -1, 2, 0], [-1, 3, 5, 4], [2, 2, 1, -1]])
    keep = y.copy()
    spec = S.TemporalSoftmaxCrossEntropy(reduction="mean")
    report = tg.check_loss(temporal_loss_fixing_labels_in_place, spec, y=y, input_shape=(3, 4, 6))
    assert report.ok, str(report)
    np.testing.assert_array_equal(y, keep)
    assert tg.check_loss(temporal_loss_fixing_labels_in_place, spec, input_shape=(3, 4, 6), seed=1).ok
    labels = np.array([1, 2, 0, 3])
    assert tg.check_loss(softmax_loss_scribbling_labels, S.SoftmaxCrossEntropy(), y=labels, input_shape=(4, 5)).ok
    np.testing.assert_array_equal(labels, [1, 2, 0, 3])


def attention_turning_its_mask_additive_in_place(q, k, v, mask):
    """A float padding mask (1.0 = ignore) made additive in place: the caller's mask is ruined
    for every later call."""
    mask *= -1e9
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]) + mask[:, None, :]
    p = _softmax(scores)
    return p @ v, (q, k, v, p)


def attention_backward(dout, cache):
    q, k, v, p = cache
    dp = dout @ np.swapaxes(v, -1, -2)
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True)) / np.sqrt(q.shape[-1])
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, np.swapaxes(p, -1, -2) @ dout


def test_a_forward_writing_into_its_padding_mask_is_a_finding() -> None:
    rng = np.random.default_rng(0)
    k, v, mask = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4)), np.zeros((3, 5))
    mask[0, 3] = mask[1, 1] = mask[2, 4] = 1.0
    spec = S.ScaledDotProductAttention("attn", key_padding=True)
    pair = tg.wrap_functions(attention_turning_its_mask_additive_in_place, attention_backward, spec, [k, v, mask])
    entry = tg.check_layer(pair, input_shape=(3, 5, 4)).layers[0]
    assert entry.verdict == "forward"
    assert any("forward changes parameter 'key_padding_mask'" in line for line in entry.diagnosis), entry.diagnosis
    assert mask.sum() == 3.0  # the caller's mask as it was


def test_time_first_indices_under_layout_tnd() -> None:
    """Tokens (T, N) -> (T, N, D), as fed to a time-first nn.LSTM: under Layout(sequence="TND")
    the indices are time-first too (they were handed batch-first and the output refused)."""
    seen = []

    def forward(x, w):
        seen.append(x.shape)
        return w[x], (x, w.shape)

    def backward(dout, cache):
        x, shape = cache
        dw = np.zeros(shape)
        np.add.at(dw, x, dout)
        return dw

    w = np.random.default_rng(0).normal(size=(10, 4))
    emb = tg.wrap_functions(forward, backward, S.Embedding("emb", 10, 4), [w], layout=tg.Layout(sequence="TND"))
    assert tg.check_layer(emb, input_shape=(5, 3)).ok
    assert set(seen) == {(5, 3)}
    tokens = np.random.default_rng(1).integers(0, 10, size=(5, 3))
    assert tg.check_layer(emb, x=tokens).ok
    assert seen[-1] == (5, 3)


def test_one_row_of_a_float32_dh0_off_by_one_percent_is_a_backward_bug() -> None:
    """The references reject dh0 (about 100x its tolerance) while one joint finite-difference
    direction over every tensor dilutes the error below float32's noise and reads as
    consistent: the probes must then look at each tensor alone, not call it inconclusive."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from zoo.recurrent import RNN_SPEC, rnn_backward, rnn_pair

    def backward_bad(dh, cache):
        dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
        dh0 = dh0.copy()
        dh0[-1] *= 1.01
        return dx, dh0, dWx, dWh, db

    for dtype in (np.float32, np.float64):
        layer = tg.check_layer(rnn_pair(0, dtype, backward=backward_bad), RNN_SPEC, seed=0).layers[0]
        assert layer.verdict == "backward", (dtype, str(layer))
        assert [t.name for t in layer.tensors if not t.ok] == ["h0"]
        good = tg.check_layer(rnn_pair(0, dtype), RNN_SPEC, seed=0).layers[0]
        assert good.verdict == "pass", (dtype, str(good))


class _LayerNorm:
    """From-scratch layer norm over the last axis (the textbook compact backward)."""

    def __init__(self, d: int, dtype: type) -> None:
        rng = np.random.default_rng(0)
        self.gamma = (1 + 0.3 * rng.normal(size=d)).astype(dtype)
        self.beta = (0.3 * rng.normal(size=d)).astype(dtype)

    def forward(self, x):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        self.inv = 1 / np.sqrt(var + 1e-5)
        self.xhat = (x - mu) * self.inv
        return self.xhat * self.gamma + self.beta

    def backward(self, d):
        self.dgamma, self.dbeta = (d * self.xhat).sum(0), d.sum(0)
        dxh, m = d * self.gamma, d.shape[-1]
        return self.inv / m * (m * dxh - dxh.sum(-1, keepdims=True) - self.xhat * (dxh * self.xhat).sum(-1, keepdims=True))


class _LayerNormNoMeanTerm(_LayerNorm):
    def backward(self, d):
        self.dgamma, self.dbeta = (d * self.xhat).sum(0), d.sum(0)
        dxh, m = d * self.gamma, d.shape[-1]
        return self.inv / m * (m * dxh - self.xhat * (dxh * self.xhat).sum(-1, keepdims=True))


def test_norms_over_two_values_judge_the_input_gradient_against_the_cancelled_terms() -> None:
    """Over two values a normalisation's input gradient is nearly all cancellation (xhat is
    +-1 up to eps): a correct backward's rounding was 3-40x the tolerance ('inconclusive', in
    float32 even 'backward'). Judged against the terms' size it passes; a missing term still fails."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from zoo.resample_norm import GN_NAMES, GroupNorm, RMSNorm

    for dtype in (np.float32, np.float64):
        for seed in (0, 1, 2):
            cases = [
                (GroupNorm(3, 6, seed=seed, dtype=dtype), S.GroupNorm("gn", 3, 6), GN_NAMES, (2, 6, 1, 1)),
                (RMSNorm(1, seed=seed, dtype=dtype), S.RMSNorm("rms", 1), {}, (3, 1)),
                (_LayerNorm(2, dtype), S.LayerNorm("ln", (2,)), {"params": {"weight": "gamma", "bias": "beta"}}, (4, 2)),
            ]
            for user, spec, kw, shape in cases:
                layer = tg.check_layer(user, spec, input_shape=shape, seed=seed, **kw).layers[0]
                assert layer.verdict == "pass", (spec.kind, np.dtype(dtype).name, seed, str(layer))
        bad = _LayerNormNoMeanTerm(2, dtype)
        layer = tg.check_layer(bad, S.LayerNorm("ln", (2,)), input_shape=(4, 2), params={"weight": "gamma", "bias": "beta"}).layers[0]
        assert layer.verdict == "backward" and [t.name for t in layer.tensors if not t.ok] == ["input"], str(layer)
