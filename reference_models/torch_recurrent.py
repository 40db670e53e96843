"""The recurrent family in the PyTorch reference: RNN, LSTM, GRU and their cells, written out
step by step in float64 (a loop over time), so that every parameter, ``h0`` and ``c0`` included,
is an ordinary leaf of autograd. Written independently of :mod:`.jax_recurrent`; merged into
``torch_ref._LEAVES`` through :data:`LEAVES` (``(layer, x, p) -> y``, ``p(local)`` a parameter).

Layouts are the spec's: batch-first ``x (N, T, D)``, weights ``(G*H, D)`` / ``(G*H, H)`` with
PyTorch's gate blocks (LSTM ``i, f, g, o``; GRU ``r, z, n``).

:func:`variant_vjp` runs the same layer with one named mistake built in (the recurrent path
cut, a tanh derivative written with its input): the diagnosis compares a user's gradients
with it (:mod:`harness.hypotheses.recurrent`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from harness import spec as S

Tensor = torch.Tensor
Params = Callable[[str], Tensor]


@dataclass(frozen=True)
class Variant:
    """A mistake built into the reference. ``cut``: the states (``"h"``, ``"c"``) that enter the
    next step detached (no gradient carried between steps); ``tanh_of_input``: every tanh's
    derivative taken as ``1 - a**2`` of its input ``a`` (value unchanged); ``gates``: the gate
    gradients restacked, block ``j`` of each step's gate gradient taken from block ``gates[j]``
    (a backward that stacks them in another order than the forward slices them)."""

    cut: frozenset[str] = frozenset()
    tanh_of_input: bool = False
    gates: tuple[int, ...] = ()
    record: list[Tensor] = field(default_factory=list, compare=False)  # each step's hidden-side affine output


_PLAIN = Variant()


def _tanh(v: Variant, a: Tensor) -> Tensor:
    if not v.tanh_of_input:
        return torch.tanh(a)
    c = a.detach()  # value tanh(a); gradient (1 - a**2), a constant factor
    return torch.tanh(c) + (a - c) * (1 - c**2)


def _restacked(a: Tensor, perm: tuple[int, ...]) -> Tensor:
    """``a`` unchanged, its gradient's gate blocks restacked: block ``j`` from block ``perm[j]``."""
    h = a.shape[1] // len(perm)
    rows = np.concatenate([np.arange(k * h, (k + 1) * h) for k in perm])
    c = a.detach()
    return c + (a - c)[:, torch.from_numpy(np.argsort(rows))]  # value a; d/da routed through the gather


def _biases(layer: S._Recurrent, p: Params) -> tuple[Tensor | None, Tensor | None]:
    """(bias added to the input part, bias added to the hidden part): a fused bias goes with
    the input part (it is the same sum), none gives (None, None)."""
    if layer.bias == "separate":
        return p("bias_ih"), p("bias_hh")
    return (p("bias"), None) if layer.bias == "fused" else (None, None)


def _parts(layer: S._Recurrent, p: Params, x: Tensor, h: Tensor, v: Variant) -> tuple[Tensor, Tensor]:
    """``x W_ih^T + b_ih`` and ``h W_hh^T + b_hh``, each ``(N, G*H)``."""
    b_ih, b_hh = _biases(layer, p)
    gi, gh = x @ p("weight_ih").T, h @ p("weight_hh").T
    gi, gh = (gi if b_ih is None else gi + b_ih), (gh if b_hh is None else gh + b_hh)
    if v.gates:
        gi, gh = _restacked(gi, v.gates), _restacked(gh, v.gates)
    if v is not _PLAIN and gh.requires_grad:
        gh.retain_grad()
        v.record.append(gh)
    return gi, gh


def _rnn_step(layer: S._Recurrent, p: Params, x: Tensor, h: Tensor, v: Variant = _PLAIN) -> Tensor:
    gi, gh = _parts(layer, p, x, h, v)
    pre = gi + gh
    return torch.relu(pre) if layer.nonlinearity == "relu" else _tanh(v, pre)


def _lstm_step(
    layer: S._Recurrent, p: Params, x: Tensor, h: Tensor, c: Tensor, v: Variant = _PLAIN
) -> tuple[Tensor, Tensor]:
    gi, gh = _parts(layer, p, x, h, v)
    i, f, g, o = (gi + gh).chunk(4, dim=1)  # PyTorch's block order
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * _tanh(v, g)
    return torch.sigmoid(o) * _tanh(v, c), c


def _gru_step(layer: S._Recurrent, p: Params, x: Tensor, h: Tensor, v: Variant = _PLAIN) -> Tensor:
    gi, gh = _parts(layer, p, x, h, v)
    (ir, iz, i_n), (hr, hz, hn) = gi.chunk(3, dim=1), gh.chunk(3, dim=1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = _tanh(v, i_n + r * hn)  # b_hn inside r * (...): PyTorch's formula
    return (1 - z) * n + z * h


def _state(layer: S._Recurrent, p: Params, x: Tensor, local: str, given: bool) -> Tensor:
    return p(local) if given else x.new_zeros((x.shape[0], layer.hidden_size))


def _sequence(layer: S._Recurrent, x: Tensor, p: Params, v: Variant = _PLAIN) -> Tensor:
    """``(N, T, D)`` -> the hidden sequence ``(N, T, H)``."""
    h = _state(layer, p, x, "h0", layer.initial_state)
    c = _state(layer, p, x, "c0", getattr(layer, "cell_state", False))
    out = []
    for t in range(x.shape[1]):
        if t and "h" in v.cut:
            h = h.detach()
        if t and "c" in v.cut:
            c = c.detach()
        if isinstance(layer, S.LSTM):
            h, c = _lstm_step(layer, p, x[:, t], h, c, v)
        elif isinstance(layer, S.GRU):
            h = _gru_step(layer, p, x[:, t], h, v)
        else:
            h = _rnn_step(layer, p, x[:, t], h, v)
        out.append(h)
    return torch.stack(out, dim=1)


def _lstm_cell(layer: S.LSTMCell, x: Tensor, p: Params) -> Tensor:
    return torch.stack(_lstm_step(layer, p, x, p("h"), p("c")), dim=1)  # (N, 2, H): [next_h, next_c]


LEAVES: dict[type, Callable[..., Any]] = {
    S.RNN: _sequence,
    S.LSTM: _sequence,
    S.GRU: _sequence,
    S.RNNCell: lambda L, x, p: _rnn_step(L, p, x, p("h")),
    S.LSTMCell: _lstm_cell,
    S.GRUCell: lambda L, x, p: _gru_step(L, p, x, p("h")),
}


def variant_vjp(
    layer: S._Recurrent, params: Mapping[str, np.ndarray], x: np.ndarray, g: np.ndarray, variant: Variant
) -> dict[str, np.ndarray]:
    """A sequence layer's output and VJP of ``g`` with ``variant``'s mistake built in: ``output``,
    ``input`` and every trainable parameter by local name, and ``dgh`` ``(N, T, G*H)``: the
    gradient of each step's hidden-side affine ``h_{t-1} W_hh^T + b_hh``."""
    v = Variant(variant.cut, variant.tanh_of_input, variant.gates)  # a fresh record
    tp = {k: torch.tensor(np.asarray(a, np.float64), requires_grad=True) for k, a in params.items()}
    tx = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    y = _sequence(layer, tx, tp.__getitem__, v)
    (y * torch.from_numpy(np.asarray(g, np.float64))).sum().backward()
    zero = lambda t: np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy().copy()  # noqa: E731
    out = {"output": y.detach().numpy().copy(), "input": zero(tx), **{k: zero(t) for k, t in tp.items()}}
    out["dgh"] = np.stack([zero(gh) for gh in v.record], axis=1) if v.record else np.zeros(0)
    return out


__all__ = ["LEAVES", "Variant", "variant_vjp"]
