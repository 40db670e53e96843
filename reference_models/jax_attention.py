"""The attention family in the JAX reference, written out: scores, a masked softmax, the
weighted values; multi-head attention splits the projections into heads and merges them.

Each rule takes ``(layer, path, x, ctx)`` (parameters in ``ctx.params[f"{path}.{local}"]``)
and is merged into ``jax_ref``'s table (:data:`LAYERS`). Imports neither torch nor
``jax_ref`` (no cycle; the references stay independent).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from harness import spec as S

_HI = lax.Precision.HIGHEST


def _seen(layer: Any, mask: jax.Array | None, t: int, s: int, lead: int) -> jax.Array | None:
    """Bool, broadcastable to ``(N, ..., T, S)``: where a query sees a key (None: everywhere)."""
    seen = None
    if mask is not None:  # (N, S), 1.0 = ignore that key
        seen = (mask == 0).reshape(mask.shape[0], *([1] * lead), 1, s)
    if layer.causal:  # query i sees keys 0..i (top-left aligned when T != S)
        tri = jnp.arange(s)[None, :] <= jnp.arange(t)[:, None]
        seen = tri if seen is None else seen & tri
    return seen


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, scale: float, seen: jax.Array | None) -> jax.Array:
    """softmax(q k^T * scale) v over the last two axes, masked where ``seen`` is False.

    The masked scores never reach exp (the inner where puts the row's maximum there), so no
    inf or NaN appears in either branch and their gradient is exactly 0; every row keeps a
    visible key (the spec refuses masks hiding them all)."""
    s = jnp.einsum("...td,...sd->...ts", q, k, precision=_HI) * scale
    if seen is None:
        m = lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
        e = jnp.exp(s - m)
    else:
        seen = jnp.broadcast_to(seen, s.shape)
        m = lax.stop_gradient(jnp.max(jnp.where(seen, s, -jnp.inf), axis=-1, keepdims=True))
        e = jnp.where(seen, jnp.exp(jnp.where(seen, s, m) - m), 0.0)
    weights = e / jnp.sum(e, axis=-1, keepdims=True)
    return jnp.einsum("...ts,...sv->...tv", weights, v, precision=_HI)


def _sdpa(l: S.ScaledDotProductAttention, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    k, v = ctx.params[f"{path}.key"], ctx.params[f"{path}.value"]
    mask = ctx.params[f"{path}.key_padding_mask"] if l.key_padding else None
    seen = _seen(l, mask, x.shape[-2], k.shape[-2], x.ndim - 3)
    return _attend(x, k, v, l.softmax_scale(x.shape[-1]), seen)


def _project(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    y = jnp.einsum("...i,oi->...o", x, w, precision=_HI)  # x W^T: weights (out, in)
    return y if b is None else y + b


def _mha(l: S.MultiheadAttention, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    p, (n, t, e), h = ctx.params, x.shape, l.num_heads
    bias = (lambda k: p[f"{path}.{k}"]) if l.bias else (lambda k: None)
    w_in, b_in = p[f"{path}.in_proj_weight"], bias("in_proj_bias")
    # q, k, v: rows [0, E), [E, 2E), [2E, 3E) of the fused projection; heads (N, H, T, E/H)
    heads = [
        _project(x, w_in[i * e : (i + 1) * e], None if b_in is None else b_in[i * e : (i + 1) * e])
        .reshape(n, t, h, l.head_dim)
        .transpose(0, 2, 1, 3)
        for i in range(3)
    ]
    mask = p[f"{path}.key_padding_mask"] if l.key_padding else None
    q, k, v = heads
    o = _attend(q, k, v, 1.0 / math.sqrt(l.head_dim), _seen(l, mask, t, t, 1))
    return _project(o.transpose(0, 2, 1, 3).reshape(n, t, e), p[f"{path}.out_proj_weight"], bias("out_proj_bias"))


LAYERS: dict[type, Callable[..., jax.Array]] = {S.ScaledDotProductAttention: _sdpa, S.MultiheadAttention: _mha}

__all__ = ["LAYERS"]
