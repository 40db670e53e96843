"""The attention family between specs and PyTorch modules (see :mod:`.torch_bridge`).

* :class:`SelfAttention` is an ``nn.MultiheadAttention`` (batch first) whose ``forward(x)``
  is ``attn(x, x, x)[0]`` with the spec's causal mask and its ``key_padding_mask`` buffer;
  :class:`ScaledDotProductAttention` holds ``key`` and ``value`` as parameters and applies
  ``F.scaled_dot_product_attention`` to the query it is given.
* ``from_torch`` reads a plain ``nn.MultiheadAttention`` (batch first or not: the spec is
  batch first, so feed ``(N, T, E)``; no dropout in training, ``kdim == vdim == embed_dim``, no
  ``add_bias_kv`` / ``add_zero_attn``) as self-attention without masks.

PyTorch keeps the output projection as a child ``nn.Linear`` (``out_proj.weight``); the
spec's name is ``out_proj_weight``. :data:`RENAMES` is the map: :class:`SelfAttention`'s
``state_dict`` uses the spec's names (and loads either), and :func:`state_dict` renames a
plain module's keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import spec as S

# PyTorch's state_dict key -> the spec's local name, for nn.MultiheadAttention
RENAMES = {"out_proj.weight": "out_proj_weight", "out_proj.bias": "out_proj_bias"}


def _rename(state: dict[str, Any], prefix: str, mapping: Mapping[str, str]) -> None:
    for old, new in mapping.items():
        if prefix + old in state:
            state[prefix + new] = state.pop(prefix + old)


def _spec_order(state: dict[str, Any], prefix: str) -> None:
    """The spec's names, in the spec's order: the buffer after the output projection."""
    _rename(state, prefix, RENAMES)
    if prefix + "key_padding_mask" in state:
        state[prefix + "key_padding_mask"] = state.pop(prefix + "key_padding_mask")


class SelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention(E, H, bias=, batch_first=True)`` as the spec's self-attention:
    ``forward(x (N, T, E)) -> (N, T, E)``, causal if the spec says so, the padding mask (float,
    1.0 = ignore) a buffer of the ``(N, T)`` it was built for. Its ``state_dict`` keys are the
    spec's names; ``load_state_dict`` takes those or PyTorch's."""

    def __init__(self, layer: S.MultiheadAttention, mask: torch.Tensor | None = None) -> None:
        super().__init__(layer.embed_dim, layer.num_heads, bias=layer.bias, batch_first=True)
        self.causal = layer.causal
        # None (not in the state_dict) without padding; else the mask, (0,) until one is loaded
        self.register_buffer(
            "key_padding_mask", (torch.zeros(0) if mask is None else mask) if layer.key_padding else None
        )
        self.register_state_dict_post_hook(lambda m, state, prefix, meta: _spec_order(state, prefix))
        self.register_load_state_dict_pre_hook(
            lambda m, state, prefix, *rest: _rename(state, prefix, {v: k for k, v in RENAMES.items()})
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]  # one input: self-attention
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1) if self.causal else None
        mask = self.key_padding_mask
        pad = torch.ne(mask, 0.0) if isinstance(mask, torch.Tensor) else None
        return super().forward(x, x, x, key_padding_mask=pad, attn_mask=causal, need_weights=False)[0]


class ScaledDotProductAttention(nn.Module):
    """The spec's scaled dot-product attention with its ``key`` and ``value`` as parameters
    (the shapes they were built with fix the input's) and the padding mask as a buffer."""

    key_padding_mask: torch.Tensor | None

    def __init__(self, layer: S.ScaledDotProductAttention, params: Mapping[str, np.ndarray], path: str) -> None:
        super().__init__()
        self.layer = layer
        self.key = nn.Parameter(torch.as_tensor(np.asarray(params[f"{path}.key"], np.float64)))
        self.value = nn.Parameter(torch.as_tensor(np.asarray(params[f"{path}.value"], np.float64)))
        mask = params[f"{path}.key_padding_mask"] if layer.key_padding else None
        self.register_buffer(
            "key_padding_mask", None if mask is None else torch.as_tensor(np.asarray(mask, np.float64))
        )

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        t, s = q.shape[-2], self.key.shape[-2]
        seen = None
        if self.key_padding_mask is not None:
            seen = (self.key_padding_mask == 0).reshape(q.shape[0], *([1] * (q.ndim - 3)), 1, s)
        if self.layer.causal:
            tri = torch.ones(t, s, dtype=torch.bool, device=q.device).tril()
            seen = tri if seen is None else seen & tri
        return F.scaled_dot_product_attention(
            q, self.key, self.value, attn_mask=seen, scale=self.layer.softmax_scale(q.shape[-1])
        )


def _self_attention(layer: S.MultiheadAttention, path: str, params: Mapping[str, np.ndarray]) -> nn.Module:
    mask = params.get(f"{path}.key_padding_mask") if layer.key_padding else None
    return SelfAttention(layer, None if mask is None else torch.as_tensor(np.asarray(mask, np.float64)))


# spec class -> the module computing it, from (layer, path, params by canonical name)
MODULES: dict[type, Callable[[Any, str, Mapping[str, np.ndarray]], nn.Module]] = {
    S.MultiheadAttention: _self_attention,
    S.ScaledDotProductAttention: lambda layer, path, params: ScaledDotProductAttention(layer, params, path),
}


def _unsupported(m: nn.Module, path: str, why: str) -> S.SpecError:
    return S.SpecError(f"from_torch: module '{path or '<root>'}' ({type(m).__name__}) {why}")


def _plain(m: nn.MultiheadAttention, name: str, path: str) -> S.MultiheadAttention:
    """A plain ``nn.MultiheadAttention`` as self-attention (no masks: those are forward
    arguments, which a module does not keep)."""
    if not m._qkv_same_embed_dim:
        raise _unsupported(
            m,
            path,
            f"has kdim={m.kdim}, vdim={m.vdim} other than embed_dim={m.embed_dim}: the spec is self-attention, whose "
            "keys and values are the input itself",
        )
    if m.bias_k is not None or m.add_zero_attn:
        raise _unsupported(m, path, "uses add_bias_kv or add_zero_attn, which the spec does not support")
    if m.dropout and m.training:
        raise _unsupported(
            m, path, f"applies dropout={m.dropout} in training mode, which cannot be reproduced: call .eval() first"
        )
    if (m.in_proj_bias is None) != (m.out_proj.bias is None):
        raise _unsupported(m, path, "has a bias on only one of its projections, which the spec does not support")
    return S.MultiheadAttention(name, m.embed_dim, m.num_heads, bias=m.in_proj_bias is not None)


def _self_attention_spec(m: SelfAttention, name: str, path: str) -> S.Layer:
    layer = _plain(m, name, path)
    return S.MultiheadAttention(
        name, layer.embed_dim, layer.num_heads, layer.bias, m.causal, m.key_padding_mask is not None
    )


# module type -> its spec, from (module, name, path): what torch_bridge's _leaf reads
FROM_MODULE: dict[type, Callable[[Any, str, str], S.Layer]] = {
    nn.MultiheadAttention: _plain,
    SelfAttention: _self_attention_spec,
    ScaledDotProductAttention: lambda m, name, path: dataclasses.replace(m.layer, name=name),
}


def state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every plain ``nn.MultiheadAttention``'s keys renamed to the
    spec's (:data:`RENAMES`; a :class:`SelfAttention` names them so itself)."""
    state = dict(module.state_dict())
    for prefix, sub in module.named_modules():
        if type(sub) is nn.MultiheadAttention:
            _rename(state, f"{prefix}." if prefix else "", RENAMES)
    return state


__all__ = ["FROM_MODULE", "MODULES", "RENAMES", "ScaledDotProductAttention", "SelfAttention", "state_dict"]
