"""How a check treats a layer or network whose input is integer indices (a spec opened by an
``Embedding``: :func:`harness.spec.index_layer`).

The design, in one place (the adapters' side is :mod:`harness.adapters.indices`):

* **int64 all the way.** The input is drawn as int64 indices in range by the layer itself
  (:meth:`~harness.spec.Embedding.random_indices`: a repeated token in every example, so a
  gradient overwritten instead of accumulated shows, and the padding index when set), or read
  from the user's ``x`` (an integer array, checked in range; a float one is a ``SpecError``).
  It stays int64 through the references (``Result.input_grad`` is None, ``Result.inputs``
  keep it int64) and reaches the user's code as int64 in the code's array type.
* **No input gradient.** The wrapped layer (and so the network) computes none whatever was
  declared (``input_grad=False``); none is asked for, compared, finite-differenced or
  probed at ties. A dx the code returns anyway is ignored, with a note.
* **The report says so.** The entry's ``input_gradient`` is ``"not differentiable"`` (JSON
  too), and its message says the input is indices, instead of an empty input row.
* **Another point** for the warm-up forward (which catches a backward using a stale cache)
  is the same tokens at shuffled positions (:func:`other_point`), not ``x`` plus noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spec import Layer, index_layer, walk

NOT_DIFFERENTIABLE = "not differentiable"  # LayerResult.input_gradient for integer-index inputs
NOT_COMPUTED = "not computed"  # ... for code declared input_grad=False


def takes_indices(spec: Layer | None) -> bool:
    """Whether ``spec``'s input is integer indices (its first leaf is an Embedding)."""
    return spec is not None and index_layer(spec) is not None


def note(spec: Layer) -> str:
    """The entry's message: ``"note: the input is integer indices (the Embedding 'emb'): not
    differentiable; no input gradient is asked for, compared or finite-differenced"``."""
    layer = index_layer(spec)
    path = next((p for p, lay in walk(spec) if lay is layer), getattr(layer, "name", ""))
    return (
        f"note: the input is integer indices (the {type(layer).__name__} '{path}'): not differentiable; no input "
        "gradient is asked for, compared or finite-differenced"
    )


def other_point(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices for the warm-up forward: ``x``'s tokens at shuffled positions (still in range)."""
    return rng.permutation(x.reshape(-1)).reshape(x.shape)


def mark(result: Any, spec: Layer) -> None:
    """Say on ``result`` (a LayerResult) that its input gradient is not compared because the
    input is indices: ``input_gradient`` and the message."""
    result.input_gradient = NOT_DIFFERENTIABLE
    result.message = "; ".join(filter(None, [result.message, note(spec)]))


__all__ = ["NOT_COMPUTED", "NOT_DIFFERENTIABLE", "mark", "note", "other_point", "takes_indices"]
