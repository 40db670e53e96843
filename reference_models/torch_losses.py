"""The loss rules of the PyTorch reference (``loss(output, target) -> scalar tensor``), out of
``torch_ref`` so each stays small: softmax cross-entropy (labels or probabilities, with a
declared epsilon in the log), MSE, the projection <output, g>, and the temporal softmax
cross-entropy with ignored positions. Independent of the JAX reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import spec as S

Tensor = torch.Tensor


def _log_eps_value(loss: S.SoftmaxCrossEntropy, out: Tensor, target: Tensor) -> Tensor:
    """-sum(target * log(softmax(out) + log_eps)) (/ N): the value code with an epsilon in the log computes."""
    prob = F.softmax(out, dim=1)
    if target.dtype == torch.int64:
        total = -torch.log(prob[torch.arange(out.shape[0]), target] + loss.log_eps).sum()
    else:
        total = -(target * torch.log(prob + loss.log_eps)).sum()
    return total / out.shape[0] if loss.reduction == "mean" else total


def _cross_entropy(loss: S.SoftmaxCrossEntropy, out: Tensor, target: Tensor) -> Tensor:
    if target.dtype == torch.int64:
        value = F.cross_entropy(out, target, reduction=loss.reduction)
    else:
        nll = -(target * F.log_softmax(out, dim=1)).sum()
        value = nll / out.shape[0] if loss.reduction == "mean" else nll
    if loss.log_eps:  # the value of -log(p + log_eps), the textbook gradient (the spec's docstring)
        value = value + (_log_eps_value(loss, out, target) - value).detach()
    return value


def _temporal(loss: S.TemporalSoftmaxCrossEntropy, out: Tensor, target: Tensor) -> Tensor:
    """Logits (N, T, V), labels (N, T): F.cross_entropy over the N*T positions, ignored ones out."""
    n, _, v = out.shape
    total = F.cross_entropy(out.reshape(-1, v), target.reshape(-1), ignore_index=loss.ignore_index, reduction="sum")
    if loss.reduction == "batch":
        return total / n
    if loss.reduction == "mean":
        return total / (target != loss.ignore_index).sum()
    return total


def loss_value(loss: S.Loss, out: Tensor, target: Tensor) -> Tensor:
    """``loss(out, target)`` as a scalar tensor, differentiable in ``out``."""
    if isinstance(loss, S.SoftmaxCrossEntropy):
        return _cross_entropy(loss, out, target)
    if isinstance(loss, S.TemporalSoftmaxCrossEntropy):
        return _temporal(loss, out, target)
    if isinstance(loss, S.MSE):
        return F.mse_loss(out, target, reduction=loss.reduction)
    if isinstance(loss, S.Projection):
        return (out * target).sum()
    raise S.SpecError(f"unknown loss {loss!r}")


__all__ = ["loss_value"]
