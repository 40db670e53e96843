"""Hypotheses about an activation's input gradient written wrong: each is a closed form of
the upstream gradient ``g``, the input ``x`` and the reference's output ``y`` (same shape)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..spec import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .point import Point

Form = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _forms(spec: object) -> list[tuple[str, Form]]:
    """(mistake, value from (g, x, y)) for the activations whose derivative is written by hand."""
    if isinstance(spec, Sigmoid):
        return [
            ("the derivative y(1-y) evaluated at the input x instead of the output y", lambda g, x, y: g * x * (1 - x))
        ]
    if isinstance(spec, Tanh):
        return [
            ("the derivative 1-y^2 evaluated at the input x instead of the output y", lambda g, x, y: g * (1 - x**2)),
            ("the square missing from the derivative 1-y^2 (1-y written)", lambda g, x, y: g * (1 - y)),
        ]
    if isinstance(spec, ReLU):
        return [
            (
                "the mask taken from the upstream gradient (g > 0) instead of the input (x > 0)",
                lambda g, x, y: g * (g > 0),
            )
        ]
    if isinstance(spec, LeakyReLU):
        return [
            (
                "the negative slope dropped: ReLU's derivative (x > 0) where LeakyReLU's is meant",
                lambda g, x, y: g * (x > 0),
            )
        ]
    if isinstance(spec, Softmax):
        return [
            (
                "only the diagonal y(1-y) of the softmax Jacobian (the -y_i y_j terms dropped)",
                lambda g, x, y: g * y * (1 - y),
            )
        ]
    return []


def wrong_derivative(p: Point) -> list[str]:
    """``input: <mistake>`` for every closed form that reproduces the user's input gradient
    (``y``: the reference's output, so a wrong user forward cannot feed the hypothesis)."""
    if p.g.shape != p.x.shape:
        return []
    y = p.ref["output"]
    return [f"input: {what}" for what, form in _forms(p.spec) if p.fits("input", form(p.g, p.x, y))]


__all__ = ["wrong_derivative"]
