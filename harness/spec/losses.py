"""The loss specs: :class:`SoftmaxCrossEntropy`, :class:`MSE`, :class:`Projection` (the
cotangent as target) and :class:`TemporalSoftmaxCrossEntropy` (sequences of logits with
masked labels), and :func:`check_target`, which says whether a target fits a loss."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from .base import Shape, SpecError


@dataclass(frozen=True)
class Loss:
    """Base of the loss specs: ``loss(output, target) -> scalar``."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}

    def _check_reduction(self) -> None:
        if getattr(self, "reduction", "mean") not in ("mean", "sum"):
            raise SpecError(f"{self.kind}: reduction must be 'mean' or 'sum', got {self.reduction!r}")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits ``(N, K)``) with integer labels ``(N,)`` or
    probabilities ``(N, K)``; ``reduction`` "mean" divides by N. ``log_eps``: the epsilon
    some code adds inside the log of its loss value, -log(p + log_eps); the gradient is the
    textbook one, (p - target) (/ N), as such code computes it."""

    kind: ClassVar[str] = "SoftmaxCrossEntropy"
    reduction: str = "mean"
    log_eps: float = 0.0

    def __post_init__(self) -> None:
        self._check_reduction()
        if not 0.0 <= self.log_eps < 1.0:
            raise SpecError(f"SoftmaxCrossEntropy: log_eps must be in [0, 1), got {self.log_eps!r}")


@dataclass(frozen=True)
class MSE(Loss):
    """Squared error sum((output - target)**2), divided by the element count if "mean"."""

    kind: ClassVar[str] = "MSE"
    reduction: str = "mean"

    def __post_init__(self) -> None:
        self._check_reduction()


@dataclass(frozen=True)
class Projection(Loss):
    """<output, g>: the target is the cotangent g itself (same shape as the output), so the
    gradient arriving at the output is exactly g."""

    kind: ClassVar[str] = "Projection"


@dataclass(frozen=True)
class TemporalSoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax over the last axis of logits ``(N, T, V)`` with integer labels
    ``(N, T)``; positions whose label equals ``ignore_index`` are masked out. ``reduction``:
    "batch" = masked sum / N (CS231n's ``temporal_softmax_loss``), "mean" = masked sum / the
    number of unmasked positions (PyTorch's ``cross_entropy(..., ignore_index=)``), "sum"."""

    kind: ClassVar[str] = "TemporalSoftmaxCrossEntropy"
    reduction: str = "batch"
    ignore_index: int = -1

    def __post_init__(self) -> None:
        if self.reduction not in ("batch", "mean", "sum"):
            raise SpecError(f"{self.kind}: reduction must be 'batch', 'mean' or 'sum', got {self.reduction!r}")
        if not isinstance(self.ignore_index, (int, np.integer)) or isinstance(self.ignore_index, bool):
            raise SpecError(f"{self.kind}: ignore_index must be an int, got {self.ignore_index!r}")

    def valid_labels(self, target: np.ndarray, v: int) -> np.ndarray:
        """``target`` with the ignored entries replaced by a valid label (``ignore_index``
        itself when it is one, as CS231n's NULL token 0 is, else 0): what code that takes a
        separate mask is handed."""
        fill = self.ignore_index if 0 <= self.ignore_index < v else 0
        return np.where(np.asarray(target) == self.ignore_index, fill, target)


def _check_temporal(loss: TemporalSoftmaxCrossEntropy, output_shape: Shape, t: np.ndarray) -> None:
    if len(output_shape) != 3:
        raise SpecError(f"{loss.kind} expects logits (N, T, V), the network outputs {tuple(output_shape)}")
    n, steps, v = output_shape
    if t.shape != (n, steps) or not np.issubdtype(t.dtype, np.integer):
        raise SpecError(f"{loss.kind}: target must be integer labels ({n}, {steps}), got {t.dtype} of shape {t.shape}")
    kept = t != loss.ignore_index
    if kept.any() and (t[kept].min() < 0 or t[kept].max() >= v):
        raise SpecError(
            f"{loss.kind}: labels must be in [0, {v}) or ignore_index={loss.ignore_index}, got range "
            f"[{t[kept].min()}, {t[kept].max()}]"
        )
    if loss.reduction == "mean" and not kept.any():
        raise SpecError(
            f"{loss.kind}: every label is ignore_index={loss.ignore_index}: reduction 'mean' divides by the number "
            "of unmasked positions, 0 here (PyTorch gives NaN)"
        )


def check_target(loss: Loss, output_shape: Shape, target: np.ndarray) -> None:
    """Raise :class:`SpecError` if ``target`` does not fit ``loss`` for this output shape."""
    t = np.asarray(target)
    if isinstance(loss, TemporalSoftmaxCrossEntropy):
        _check_temporal(loss, output_shape, t)
        return
    if isinstance(loss, SoftmaxCrossEntropy):
        if len(output_shape) != 2:
            raise SpecError(f"SoftmaxCrossEntropy expects logits (N, K), the network outputs {output_shape}")
        n, k = output_shape
        if t.shape == (n,):
            if not np.issubdtype(t.dtype, np.integer) or t.min() < 0 or t.max() >= k:
                raise SpecError(
                    f"SoftmaxCrossEntropy: labels must be integers in [0, {k}), got dtype {t.dtype}, range [{t.min()}, {t.max()}]"
                )
            return
        if t.shape != (n, k):
            raise SpecError(
                f"SoftmaxCrossEntropy: target must be labels ({n},) or probabilities ({n}, {k}), got shape {t.shape}"
            )
        return
    if t.shape != tuple(output_shape):
        raise SpecError(f"{loss.kind}: target shape {t.shape} must equal the output shape {tuple(output_shape)}")


# The kinds these specs add to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Loss], ...] = (SoftmaxCrossEntropy, MSE, Projection, TemporalSoftmaxCrossEntropy)
