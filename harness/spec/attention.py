"""The attention family: :class:`ScaledDotProductAttention` (the query is the input; key and
value are trainable parameters, the differentiable extra inputs) and :class:`MultiheadAttention`
(self-attention over ``(N, T, E)``, PyTorch's parameters). Both take a causal mask and a
key-padding buffer ``key_padding_mask`` (float, 1.0 = ignore that key, as PyTorch's True).

Softmax over no key at all is undefined (PyTorch gives NaN), so a padding mask that hides
every key a query may see is refused (:func:`padding_problem`), and :func:`padding_mask`
draws random masks that always leave one visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .base import Layer, ParamInfo, Shape, SpecError, _check_name


def _positive_int(value: Any, what: str, layer: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise SpecError(
            f"layer '{layer}': {what} must be a positive int{' or None' if optional else ''}, got {value!r}"
        )


def _flag(value: Any, what: str, layer: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise SpecError(f"layer '{layer}': {what} must be True or False, got {value!r}")


@dataclass(frozen=True)
class ScaledDotProductAttention(Layer):
    """softmax(q k^T * scale + mask) v, the query q = the input ``(N, ..., T, d)``.

    Parameters: ``key (N, ..., S, d)`` and ``value (N, ..., S, dv)``, trainable (they are the
    differentiable extra inputs), S = ``kv_len`` or T, dv = ``value_dim`` or d; with
    ``key_padding``, the buffer ``key_padding_mask (N, S)`` (1.0 = ignore that key, broadcast
    over the head axes). ``scale``: None is 1/sqrt(d). ``causal``: query t sees keys 0..t (the
    top-left alignment of PyTorch's ``is_causal``, also when T != S). Output ``(N, ..., T, dv)``.
    """

    kind: ClassVar[str] = "ScaledDotProductAttention"
    name: str
    causal: bool = False
    scale: float | None = None
    kv_len: int | None = None
    value_dim: int | None = None
    key_padding: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        _flag(self.causal, "causal", self.name)
        _flag(self.key_padding, "key_padding", self.name)
        _positive_int(self.kv_len, "kv_len", self.name, optional=True)
        _positive_int(self.value_dim, "value_dim", self.name, optional=True)
        s = self.scale
        if s is not None and (
            not isinstance(s, (int, float, np.floating)) or isinstance(s, bool) or not math.isfinite(s) or s <= 0
        ):
            raise SpecError(f"layer '{self.name}': scale must be a positive number or None (1/sqrt(d)), got {s!r}")

    def _infer(self, shape: Shape, path: str) -> Shape:
        if len(shape) < 3:
            raise SpecError(f"layer '{path}': expects the query (N, ..., T, d), got shape {shape} (rank {len(shape)})")
        return (*shape[:-1], self.value_dim or shape[-1])

    def sizes(self, input_shape: Shape) -> tuple[int, int, int, int]:
        """(T, S, d, dv) for a query of ``input_shape``."""
        t, d = input_shape[-2], input_shape[-1]
        return t, self.kv_len or t, d, self.value_dim or d

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        lead = tuple(input_shape[:-2])
        _, s, d, dv = self.sizes(input_shape)
        p = {"key": ParamInfo((*lead, s, d)), "value": ParamInfo((*lead, s, dv))}
        if self.key_padding:
            p["key_padding_mask"] = ParamInfo((input_shape[0], s), trainable=False)
        return p

    def value_problem(self, input_shape: Shape, value: Any, path: str) -> str | None:
        return padding_problem(self, path, value("key_padding_mask"), input_shape[-2]) if self.key_padding else None

    def softmax_scale(self, d: int) -> float:
        """The factor the scores q k^T are multiplied by."""
        return float(self.scale) if self.scale is not None else 1.0 / math.sqrt(d)


@dataclass(frozen=True)
class MultiheadAttention(Layer):
    """Self-attention as ``torch.nn.MultiheadAttention(embed_dim, num_heads, bias=bias,
    batch_first=True)`` computes ``attn(x, x, x)[0]``: ``(N, T, E)`` -> ``(N, T, E)``.

    Parameters (PyTorch's, ``out_proj.weight`` spelled ``out_proj_weight``): ``in_proj_weight
    (3E, E)`` (the query, key and value rows in that order), ``in_proj_bias (3E,)``,
    ``out_proj_weight (E, E)``, ``out_proj_bias (E,)`` (the biases only with ``bias``); with
    ``key_padding``, the buffer ``key_padding_mask (N, T)`` (1.0 = ignore that key). Heads of
    E / num_heads features, scores scaled by 1/sqrt(E / num_heads); ``causal``: query t sees
    keys 0..t. No dropout.
    """

    kind: ClassVar[str] = "MultiheadAttention"
    name: str
    embed_dim: int
    num_heads: int
    bias: bool = True
    causal: bool = False
    key_padding: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        _positive_int(self.embed_dim, "embed_dim", self.name)
        _positive_int(self.num_heads, "num_heads", self.name)
        for flag in ("bias", "causal", "key_padding"):
            _flag(getattr(self, flag), flag, self.name)
        if self.embed_dim % self.num_heads:
            raise SpecError(
                f"layer '{self.name}': embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads} "
                "(every head takes embed_dim / num_heads features)"
            )

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def _infer(self, shape: Shape, path: str) -> Shape:
        if len(shape) != 3 or shape[-1] != self.embed_dim:
            raise SpecError(
                f"layer '{path}': expects input (N, T, E) with E = embed_dim = {self.embed_dim}, got shape {shape}"
            )
        return shape

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        e = self.embed_dim
        p = {"in_proj_weight": ParamInfo((3 * e, e))}
        if self.bias:
            p["in_proj_bias"] = ParamInfo((3 * e,))
        p["out_proj_weight"] = ParamInfo((e, e))
        if self.bias:
            p["out_proj_bias"] = ParamInfo((e,))
        if self.key_padding:
            p["key_padding_mask"] = ParamInfo((input_shape[0], input_shape[1]), trainable=False)
        return p

    def value_problem(self, input_shape: Shape, value: Any, path: str) -> str | None:
        return padding_problem(self, path, value("key_padding_mask"), input_shape[1]) if self.key_padding else None


Attention = ScaledDotProductAttention | MultiheadAttention


def visible(layer: Attention, mask: np.ndarray | None, t: int, s: int) -> np.ndarray:
    """``(N or 1, T, S)`` bool: which keys each query sees (the padding mask's 0 entries,
    and with ``causal`` keys 0..t for query t)."""
    seen = np.ones((1, t, s), bool) if mask is None else (np.asarray(mask)[:, None, :] == 0)
    if layer.causal:
        seen = seen & np.tril(np.ones((t, s), bool))[None]
    return seen


def padding_problem(layer: Attention, path: str, mask: np.ndarray, t: int) -> str | None:
    """What is wrong with the values of a ``key_padding_mask`` (``(N, S)``, queries of length
    ``t``), or None: values other than 0 and 1, or a query that sees no key at all."""
    m = np.asarray(mask, dtype=np.float64)
    if not np.isin(m, (0.0, 1.0)).all():
        bad = m[~np.isin(m, (0.0, 1.0))]
        return (
            f"layer '{path}': key_padding_mask must hold 0 (attend) and 1 (ignore that key), found {bad.flat[0]!r}; "
            "a mask that is 1 where a key is kept must be flipped (1 - mask)"
        )
    seen = visible(layer, m, t, m.shape[1]).any(axis=2)
    if not seen.all():
        n, q = (int(i) for i in np.argwhere(~seen)[0])
        why = " and the causal mask" if layer.causal else ""
        return (
            f"layer '{path}': key_padding_mask{why} hide every key from query {q} of batch row {n}: softmax over no "
            "key is undefined (PyTorch gives NaN); leave at least one key visible to every query"
            + (" (key 0, with causal)" if layer.causal else "")
        )
    return None


def padding_mask(rng: np.random.Generator, shape: Shape, causal: bool, rate: float = 0.3) -> np.ndarray:
    """A random 0/1 key-padding mask ``(N, S)`` (1 = ignore, with probability ``rate``) that
    leaves every query a visible key: key 0 with ``causal`` (query 0 sees only key 0), else
    one random key in a row that hid them all."""
    m = (rng.random(shape) < rate).astype(np.float64)
    if causal:
        m[:, 0] = 0.0
    for n in np.flatnonzero(m.all(axis=1)):
        m[n, rng.integers(shape[1])] = 0.0
    return m


def example_shape(layer: Layer) -> Shape | None:
    """A small input for an attention layer (T != d, so the two cannot be confused), else None."""
    if isinstance(layer, MultiheadAttention):
        return (2, 5, layer.embed_dim)
    if isinstance(layer, ScaledDotProductAttention):
        return (2, 5, 4)
    return None


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (ScaledDotProductAttention, MultiheadAttention)
