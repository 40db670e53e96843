"""The scale of the terms a normalisation's input gradient cancels, the floor its relative
error is judged against.

A normalisation's input gradient is a difference of terms of size ``|g * weight / sigma|``:
``dx = weight / sigma * (g - mean(g) - xhat * mean(g * xhat))`` (no mean term for RMSNorm).
With few values per statistic (a group norm of 2 channels on a 1x1 map, an RMS norm over one
feature, a layer norm over two) the terms nearly cancel, the true gradient is tiny, and any
correct code's rounding error (``eps(dtype) * |terms|``) is a large fraction of it. Judged
against the terms' size, a correct backward passes while a missing or wrong term (an error
of the terms' size) still fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spec import BatchNorm1d, BatchNorm2d, GroupNorm, Layer, LayerNorm, RMSNorm


def _trailing(x: np.ndarray, k: int) -> tuple[int, ...]:
    return tuple(range(x.ndim - k, x.ndim))


def _sigma(spec: Layer, x: np.ndarray) -> np.ndarray | None:
    """The normaliser (std or RMS, eps included), broadcastable against ``x``; None for a kind
    whose input gradient cancels nothing (or an eval-mode batch norm: a fixed scale)."""
    if isinstance(spec, (BatchNorm1d, BatchNorm2d)):
        if not spec.training:
            return None
        return np.sqrt(x.var(axis=spec.reduce_axes(x.shape), keepdims=True) + spec.eps)
    if isinstance(spec, LayerNorm):
        return np.sqrt(x.var(axis=_trailing(x, len(spec.normalized_shape)), keepdims=True) + spec.eps)
    if isinstance(spec, RMSNorm):
        return np.sqrt((x**2).mean(axis=_trailing(x, len(spec.normalized_shape)), keepdims=True) + spec.eps)
    if isinstance(spec, GroupNorm):
        groups = x.reshape(x.shape[0], spec.num_groups, -1)
        sigma = np.sqrt(groups.var(axis=2, keepdims=True) + spec.eps)
        return np.broadcast_to(sigma, groups.shape).reshape(x.shape)
    return None


def _weight(spec: Layer, x: np.ndarray, params: dict[str, Any]) -> np.ndarray | float:
    """The layer's scale broadcast against ``x`` (1.0 without one)."""
    w = params.get("weight")
    if w is None:
        return 1.0
    w = np.asarray(w, np.float64)
    if isinstance(spec, (LayerNorm, RMSNorm)) or (
        isinstance(spec, (BatchNorm1d, BatchNorm2d)) and spec.over == "feature"
    ):
        return w  # trailing axes (a per-feature batch norm's (C, H, W) is every axis but N)
    return w.reshape((1, -1) + (1,) * (x.ndim - 2))  # per channel, axis 1


def cancelled_scale(spec: Layer, x: np.ndarray, g: np.ndarray, params: dict[str, Any]) -> float:
    """``||g * weight / sigma||`` for a normalisation layer at input ``x`` (canonical, float)
    with upstream gradient ``g`` and the layer's own ``params`` (local names); 0.0 for other
    kinds. A floor for the input gradient's relative error (see the module docstring)."""
    if not np.issubdtype(np.asarray(x).dtype, np.floating):
        return 0.0
    sigma = _sigma(spec, np.asarray(x, np.float64))
    if sigma is None:
        return 0.0
    return float(np.linalg.norm(np.asarray(g, np.float64) * _weight(spec, x, params) / sigma))


__all__ = ["cancelled_scale"]
