"""The embedding family: :class:`Embedding`, a lookup of rows of a ``(V, D)`` table by
integer index, the first layer of a language or captioning model.

Its input is **integer indices**, not activations: ``index_input = True`` on the class says
so, and the engine reads it (:func:`~harness.spec.tree.index_input`): a network whose first
leaf is an Embedding takes indices, which are not differentiable (no input gradient is asked
for, compared or finite-differenced). :meth:`Embedding.read_indices` checks an input's dtype
and range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .base import Layer, ParamInfo, Shape, SpecError, _check_name


def _positive(value: Any, what: str, layer: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise SpecError(f"layer '{layer}': {what} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class Embedding(Layer):
    """Integer indices ``(N, ...)`` (int64, each in ``[0, num_embeddings)``) ->
    ``(N, ..., embedding_dim)``: ``y[n, ...] = weight[x[n, ...]]``.

    weight ``(num_embeddings, embedding_dim)``. Its gradient accumulates: a row picked by
    several positions receives the sum of their upstream gradients. The row ``padding_idx``
    (when set) receives no gradient (its output is still read from the table, as PyTorch's
    ``F.embedding`` does). The input is not differentiable.
    """

    kind: ClassVar[str] = "Embedding"
    index_input: ClassVar[bool] = True
    name: str
    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        _positive(self.num_embeddings, "num_embeddings", self.name)
        _positive(self.embedding_dim, "embedding_dim", self.name)
        p = self.padding_idx
        if p is None:
            return
        if not isinstance(p, (int, np.integer)) or isinstance(p, bool):
            raise SpecError(f"layer '{self.name}': padding_idx must be None or an int, got {p!r}")
        if not 0 <= p < self.num_embeddings:
            fix = (
                f" (PyTorch reads a negative padding_idx from the end: pass {self.num_embeddings + p})"
                if -self.num_embeddings <= p < 0
                else ""
            )
            raise SpecError(
                f"layer '{self.name}': padding_idx={p} is out of range: expected 0 <= padding_idx < "
                f"num_embeddings={self.num_embeddings}{fix}"
            )

    def _infer(self, shape: Shape, path: str) -> Shape:
        if len(shape) < 1:
            raise SpecError(f"layer '{path}': expects integer indices (N, ...), got shape {shape}")
        return (*shape, self.embedding_dim)

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        return {"weight": ParamInfo((self.num_embeddings, self.embedding_dim))}

    def no_grad(self, local: str, shape: Shape) -> np.ndarray | None:
        """The padding row of the weight (its gradient is zero by definition), if any."""
        if local != "weight" or self.padding_idx is None:
            return None
        mask = np.zeros(shape, dtype=bool)
        mask[self.padding_idx] = True
        return mask

    def read_indices(self, x: Any, path: str | None = None) -> np.ndarray:
        """``x`` as an int64 array after checking it holds indices: an integer dtype (a float or
        bool array is a :class:`SpecError`, even with whole values: indices must not pass through
        floats unseen) and every value in ``[0, num_embeddings)``."""
        where = f"layer '{path or self.name}'"
        a = np.asarray(x)
        if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
            raise SpecError(
                f"{where}: an Embedding takes integer indices; the input is {a.dtype} (likely cause: indices "
                "built with np.zeros / np.random.rand, or cast to float on the way; pass x.astype(np.int64))"
            )
        if a.size and (int(a.min()) < 0 or int(a.max()) >= self.num_embeddings):
            bad = a[(a < 0) | (a >= self.num_embeddings)]
            first = tuple(int(i) for i in np.argwhere((a < 0) | (a >= self.num_embeddings))[0])
            raise SpecError(
                f"{where}: index {int(bad[0])} at {list(first)} is out of range: expected 0 <= index < "
                f"num_embeddings={self.num_embeddings} ({bad.size} of {a.size} out of range)"
            )
        return a.astype(np.int64)

    def random_indices(self, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        """Random int64 indices of ``shape`` where accumulation bugs show: every example
        (``x[n]``) holds a repeated non-padding token (with one position per example, two examples
        share one), and ``padding_idx``, when set, appears in every example with room
        for it (at least 3 positions; else once, at the last position of the batch)."""
        v, pad = self.num_embeddings, self.padding_idx
        tokens = np.array([t for t in range(v) if t != pad] or [0], dtype=np.int64)
        x = rng.choice(tokens, size=shape).astype(np.int64)
        flat = x.reshape(shape[0], -1)  # a view: rows are the examples
        if flat.shape[1] == 1:  # one position per example: the batch is the row
            flat = x.reshape(1, -1)
        m = flat.shape[1]
        for row in flat:
            if m >= 2:
                a, b = rng.choice(m, size=2, replace=False)
                row[b] = row[a]
                if pad is not None and m >= 3:
                    row[rng.choice([i for i in range(m) if i not in (a, b)])] = pad
        if pad is not None and m < 3:  # too few positions for both: the last one overall
            x.reshape(-1)[-1] = pad
        return x


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (Embedding,)
