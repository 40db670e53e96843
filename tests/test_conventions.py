"""Conventions of real code that a spec field declares, on layers written the way the "deep
learning from scratch" books write them (tests/realcode/dlfs.py):

* a normalisation's eps (``np.sqrt(var + 10e-7)``): undeclared, the diagnosis finds the eps
  (estimated from the output, or from the usual ones) and names ``eps=``;
* a non-inverted dropout (``x * mask`` in training, ``x * (1 - p)`` at test time): undeclared,
  the diagnosis names ``inverted=False``;
* an epsilon inside a cross-entropy's log (``-log(p + 1e-7)``) with the textbook gradient:
  undeclared, the diagnosis names ``log_eps=``.

Declared, each passes at several seeds; a bug under the declaration is still found. The
20-seed runs and the buggy variants of the table are in tests/test_real_code.py
(``dlfs_*``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import harness as tg
from harness import spec as S
from realcode import cs231n_net, cs231n_norm, dlfs

SEEDS = (0, 1, 2)


def _entry(report: tg.Report) -> tg.LayerResult:
    assert len(report.layers) == 1, str(report)
    return report.layers[0]


def _bn(seed: int = 0, features: int = 48, cls=dlfs.BatchNormalization):
    rng = np.random.default_rng(seed)
    return cls(rng.normal(size=features) + 1, rng.normal(size=features))


class LayerNorm:
    """Over the last axis of (N, F), eps as the code's author chose it."""

    def __init__(self, f: int, eps: float, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.gamma, self.beta, self.eps = 1 + 0.2 * rng.normal(size=f), 0.2 * rng.normal(size=f), eps

    def forward(self, x):
        self.xc = x - x.mean(axis=-1, keepdims=True)
        self.std = np.sqrt((self.xc ** 2).mean(axis=-1, keepdims=True) + self.eps)
        self.xn = self.xc / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        self.dgamma, self.dbeta = (dout * self.xn).sum(axis=0), dout.sum(axis=0)
        d = dout * self.gamma
        mean = lambda a: a.mean(axis=-1, keepdims=True)  # noqa: E731
        return (d - mean(d) - self.xn * mean(d * self.xn)) / self.std


# --------------------------------------------------------------------------- eps


def test_undeclared_eps_is_named_with_its_declaration() -> None:
    entry = _entry(tg.check_layer(_bn(), tg.BatchNorm1d("bn", 48), input_shape=(4, 48)))
    assert entry.verdict == "forward", str(entry)
    assert ("output, input, weight: the forward matches the reference with eps=1e-06 (declared 1e-05): "
            "declare BatchNorm1d('bn', 48, eps=1e-06)") in entry.diagnosis, entry.diagnosis


def test_undeclared_eps_over_features_keeps_the_other_fields() -> None:
    entry = _entry(tg.check_layer(_bn(), tg.BatchNorm2d("bn", 3, over="feature"), input_shape=(4, 3, 4, 4)))
    assert any(line.endswith("declare BatchNorm2d('bn', 3, eps=1e-06, over='feature')") for line in entry.diagnosis), \
        entry.diagnosis


@pytest.mark.parametrize("seed", SEEDS)
def test_declared_eps_passes(seed: int) -> None:
    report = tg.check_layer(_bn(seed), tg.BatchNorm1d("bn", 48, eps=1e-6), input_shape=(4, 48), seed=seed)
    assert report.ok and _entry(report).verdict == "pass", str(report)


def test_a_bug_under_the_declared_eps_is_found() -> None:
    bn = _bn(cls=dlfs.BatchNormalizationNoMeanPath)
    entry = _entry(tg.check_layer(bn, tg.BatchNorm1d("bn", 48, eps=1e-6), input_shape=(4, 48)))
    assert entry.verdict == "backward", str(entry)
    assert not any("eps=" in line for line in entry.diagnosis), entry.diagnosis


@pytest.mark.parametrize("eps", [3e-5, 1e-12, 2e-4])
def test_layer_norm_eps_outside_the_usual_ones_is_estimated(eps: float) -> None:
    """3e-5 is in no list of the usual values: it is read off the output, then confirmed."""
    entry = _entry(tg.check_layer(LayerNorm(6, eps), tg.LayerNorm("ln", 6), input_shape=(5, 6)))
    assert entry.verdict == "forward", str(entry)
    line = (f"the forward matches the reference with eps={eps!r} (declared 1e-05): "
            f"declare LayerNorm('ln', (6,), eps={eps!r})")
    assert any(line in d for d in entry.diagnosis), entry.diagnosis
    assert tg.check_layer(LayerNorm(6, eps), tg.LayerNorm("ln", 6, eps=eps), input_shape=(5, 6)).ok


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.5, 0.25])
def test_undeclared_non_inverted_dropout_is_named(p: float) -> None:
    entry = _entry(tg.check_layer(dlfs.Dropout(p), tg.Dropout("drop", p), input_shape=(4, 6)))
    assert entry.verdict == "forward", str(entry)
    line = (f"output, input: the output is the reference times (1 - p) = {1 - p:g}: a dropout that does not scale in "
            "training (non-inverted: x * mask in training, x * (1 - p) at test time); "
            f"declare Dropout('drop', {p!r}, inverted=False)")
    assert line in entry.diagnosis, entry.diagnosis


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.5, 0.25])
def test_declared_non_inverted_dropout_passes(p: float, seed: int) -> None:
    report = tg.check_layer(dlfs.Dropout(p), tg.Dropout("drop", p, inverted=False), input_shape=(4, 6), seed=seed)
    assert report.ok and _entry(report).verdict == "pass", str(report)


def test_inverted_code_under_inverted_false_is_named() -> None:
    layer = tg.wrap_functions(cs231n_norm.dropout_forward, cs231n_norm.dropout_backward,
                              tg.Dropout("drop", 0.25, inverted=False), args=({"p": 0.75, "mode": "train", "seed": 0},))
    entry = _entry(tg.check_layer(layer, input_shape=(4, 6)))
    assert entry.verdict == "forward", str(entry)
    assert any("times 1/(1 - p) = 1.33333 under the declared inverted=False" in line and
               line.endswith("declare Dropout('drop', 0.25)") for line in entry.diagnosis), entry.diagnosis


def test_a_bug_under_inverted_false_is_found() -> None:
    entry = _entry(tg.check_layer(dlfs.DropoutMaskForgottenInBackward(0.25), tg.Dropout("drop", 0.25, inverted=False),
                                  input_shape=(4, 6)))
    assert entry.verdict == "backward", str(entry)


@pytest.mark.parametrize("training", [True, False])
def test_both_references_follow_inverted_false(training: bool) -> None:
    from reference_models import build

    spec = tg.Sequential([tg.Dropout("drop", 0.25, training=training, inverted=False)])
    x = np.random.default_rng(0).normal(size=(3, 4))
    mask = (np.random.default_rng(1).random((3, 4)) > 0.25).astype(float)
    params = {"drop.mask": mask} if training else {}
    expected = x * mask if training else x * 0.75
    for kind in ("torch", "jax"):
        res = build(kind, spec).vjp(params, x, np.ones_like(x))
        np.testing.assert_allclose(res.output, expected, rtol=1e-12)
        np.testing.assert_allclose(res.input_grad, mask if training else np.full_like(x, 0.75), rtol=1e-12)


def test_inverted_false_round_trips_through_torch() -> None:
    from reference_models.torch_bridge import from_torch, to_module

    spec = tg.Sequential([tg.Dropout("drop", 0.25, inverted=False)])
    module = to_module(spec, {"drop.mask": np.ones((2, 3))})
    assert from_torch(module)[0].layers[0] == spec.layers[0]


# --------------------------------------------------------------------------- an epsilon in the log


def _loss(code=dlfs.SoftmaxWithLoss, **spec):
    return tg.wrap_loss(code(), tg.SoftmaxCrossEntropy(**spec), style="object")


def test_undeclared_log_eps_is_named() -> None:
    entry = _entry(tg.check_loss(_loss(), input_shape=(4, 5)))
    assert entry.verdict == "forward", str(entry)
    assert entry.diagnosis == ["value: the loss value matches log(p + 1e-07) (an epsilon inside the log): "
                               "declare SoftmaxCrossEntropy(log_eps=1e-07)"], entry.diagnosis


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(4, 5), (16, 100)])
def test_declared_log_eps_passes(shape: tuple[int, int], seed: int) -> None:
    """(16, 100): probabilities near 1e-2 and below, where the epsilon's part of the value's
    derivative (~eps/p) would reach finite differences if it were not taken out first."""
    report = tg.check_loss(_loss(log_eps=1e-7), input_shape=shape, seed=seed)
    assert report.ok and _entry(report).verdict == "pass", str(report)


def test_a_bug_under_the_declared_log_eps_is_found() -> None:
    entry = _entry(tg.check_loss(_loss(dlfs.SoftmaxWithLossNotAveraged, log_eps=1e-7), input_shape=(4, 5)))
    assert entry.verdict == "backward", str(entry)


def test_declared_log_eps_on_code_without_one_is_named() -> None:
    entry = _entry(tg.check_loss(cs231n_net.softmax_loss, tg.SoftmaxCrossEntropy(log_eps=1e-7),
                                 input_shape=(4, 5)))
    assert entry.verdict == "forward", str(entry)
    assert entry.diagnosis == ["value: the loss value matches log(p) with no epsilon inside the log (declared "
                               "log_eps=1e-07): declare SoftmaxCrossEntropy()"], entry.diagnosis


def test_log_eps_references_agree_on_probability_targets() -> None:
    from reference_models import build

    rng = np.random.default_rng(0)
    scores, target = rng.normal(size=(4, 5)), rng.dirichlet(np.ones(5), size=4)
    net = tg.Sequential([tg.Flatten("scores")])
    loss = tg.SoftmaxCrossEntropy(log_eps=1e-3)
    t, j = (build(k, net).loss_vjp({}, scores, loss, target) for k in ("torch", "jax"))
    p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose([t.loss, j.loss], -(target * np.log(p + 1e-3)).sum() / 4, rtol=1e-12)
    np.testing.assert_allclose(t.input_grad, (p - target) / 4, rtol=1e-12)  # the textbook gradient
    np.testing.assert_allclose(j.input_grad, (p - target) / 4, rtol=1e-12)


# --------------------------------------------------------------------------- the spec fields


def test_old_spec_json_reads_with_todays_behaviour() -> None:
    assert S.from_dict({"kind": "Dropout", "name": "drop", "p": 0.5, "training": True}).inverted is True
    assert S.from_dict({"kind": "SoftmaxCrossEntropy", "reduction": "mean"}).log_eps == 0.0


def test_new_fields_round_trip_through_json() -> None:
    for spec in (tg.Dropout("drop", 0.25, inverted=False), tg.SoftmaxCrossEntropy(log_eps=1e-7)):
        assert S.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_a_log_eps_out_of_range_is_a_spec_error() -> None:
    with pytest.raises(S.SpecError, match=r"SoftmaxCrossEntropy: log_eps must be in \[0, 1\), got -1e-07"):
        tg.SoftmaxCrossEntropy(log_eps=-1e-7)
