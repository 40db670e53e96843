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
