"""Users' losses, softmax fused into cross-entropy in the three usual ways, checked against
the reference loss and its gradient at the scores."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.layer import AdapterError
from harness.adapters.loss import wrap_loss
from reference_models import build
from scratch_layers import softmax_loss

RNG = np.random.default_rng(0)
SCORES = RNG.normal(size=(4, 5)) * 3
LABELS = np.array([0, 3, 4, 1])


def reference(loss: S.Loss, scores: np.ndarray, target) -> tuple[float, np.ndarray]:
    """Loss value and d loss / d scores from the torch reference (an identity Linear in front)."""
    k = scores.shape[1]
    r = build("torch", S.Sequential([S.Linear("id", k, k)])).loss_vjp(
        {"id.weight": np.eye(k), "id.bias": np.zeros(k)}, scores, loss, target)
    return r.loss, r.cotangent


class SoftmaxWithLoss:
    def forward(self, x, y_onehot):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.p, self.y = e / e.sum(axis=1, keepdims=True), y_onehot
        return -(y_onehot * np.log(self.p)).sum() / len(x)

    def backward(self):
        return (self.p - self.y) / len(self.p)


class SoftmaxLayer:
    """A softmax "layer" whose backward takes the labels and passes p - y through."""

    def forward(self, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.p = e / e.sum(axis=1, keepdims=True)
        return self.p

    def backward(self, y_onehot):
        return self.p - y_onehot


@pytest.mark.parametrize("case", ["function", "object", "softmax"])
def test_fused_softmax_cross_entropy_matches_reference(case: str) -> None:
    loss = S.SoftmaxCrossEntropy("mean")
    wrapped = {
        "function": lambda: wrap_loss(softmax_loss, loss),
        "object": lambda: wrap_loss(SoftmaxWithLoss(), loss, style="object", target_format="onehot"),
        "softmax": lambda: wrap_loss(SoftmaxLayer(), loss, style="softmax", target_format="onehot", grad_scale="unbatch"),
    }[case]()
    value, grad = wrapped.loss_and_grad(SCORES, LABELS)
    ref_value, ref_grad = reference(loss, SCORES, LABELS)
    assert abs(value - ref_value) <= 1e-12 * abs(ref_value)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_softmax_layer_without_the_scale_is_off_by_the_batch_size() -> None:
    """What the option is for: p - y is N times d(mean CE)/d scores."""
    _, grad = wrap_loss(SoftmaxLayer(), S.SoftmaxCrossEntropy(), style="softmax", target_format="onehot").loss_and_grad(SCORES, LABELS)
    _, ref_grad = reference(S.SoftmaxCrossEntropy(), SCORES, LABELS)
    np.testing.assert_allclose(grad, ref_grad * len(SCORES), rtol=1e-12)


def test_sum_reduction_and_probability_targets() -> None:
    probs = RNG.dirichlet(np.ones(5), size=4)

    def soft_target_loss(x, t):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return -(t * np.log(p)).sum(), p * t.sum(axis=1, keepdims=True) - t

    value, grad = wrap_loss(soft_target_loss, S.SoftmaxCrossEntropy("sum")).loss_and_grad(SCORES, probs)
    ref_value, ref_grad = reference(S.SoftmaxCrossEntropy("sum"), SCORES, probs)
    assert abs(value - ref_value) <= 1e-12 * abs(ref_value)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_loss_errors() -> None:
    ce = S.SoftmaxCrossEntropy()
    with pytest.raises(AdapterError, match="style must be one of"):
        wrap_loss(softmax_loss, ce, style="layer")
    with pytest.raises(AdapterError, match="target_format must be 'labels' or 'onehot'"):
        wrap_loss(softmax_loss, ce, target_format="ints")
    with pytest.raises(AdapterError, match="style='softmax' is a softmax fused with cross-entropy; the spec says MSE"):
        wrap_loss(SoftmaxLayer(), S.MSE(), style="softmax")
    with pytest.raises(AdapterError, match="needs a callable"):
        wrap_loss(SoftmaxLayer(), ce)
    with pytest.raises(AdapterError, match=r"SoftmaxLayer has no method loss\(\)"):
        wrap_loss(SoftmaxLayer(), ce, style="object", forward="loss")
    with pytest.raises(AdapterError, match="grad_scale must be 'batch', 'unbatch' or a number"):
        wrap_loss(softmax_loss, ce, grad_scale="mean")
    with pytest.raises(AdapterError, match=r"must return \(loss, dscores\), got float"):
        wrap_loss(lambda x, y: 1.0, ce).loss_and_grad(SCORES, LABELS)
    with pytest.raises(AdapterError, match=r"gradient w.r.t. the scores has shape \(4,\); expected \(4, 5\)"):
        wrap_loss(lambda x, y: (1.0, np.zeros(4)), ce).loss_and_grad(SCORES, LABELS)
    with pytest.raises(AdapterError, match=r"loss value must be a scalar, got shape \(2,\)"):
        wrap_loss(lambda x, y: (np.ones(2), np.zeros((4, 5))), ce).loss_and_grad(SCORES, LABELS)
    with pytest.raises(S.SpecError, match=r"labels must be integers in \[0, 5\)"):
        wrap_loss(softmax_loss, ce).loss_and_grad(SCORES, np.array([0, 1, 2, 9]))
