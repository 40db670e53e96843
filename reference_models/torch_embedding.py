"""The PyTorch reference's rule for the embedding family (merged into ``torch_ref._LEAVES``).

``F.embedding`` reads rows of the weight by integer index; autograd accumulates the
upstream gradients of repeated indices into their row and leaves the ``padding_idx`` row's
gradient zero. Written independently of the JAX rule (``jax_embedding``); imports neither
``torch_ref`` nor jax.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from harness import spec as S


def _embedding(layer: S.Embedding, x: torch.Tensor, p: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """``x``: int64 indices ``(N, ...)`` -> ``(N, ..., D)``."""
    return F.embedding(x, p("weight"), padding_idx=layer.padding_idx)


LEAVES: dict[type, Callable[..., torch.Tensor]] = {S.Embedding: _embedding}

__all__ = ["LEAVES"]
