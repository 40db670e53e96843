"""Errors between two tensors, reported as numbers with the worst element's index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Error:
    """How far ``actual`` is from ``expected`` (same shape).

    ``norm``: ||actual - expected||_2 / ||expected||_2 (0 when both are zero, inf when only
    ``expected`` is). ``worst``: the largest |actual - expected| divided by max|expected|,
    so a near-zero element cannot blow it up; ``index`` is where it occurs, with both values.
    """

    norm: float
    worst: float
    index: tuple[int, ...]
    actual: float
    expected: float

    def __str__(self) -> str:
        return (
            f"rel {self.norm:.2e} (worst {self.worst:.2e} at {list(self.index)}: "
            f"{self.actual:.6g} vs {self.expected:.6g})"
        )


def rel_error(actual: Any, expected: Any) -> Error:
    """:class:`Error` of ``actual`` against ``expected``; shapes must match."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return Error(0.0, 0.0, (), 0.0, 0.0)
    diff = np.abs(a - b)
    if not np.isfinite(diff).all():
        idx = np.unravel_index(int(np.argmin(np.isfinite(diff).ravel())), a.shape)
        return Error(np.inf, np.inf, tuple(int(i) for i in idx), float(a[idx]), float(b[idx]))
    ref = float(np.linalg.norm(b))
    num = float(np.linalg.norm(a - b))
    norm = num / ref if ref > 0 else (0.0 if num == 0 else np.inf)
    idx = np.unravel_index(int(np.argmax(diff)), a.shape)
    scale = float(np.abs(b).max())
    worst = float(diff[idx]) / scale if scale > 0 else (0.0 if diff[idx] == 0 else np.inf)
    return Error(norm, worst, tuple(int(i) for i in idx), float(a[idx]), float(b[idx]))
