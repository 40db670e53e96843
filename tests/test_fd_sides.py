"""Finite differences too coarse to separate the backward from the references (float32's 2e-2
along random directions) are no agreement: a probe that lands on the references' value sides
with them, so a backward two references reject is a backward bug, not "inconclusive"."""

from __future__ import annotations

import numpy as np
import pytest

import harness as tg
from harness.fd import Probe, summary

IN_OUT = tg.Layout(linear="in_out")


class Dense32:
    """float32 y = x @ W + b; ``dx_factor`` / ``db_mean``: the mistakes below."""

    dx_factor, db_mean = 1.0, False

    def __init__(self, n_in: int, n_out: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(n_in, n_out)).astype(np.float32)
        self.b = rng.normal(size=n_out).astype(np.float32)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW = self.x.T @ dy
        self.db = dy.mean(axis=0) if self.db_mean else dy.sum(axis=0)
        return self.dx_factor * (dy @ self.W.T)


class LeakyReLU32:
    def __init__(self, slope: float = 0.01, drop_slope: bool = False):
        self.slope, self.drop_slope = slope, drop_slope

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, self.slope * x).astype(np.float32)

    def backward(self, dy):
        return dy * (self.x > 0) if self.drop_slope else dy * np.where(self.x > 0, 1, self.slope).astype(np.float32)


class DxTooLarge(Dense32):
    dx_factor = 1.5


class BiasMean(Dense32):
    db_mean = True


@pytest.mark.parametrize("cls,tensor", [(DxTooLarge, "input"), (BiasMean, "bias")])
def test_a_float32_backward_the_references_reject_is_a_backward_bug(cls, tensor) -> None:
    for seed in range(3):
        entry = tg.check_layer(cls(6, 4, seed=seed), tg.Linear("fc", 6, 4), layout=IN_OUT, seed=seed).layers[0]
        assert entry.verdict == "backward", str(entry)
        assert [t.name for t in entry.tensors if not t.ok] == [tensor]


def test_a_float32_activation_without_its_slope_is_a_backward_bug() -> None:
    entry = tg.check_layer(LeakyReLU32(drop_slope=True), tg.LeakyReLU("act", 0.01), input_shape=(4, 8),
                           dtype=np.float32).layers[0]
    assert entry.verdict == "backward", str(entry)


@pytest.mark.parametrize("seed", range(8))
def test_correct_float32_code_still_passes(seed: int) -> None:
    assert tg.check_layer(Dense32(6, 4, seed=seed), tg.Linear("fc", 6, 4), layout=IN_OUT, seed=seed).ok
    assert tg.check_layer(LeakyReLU32(), tg.LeakyReLU("act", 0.01), input_shape=(4, 8), dtype=np.float32,
                          seed=seed).ok


def _probe(value: float, error: float = 0.0) -> Probe:
    return Probe(value=value, error=error, h=1e-2)


def test_summary_a_probe_on_the_references_value_is_no_agreement() -> None:
    # within float32's 2e-2 of the backward's 1.00, but exactly on the references' 1.015
    assert summary([(_probe(1.015), 1.0, 1.0)], np.float32).consistent is True  # no reference: as before
    assert summary([(_probe(1.015), 1.0, 1.0, 1.015)], np.float32).consistent is False
    # a probe as close to both (or too noisy to tell) is still agreement
    assert summary([(_probe(1.007), 1.0, 1.0, 1.015)], np.float32).consistent is True
    assert summary([(_probe(1.015, error=0.01), 1.0, 1.0, 1.015)], np.float32).consistent is True
    # the backward and the references equal: nothing to side with
    assert summary([(_probe(1.001), 1.0, 1.0, 1.0)], np.float32).consistent is True
