"""Hypotheses about an Embedding's weight gradient: the two mistakes from-scratch code makes.

* **Overwritten instead of accumulated.** ``dW[x] = dout`` (or ``dW[x[n, t]] = dout[n, t]``
  in a loop) keeps one occurrence's upstream gradient per token where every occurrence must
  add into its row (``np.add.at(dW, x, dout)``, ``+=`` in the loop): the value equals the
  reference's except on the rows of tokens that occur more than once, which hold only the
  last (or, written otherwise, the first) occurrence's contribution.
* **The padding row given a gradient.** ``padding_idx``'s row must receive none (PyTorch's
  rule); code that forgets it sums that token's upstream gradients there like any other.

Each value is built in closed form from the checked point (indices ``x``, upstream gradient
``g``) and named only when it reproduces the user's gradient (:meth:`~.point.Point.fits`).
"""

from __future__ import annotations

import numpy as np

from ..spec import Embedding
from .point import Point

_FIX = "use np.add.at(dW, x, dout), or += in the loop"


def _occurrences(x: np.ndarray, g: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accumulated, last occurrence only, first occurrence only): the weight gradient built
    from flat indices ``x`` and their upstream gradients ``g`` (one row each), in C order."""
    total, last, first = (np.zeros((rows, g.shape[1])) for _ in range(3))
    np.add.at(total, x, g)
    for i, token in enumerate(x):  # explicit loops: which occurrence a fancy assignment keeps is not promised
        last[token] = g[i]
    for i in range(len(x) - 1, -1, -1):
        first[x[i]] = g[i]
    return total, last, first


def _listed(values: list[int]) -> str:
    return ", ".join(str(v) for v in values[:8]) + (f" and {len(values) - 8} more" if len(values) > 8 else "")


def embedding_gradients(p: Point, names: list[str]) -> list[str]:
    """Confirmed hypotheses for a failing Embedding ``weight`` gradient (``names``: the
    failing gradients), as ``"weight: ..."`` lines naming the rows (tokens) concerned."""
    layer = p.spec
    if not isinstance(layer, Embedding) or "weight" not in names or not np.issubdtype(p.x.dtype, np.integer):
        return []
    x, pad = p.x.reshape(-1), layer.padding_idx
    total, last, first = _occurrences(x, p.g.reshape(x.size, -1), layer.num_embeddings)
    counts = np.bincount(x, minlength=layer.num_embeddings)
    repeated = [t for t in range(layer.num_embeddings) if counts[t] > 1 and t != pad]
    found = []
    for which, value in (("last", last), ("first", first)):
        for padded in (False, True) if pad is not None else (False,):
            candidate = value.copy()
            if pad is not None and not padded:
                candidate[pad] = 0.0
            if p.fits("weight", candidate):
                also = f"; the padding row (padding_idx={pad}) receives a gradient too" if padded else ""
                found.append(
                    f"weight: overwritten instead of accumulated for repeated tokens: rows {_listed(repeated)} (tokens "
                    f"that occur more than once) hold only the {which} occurrence's upstream gradient (dW[x] = dout, "
                    f"or = in a loop: {_FIX}){also}"
                )
    if pad is not None and p.fits("weight", total):
        found.append(
            f"weight: the padding row (padding_idx={pad}) receives a gradient: the upstream gradients of its "
            f"{counts[pad]} occurrence(s) are summed into it, but it must stay zero (dW[padding_idx] = 0 after "
            "accumulating, as PyTorch's padding_idx)"
        )
    return found


__all__ = ["embedding_gradients"]
