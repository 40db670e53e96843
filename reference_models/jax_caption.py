"""The captioning family in the JAX reference: a :class:`~harness.spec.Captioner` run through
its children, each recorded like any layer by ``apply`` (``jax_ref._apply``, handed in by
``jax_ref``'s table so that this module imports neither it nor torch). Float64 under the
caller's ``jax.enable_x64``; independent of :mod:`.torch_caption`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jax

from harness import spec as S

Apply = Callable[[S.Layer, str, jax.Array, Any], jax.Array]


def captioner(layer: S.Captioner, path: str, x: jax.Array, ctx: Any, apply: Apply) -> jax.Array:
    """Caption indices ``x (N, T)`` -> scores ``(N, T, V)`` with ``h0 = project(features)``
    ``(N, H)``; ``ctx.params[f"{path}.features"]`` the features ``(N, F)``. The recurrent child
    runs with ``initial_state=True`` and its h0 put among the parameters it reads (a new
    mapping: the traced parameters stay as the caller gave them)."""
    part = lambda child: S.join_path(path, child.name)  # noqa: E731
    emb = apply(layer.embed, part(layer.embed), x, ctx)
    h0 = apply(layer.project, part(layer.project), ctx.params[f"{path}.features"], ctx)
    ctx.params = {**ctx.params, f"{part(layer.rnn)}.h0": h0}
    hidden = apply(replace(layer.rnn, initial_state=True), part(layer.rnn), emb, ctx)
    return apply(layer.vocab, part(layer.vocab), hidden, ctx)


__all__ = ["captioner"]
