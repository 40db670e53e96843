"""Diagnosis names the mistake: factors (batch, window), sign, transpose, flip, border,
channels, accumulation — and says nothing when nothing simple explains the error."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layouts import Layout
from harness.check import check_layer
from harness.diagnose import accumulates, diagnose

R = np.random.default_rng(0).normal(size=(4, 3, 5, 5))


def test_constant_factors_are_named() -> None:
    assert "off by a constant factor 1/4 (= 1/the batch size 4: an extra division by it)" in diagnose("weight", R / 4, R, batch=4)
    assert any("(= the window size 9" in h for h in diagnose("input", 9 * R, R, batch=4, window=9))
    assert diagnose("bias", -R, R) == ["wrong sign: the user's value is exactly -1 times the reference"]
    assert diagnose("x", 0 * R, R)[0].startswith("zero:")
    assert "off by a constant factor 3/2" in diagnose("x", 1.5 * R, R)
    assert diagnose("bias", R / 5, R, batch=5)[0].startswith("off by a constant factor 1/5 (= 1/the batch size 5")
    assert diagnose("x", 0.123456789 * R, R) == ["off by a constant factor 0.123457"]  # not a small fraction


def test_transpose_flip_border_channel() -> None:
    m = np.random.default_rng(1).normal(size=(4, 4))
    assert "transposed" in diagnose("weight", m.T, m)[0]
    assert "kernel flipped" in diagnose("weight", R[:, :, ::-1, ::-1], R)[0]
    border = R.copy()
    border[:, :, 0, :] += 1.0
    assert any("only on the border" in h for h in diagnose("input", border, R))
    chan = R.copy()
    chan[:, 2] *= 3
    assert any("only in channel(s) 2 of 3" in h for h in diagnose("input", chan, R))


def test_no_story_when_nothing_simple_fits() -> None:
    noise = R + np.random.default_rng(2).normal(size=R.shape)
    assert diagnose("input", noise, R) == []
    assert diagnose("input", R, R) == []


def test_accumulation() -> None:
    assert accumulates(R, 2 * R) and not accumulates(R, R) and not accumulates(0 * R, 0 * R)


class Accumulating:
    def __init__(self):
        rng = np.random.default_rng(3)
        self.W, self.b = rng.normal(size=(4, 3)), rng.normal(size=3)
        self.dW, self.db = np.zeros((4, 3)), np.zeros(3)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW += self.x.T @ dy  # += without a reset
        self.db += dy.sum(0)
        return dy @ self.W.T


class BatchMean(Accumulating):
    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy / len(dy), dy.sum(0) / len(dy)
        return dy @ self.W.T


def test_check_layer_reports_accumulation_and_batch_factor() -> None:
    report = check_layer(Accumulating(), S.Linear("fc", 4, 3), layout=Layout(linear="in_out"))
    layer = report.layer("fc")
    assert layer.verdict == "backward"
    assert any("doubled on a second backward call" in d for d in layer.diagnosis), layer.diagnosis
    report = check_layer(BatchMean(), S.Linear("fc", 4, 3), layout=Layout(linear="in_out"))
    layer = report.layer("fc")
    assert layer.verdict == "backward"
    assert any(d.startswith("weight: off by a constant factor 1/3 (= 1/the batch size 3") for d in layer.diagnosis), layer.diagnosis
