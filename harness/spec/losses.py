"""The loss specs: :class:`SoftmaxCrossEntropy`, :class:`MSE` and :class:`Projection` (the
cotangent as target), and :func:`check_target`, which says whether a target fits a loss."""

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


def check_target(loss: Loss, output_shape: Shape, target: np.ndarray) -> None:
    """Raise :class:`SpecError` if ``target`` does not fit ``loss`` for this output shape."""
    t = np.asarray(target)
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
KINDS: tuple[type[Loss], ...] = (SoftmaxCrossEntropy, MSE, Projection)
