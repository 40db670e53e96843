"""Hypotheses that need the reference again: each computes the value the user's tensor
would have under one named mistake (from the reference at another hyperparameter, the
reference's VJP with part of the upstream gradient, or a closed form built from the
reference's own quantities) and is printed only when that value reproduces the user's
tensor within the tensor's tolerance — and differs from the true value.

``point``: the checked point and the reference at a variant; ``forward``: a wrong forward;
``backward``: a wrong gradient; ``elementwise``: an activation's derivative written wrong;
``layout``: whether another layout reproduces every tensor; ``conventions``: a convention a
spec field declares (a norm's eps, a non-inverted dropout, an epsilon in a loss's log);
``embedding``: an embedding gradient overwritten for repeated tokens, a padding row given one;
``recurrent``: where in time a sequence gradient goes wrong, truncated BPTT, gate blocks;
``attention``: an attention's softmax backward, scale, masks and heads; ``temporal``: a
temporal loss's divisor and mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..results import LayerResult
from ..spec import AvgPool2d, BatchNorm2d, Conv1d, Conv2d, GlobalAvgPool2d, Layer, MaxPool2d, Upsample
from .attention import attention_gradients
from .backward import wrong_gradients
from .conventions import EPS_TRIED, conventions, declaration
from .embedding import embedding_gradients
from .forward import wrong_forward
from .layout import reproduces_under
from .point import Point
from .recurrent import recurrent


def explain(
    result: LayerResult,
    tensors: list[tuple],
    spec: Layer,
    params: dict[str, np.ndarray],
    x: np.ndarray,
    g: np.ndarray,
    layout: Any = None,
) -> list[str]:
    """Every confirmed hypothesis for the failing tensors of ``result``, as
    ``"<tensor>: <mistake>"`` lines. ``tensors``: check's (name, side, user, torch, jax, ...)."""
    failing = [tr.name for tr in result.tensors if not tr.ok]
    if not failing:
        return []
    p = Point(
        spec,
        params,
        x,
        g,
        {t[0]: np.asarray(t[2], np.float64) for t in tensors},
        {t[0]: np.asarray(t[3], np.float64) for t in tensors},
        {tr.name: tr.tolerance for tr in result.tensors},
        layout,
    )
    found = conventions(p, failing)
    if "output" in failing:
        found += wrong_forward(p)
    backward = [n for n in failing if n != "output"]
    if backward:
        found += wrong_gradients(p, backward, forward_ok="output" not in failing)
        found += embedding_gradients(p, backward)
        found += attention_gradients(p, backward)
    return found + recurrent(p, failing)


def counts(spec: Layer, x: np.ndarray) -> dict[str, int]:
    """Sizes a gradient's constant factor may be (besides the batch and the window): the
    number of windows (output positions), of channels, of pixels of a global pool."""
    out: dict[str, int] = {}
    if x.ndim == 4 and isinstance(spec, (Conv2d, MaxPool2d, AvgPool2d)):
        try:
            oh, ow = spec.output_shape(x.shape)[2:]
        except Exception:
            return out
        out["the number of windows (output positions)"] = oh * ow
    if x.ndim == 4 and isinstance(spec, GlobalAvgPool2d):
        out["the number of pixels H*W"] = x.shape[2] * x.shape[3]
    if x.ndim >= 2 and isinstance(spec, (Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d, GlobalAvgPool2d)):
        out["the number of channels"] = x.shape[1]
    if isinstance(spec, Conv2d):
        out["the number of output channels"] = spec.out_channels
    if x.ndim == 3 and isinstance(spec, Conv1d):
        try:
            out["the number of windows (output positions)"] = spec.output_shape(x.shape)[2]
        except Exception:
            return out
    if isinstance(spec, Upsample) and spec.mode == "nearest":
        out["the number of copies of each pixel"] = spec.scale_factor[0] * spec.scale_factor[1]
    return out


__all__ = ["EPS_TRIED", "Point", "counts", "declaration", "explain", "reproduces_under"]
