"""The recurrent family in the PyTorch reference: RNN, LSTM, GRU and their cells, written out
step by step in float64 (a loop over time), so that every parameter, ``h0`` and ``c0`` included,
is an ordinary leaf of autograd. Written independently of :mod:`.jax_recurrent`; merged into
``torch_ref._LEAVES`` through :data:`LEAVES` (``(layer, x, p) -> y``, ``p(local)`` a parameter).

Layouts are the spec's: batch-first ``x (N, T, D)``, weights ``(G*H, D)`` / ``(G*H, H)`` with
PyTorch's gate blocks (LSTM ``i, f, g, o``; GRU ``r, z, n``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from harness import spec as S

Tensor = torch.Tensor
Params = Callable[[str], Tensor]


def _biases(layer: S._Recurrent, p: Params) -> tuple[Tensor | None, Tensor | None]:
    """(bias added to the input part, bias added to the hidden part): a fused bias goes with
    the input part (it is the same sum), none gives (None, None)."""
    if layer.bias == "separate":
        return p("bias_ih"), p("bias_hh")
    return (p("bias"), None) if layer.bias == "fused" else (None, None)


def _parts(layer: S._Recurrent, p: Params, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """``x W_ih^T + b_ih`` and ``h W_hh^T + b_hh``, each ``(N, G*H)``."""
    b_ih, b_hh = _biases(layer, p)
    gi, gh = x @ p("weight_ih").T, h @ p("weight_hh").T
    return (gi if b_ih is None else gi + b_ih), (gh if b_hh is None else gh + b_hh)


def _rnn_step(layer: S._Recurrent, p: Params, x: Tensor, h: Tensor) -> Tensor:
    gi, gh = _parts(layer, p, x, h)
    pre = gi + gh
    return torch.relu(pre) if layer.nonlinearity == "relu" else torch.tanh(pre)


def _lstm_step(layer: S._Recurrent, p: Params, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    gi, gh = _parts(layer, p, x, h)
    i, f, g, o = (gi + gh).chunk(4, dim=1)  # PyTorch's block order
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_step(layer: S._Recurrent, p: Params, x: Tensor, h: Tensor) -> Tensor:
    gi, gh = _parts(layer, p, x, h)
    (ir, iz, i_n), (hr, hz, hn) = gi.chunk(3, dim=1), gh.chunk(3, dim=1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(i_n + r * hn)  # b_hn inside r * (...): PyTorch's formula
    return (1 - z) * n + z * h


def _state(layer: S._Recurrent, p: Params, x: Tensor, local: str, given: bool) -> Tensor:
    return p(local) if given else x.new_zeros((x.shape[0], layer.hidden_size))


def _sequence(layer: S._Recurrent, x: Tensor, p: Params) -> Tensor:
    """``(N, T, D)`` -> the hidden sequence ``(N, T, H)``."""
    h = _state(layer, p, x, "h0", layer.initial_state)
    c = _state(layer, p, x, "c0", getattr(layer, "cell_state", False))
    out = []
    for t in range(x.shape[1]):
        if isinstance(layer, S.LSTM):
            h, c = _lstm_step(layer, p, x[:, t], h, c)
        elif isinstance(layer, S.GRU):
            h = _gru_step(layer, p, x[:, t], h)
        else:
            h = _rnn_step(layer, p, x[:, t], h)
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

__all__ = ["LEAVES"]
