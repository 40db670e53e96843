"""Hypotheses about a wrong attention gradient (``ScaledDotProductAttention``,
``MultiheadAttention``): the softmax backward without its subtracted term, the scale left out
of the backward, a padding or causal mask applied in the forward but not in the backward, an
error confined to some heads, or to the keys a padding mask hides.

Each mistake is a closed form in numpy at the checked point (:class:`_Model`), which must
first reproduce the reference's gradients (else no claim is made); a line is printed only when
the mistaken value reproduces the user's tensor within its tolerance and differs from the
truth (:meth:`~.point.Point.fits`). Tensors are canonical: the query ``input (N, ..., T, d)``,
``key``, ``value``; or ``input (N, T, E)``, ``in_proj_weight (3E, E)`` (q, k, v rows), ...
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..compare import relative_with_floor
from ..spec import MultiheadAttention, ScaledDotProductAttention
from ..spec.attention import visible
from .point import Point

_SWAP = (-1, -2)


def _softmax(s: np.ndarray, seen: np.ndarray) -> np.ndarray:
    s = np.where(seen, s, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class _Model:
    """The attention at the checked point, its gradients computed by hand, optionally with
    one mistake: ``subtract=False`` (p * dp), ``scaled=False`` (no scale in the backward),
    ``padding=False`` / ``causal=False`` (that mask left out of the backward's softmax)."""

    def __init__(self, p: Point) -> None:
        assert isinstance(p.spec, (ScaledDotProductAttention, MultiheadAttention))
        self.p, self.spec = p, p.spec
        self.mask = p.params.get("key_padding_mask")
        if isinstance(self.spec, MultiheadAttention):
            self.scale = 1.0 / math.sqrt(self.spec.head_dim)
        else:
            assert isinstance(self.spec, ScaledDotProductAttention)
            self.scale = self.spec.softmax_scale(p.x.shape[-1])

    def _seen(self, q: np.ndarray, k: np.ndarray, padding: bool, causal: bool) -> np.ndarray:
        layer = replace(self.spec, causal=self.spec.causal and causal)
        seen = visible(layer, self.mask if padding else None, q.shape[-2], k.shape[-2])
        return seen.reshape(seen.shape[0], *([1] * (q.ndim - 3)), *seen.shape[1:])

    def _core(self, q, k, v, g, subtract=True, scaled=True, padding=True, causal=True):
        """(dq, dk, dv) of softmax(q k^T * scale) v with upstream ``g``, under the mistakes asked for."""
        probs = _softmax(q @ np.swapaxes(k, *_SWAP) * self.scale, self._seen(q, k, padding, causal))
        dv = np.swapaxes(probs, *_SWAP) @ g
        dp = g @ np.swapaxes(v, *_SWAP)
        ds = probs * (dp - (dp * probs).sum(axis=-1, keepdims=True)) if subtract else probs * dp
        ds = ds * self.scale if scaled else ds
        return ds @ k, np.swapaxes(ds, *_SWAP) @ q, dv

    def grads(self, **mistake: bool) -> dict[str, np.ndarray]:
        p = self.p
        if isinstance(self.spec, ScaledDotProductAttention):
            dq, dk, dv = self._core(p.x, p.params["key"], p.params["value"], p.g, **mistake)
            return {"input": dq, "key": dk, "value": dv}
        return self._mha(**mistake)

    def _mha(self, **mistake: bool) -> dict[str, np.ndarray]:
        spec, p, x = self.spec, self.p, self.p.x
        assert isinstance(spec, MultiheadAttention)
        (n, t, e), h = x.shape, spec.num_heads
        w, wo = p.params["in_proj_weight"], p.params["out_proj_weight"]
        b = p.params.get("in_proj_bias", np.zeros(3 * e))
        heads = lambda a: a.reshape(n, t, h, e // h).transpose(0, 2, 1, 3)  # noqa: E731
        merge = lambda a: a.transpose(0, 2, 1, 3).reshape(n, t, e)  # noqa: E731
        qkv = x @ w.T + b
        q, k, v = (heads(qkv[..., i * e : (i + 1) * e]) for i in range(3))
        o = merge(_softmax(q @ np.swapaxes(k, *_SWAP) * self.scale, self._seen(q, k, True, True)) @ v)
        dq, dk, dv = self._core(q, k, v, heads(p.g @ wo), **mistake)
        dqkv = np.concatenate([merge(dq), merge(dk), merge(dv)], axis=-1)
        out = {
            "input": dqkv @ w,
            "in_proj_weight": np.einsum("ntf,nte->fe", dqkv, x),
            "out_proj_weight": np.einsum("nte,ntf->ef", p.g, o),
        }
        if spec.bias:
            out["in_proj_bias"], out["out_proj_bias"] = dqkv.sum(axis=(0, 1)), p.g.sum(axis=(0, 1))
        return out

    def reproduces_reference(self) -> bool:
        true = self.grads()
        return all(relative_with_floor(true[k], self.p.ref[k]) <= 1e-8 for k in true if k in self.p.ref)


def _mistakes(spec: ScaledDotProductAttention | MultiheadAttention, scale: float) -> list[tuple[str, dict]]:
    shown = "1/sqrt(d) = " if isinstance(spec, MultiheadAttention) or spec.scale is None else ""
    out = [
        (
            "the softmax backward misses the subtracted term: p * dp where p * (dp - sum(p * dp)) is meant "
            "(the Jacobian's diagonal only)",
            {"subtract": False},
        ),
        (f"the scale {shown}{scale:.6g} is missing in the backward (the forward applies it)", {"scaled": False}),
    ]
    if spec.key_padding:
        out.append(
            (
                "the padding mask is applied in the forward but not in the backward: equals the gradient of the "
                "attention without it (a softmax recomputed without the mask?)",
                {"padding": False},
            )
        )
    if spec.causal:
        out.append(
            (
                "the causal mask is applied in the forward but not in the backward: equals the gradient of the "
                "attention without it (a softmax recomputed without the mask?)",
                {"causal": False},
            )
        )
    return out


def attention_gradients(p: Point, names: list[str]) -> list[str]:
    """Every confirmed attention mistake for the failing gradients ``names``."""
    if not isinstance(p.spec, (ScaledDotProductAttention, MultiheadAttention)):
        return []
    found: list[str] = []
    model = _Model(p)
    if model.reproduces_reference():  # the closed form is trusted only where it gives the truth
        for label, mistake in _mistakes(p.spec, model.scale):
            got = model.grads(**mistake)
            found += [f"{name}: {label}" for name in names if name in got and p.fits(name, got[name])]
    return found + _heads(p, names) + _hidden_keys(p, names)


def _head_of(p: Point, name: str) -> tuple[np.ndarray, int, str] | None:
    """(each element's head, the number of heads, what the heads are) for a tensor split by
    heads; None for one that is not (a multi-head attention's input, its output bias)."""
    spec, u = p.spec, p.user[name]
    if isinstance(spec, MultiheadAttention) and name in ("in_proj_weight", "in_proj_bias", "out_proj_weight"):
        e, hd = spec.embed_dim, spec.head_dim
        idx = np.indices(u.shape)[1 if name == "out_proj_weight" else 0]
        return (idx % e) // hd, spec.num_heads, "rows of q, k and v" if name != "out_proj_weight" else "columns"
    if isinstance(spec, ScaledDotProductAttention) and p.x.ndim >= 4 and u.ndim >= 4:
        return np.indices(u.shape)[1], u.shape[1], "axis 1"
    return None


def _heads(p: Point, names: list[str]) -> list[str]:
    """A gradient wrong in some heads only (a head's slice in the split or the merge): the
    reference's value with those heads' entries taken from the user reproduces it."""
    found = []
    for name in names:
        split = _head_of(p, name)
        if split is None:
            continue
        head, count, what = split
        u, r = p.user[name], p.ref[name]
        scale = float(np.linalg.norm(r))
        bad = [h for h in range(count) if float(np.linalg.norm((u - r)[head == h])) > p.tol[name] * scale]
        if not 0 < len(bad) < count:
            continue
        if p.fits(name, np.where(np.isin(head, bad), u, r)):
            which = ", ".join(map(str, bad))
            found.append(
                f"{name}: only in head{'s' * (len(bad) > 1)} {which} of {count} ({what}): the other heads match "
                "(a head's slice when splitting or merging heads)"
            )
    return found


def _hidden_keys(p: Point, names: list[str]) -> list[str]:
    """A key or value gradient wrong only at the keys the padding mask hides, where the true
    gradient is 0: the mask applied in the forward, not in the backward."""
    if not isinstance(p.spec, ScaledDotProductAttention) or "key_padding_mask" not in p.params:
        return []
    found = []
    hidden = p.params["key_padding_mask"] == 1  # (N, S)
    for name in ("key", "value"):
        if name not in names:
            continue
        u, r = p.user[name], p.ref[name]
        where = hidden.reshape(hidden.shape[0], *([1] * (u.ndim - 3)), hidden.shape[1], 1)
        if p.fits(name, np.where(where, u, r)):
            found.append(
                f"{name}: non-zero at keys the padding mask hides (the true gradient is 0 there), right elsewhere: "
                "the mask is applied in the forward but not in the backward"
            )
    return found


__all__ = ["attention_gradients"]
