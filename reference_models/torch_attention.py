"""The attention family in the PyTorch reference: ``F.scaled_dot_product_attention`` and
``F.multi_head_attention_forward``, PyTorch's own implementations, in float64.

Each rule takes ``(layer, x, p)`` where ``p(local)`` gives a parameter tensor, and is merged
into ``torch_ref``'s table (:data:`LEAVES`). Masks are boolean where a query sees a key;
the spec refuses padding masks that hide every key from a query, so no softmax row is empty
(PyTorch would give NaN there). Independent of the JAX reference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from harness import spec as S

Tensor = torch.Tensor


def _seen(layer: S.ScaledDotProductAttention | S.MultiheadAttention, mask: Tensor | None, t: int, s: int, lead: int):
    """Bool ``(N, 1.., T, S)`` (or ``(T, S)``): where a query sees a key; None when it sees all.
    ``lead``: the axes between the batch axis and T (the heads)."""
    seen = None
    if mask is not None:  # (N, S), 1.0 = ignore: broadcast over the head axes and the queries
        seen = (mask == 0).reshape(mask.shape[0], *([1] * lead), 1, s)
    if layer.causal:  # top-left aligned, as is_causal: query i sees keys 0..i
        tri = torch.ones(t, s, dtype=torch.bool).tril()
        seen = tri if seen is None else seen & tri
    return seen


def _sdpa(layer: S.ScaledDotProductAttention, x: Tensor, p: Callable[[str], Tensor]) -> Tensor:
    key, value = p("key"), p("value")
    mask = p("key_padding_mask") if layer.key_padding else None
    seen = _seen(layer, mask, x.shape[-2], key.shape[-2], x.ndim - 3)
    scale = layer.softmax_scale(x.shape[-1])
    return F.scaled_dot_product_attention(x, key, value, attn_mask=seen, scale=scale)


def _mha(layer: S.MultiheadAttention, x: Tensor, p: Callable[[str], Tensor]) -> Tensor:
    t = x.shape[1]
    mask = p("key_padding_mask") if layer.key_padding else None
    causal = torch.ones(t, t, dtype=torch.bool).triu(1) if layer.causal else None  # True = masked, here
    xt = x.transpose(0, 1)  # the functional form is time-first (T, N, E)
    y, _ = F.multi_head_attention_forward(
        xt,
        xt,
        xt,
        layer.embed_dim,
        layer.num_heads,
        p("in_proj_weight"),
        p("in_proj_bias") if layer.bias else None,
        None,
        None,
        False,
        0.0,
        p("out_proj_weight"),
        p("out_proj_bias") if layer.bias else None,
        training=False,
        key_padding_mask=None if mask is None else mask != 0,
        need_weights=False,
        attn_mask=causal,
    )
    return y.transpose(0, 1)


LEAVES: dict[type, Callable[..., Tensor]] = {S.ScaledDotProductAttention: _sdpa, S.MultiheadAttention: _mha}

__all__ = ["LEAVES"]
