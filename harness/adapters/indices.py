"""Handing integer indices to the user's code: the input of a layer or network opened by an
``Embedding`` (a spec with ``index_input``; see :func:`harness.spec.index_layer`).

Indices travel through the engine as int64 numpy arrays, never as floats, and reach the code
as int64 in the array type it computes with (numpy, torch ``long``, jax int64, CuPy), with no
layout conversion: they have no channels to reorder. A backward never owes an input gradient
for them: the wrapped layer is told ``input_grad=False`` whatever was declared, and a ``dx``
the code returns anyway is ignored, with a note (:func:`ignored_dx`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .array_kind import ArrayKind
from .array_write import from_float64

_INT64 = {"numpy": None, "torch": "torch.int64", "jax": "int64", "cupy": "int64"}


def hand_indices(x: np.ndarray, kind: ArrayKind, what: str) -> Any:
    """int64 indices ``x`` as a new array of ``kind``'s type and device (its dtype set to int64):
    what the code is handed (a copy: it may write into it)."""
    values = np.ascontiguousarray(x, dtype=np.int64)
    as_int = replace(kind, dtype=np.dtype(np.int64), framework_dtype=_INT64.get(kind.family), shape=tuple(values.shape))
    return from_float64(values.astype(np.float64), as_int, what)  # exact: whole numbers below 2**53


def ignored_dx(name: str, dx: Any) -> str:
    """The note for a backward that returned an input gradient for integer indices anyway."""
    from .returns import describe

    return (
        f"note: layer '{name}' takes integer indices, which have no gradient, but its backward returned a dx as "
        f"well ({describe(dx)}); ignored"
    )


__all__ = ["hand_indices", "ignored_dx"]
