"""The JAX reference's rule for the embedding family (merged into ``jax_ref._LAYERS``).

A lookup with ``jnp.take`` along the weight's first axis, whose VJP is a scatter-add
(``.at[x].add(dy)``): the upstream gradients of repeated indices accumulate in their row.
The ``padding_idx`` row is read through ``stop_gradient``, so it receives none (PyTorch's
rule). Written independently of the torch rule (``torch_embedding``); imports neither
``jax_ref`` nor torch: the context ``ctx`` is duck-typed (``ctx.params[f"{path}.weight"]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from harness import spec as S


def _embedding(layer: S.Embedding, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    """``x``: integer indices ``(N, ...)`` -> ``(N, ..., D)``."""
    w = ctx.params[f"{path}.weight"]
    if layer.padding_idx is not None:  # the row is still read, but its gradient is cut
        w = w.at[layer.padding_idx].set(lax.stop_gradient(w[layer.padding_idx]))
    # "clip": indices are checked in range before any reference runs (harness.spec.read_input)
    return jnp.take(w, x, axis=0, mode="clip")


LAYERS: dict[type, Callable[..., jax.Array]] = {S.Embedding: _embedding}

__all__ = ["LAYERS"]
