"""Sequence and recurrent-weight layouts: the conversions behind ``Layout(sequence=...)``,
``Layout(gates=...)`` and ``Layout(linear="in_out")`` for recurrent layers.

Canonical (the spec's): sequences batch-first ``(N, T, D)``; recurrent weights ``weight_ih
(G*H, D)`` and ``weight_hh (G*H, H)`` whose ``G`` row blocks of ``H`` follow PyTorch's gate
order (LSTM ``ifgo``, GRU ``rzn``); biases ``(G*H,)``; states ``(N, H)``.

- ``sequence``: ``"NTD"`` (batch-first, the default), ``"TND"`` (time-first, as
  ``nn.LSTM(batch_first=False)``) or ``"NDT"`` (features before time, as numpy-ml's
  ``(n_ex, n_in, n_t)``). It applies to 3-D activations (a sequence layer's input and output).
  ``"NLC"``: channels-last 1-D conv data ``(N, L, C)`` (numpy-ml's Conv1D), the canonical
  ``(N, C, L)`` of a Conv1d with its last two axes swapped (the same permutation as ``"NDT"``).
- ``gates``: the order of the user's stacked gate blocks, a permutation of ``"ifgo"`` (CS231n:
  ``"ifog"``) for LSTMs or of ``"rzn"`` for GRUs; ``""`` is PyTorch's. A layer whose gates are
  not a permutation of it (an RNN, or a GRU under an LSTM order) keeps PyTorch's.
- ``linear="in_out"``: ``Wx (D, G*H)`` and ``Wh (H, G*H)`` (x @ Wx), as CS231n and numpy code.

Every conversion is a permutation (transpose, gather of whole blocks), so a round trip is exact.
"""

from __future__ import annotations

from itertools import permutations
from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec import _Recurrent

if TYPE_CHECKING:
    from .layouts import Layout

SEQUENCES = ("NTD", "TND", "NDT", "NLC")
GATE_ORDERS = ("",) + tuple("".join(p) for p in permutations("ifgo")) + tuple("".join(p) for p in permutations("rzn"))
_WEIGHTS = ("weight_ih", "weight_hh")
_BIASES = ("bias_ih", "bias_hh", "bias")


def check(sequence: Any, gates: Any) -> None:
    """Validate the two fields (called by ``Layout.__post_init__``)."""
    from .layouts import LayoutError

    if sequence not in SEQUENCES:
        raise LayoutError(
            f"layout: sequence must be 'NTD' (batch first), 'TND' (time first), 'NDT' (features before time) "
            f"or 'NLC' (a Conv1d's channels last), got {sequence!r}"
        )
    if gates not in GATE_ORDERS:
        raise LayoutError(
            f"layout: gates must be a permutation of 'ifgo' (an LSTM's i, f, g, o blocks; CS231n: 'ifog') or of "
            f"'rzn' (a GRU's), or '' for PyTorch's order, got {gates!r}"
        )


# --------------------------------------------------------------------------- activations

# canonical axes in the user's order; "NLC" swaps a Conv1d's canonical (N, C, L) to (N, L, C)
_TO_USER = {"NTD": (0, 1, 2), "TND": (1, 0, 2), "NDT": (0, 2, 1), "NLC": (0, 2, 1)}


def to_user(x: np.ndarray, sequence: str) -> np.ndarray:
    """A canonical 3-D sequence ``(N, T, D)`` -> the user's ``sequence`` order."""
    return x if x.ndim != 3 or sequence == "NTD" else x.transpose(_TO_USER[sequence])


def from_user(x: np.ndarray, sequence: str) -> np.ndarray:
    """The user's 3-D sequence -> canonical ``(N, T, D)``; the inverse of :func:`to_user`."""
    return x if x.ndim != 3 or sequence == "NTD" else x.transpose(np.argsort(_TO_USER[sequence]))


def user_shape(shape: tuple[int, ...], sequence: str) -> tuple[int, ...]:
    """A canonical 3-D shape in the user's ``sequence`` order."""
    if len(shape) != 3 or sequence == "NTD":
        return tuple(shape)
    return tuple(shape[a] for a in _TO_USER[sequence])


def canonical_shape(shape: tuple[int, ...], sequence: str) -> tuple[int, ...]:
    """A 3-D shape given in the user's ``sequence`` order -> canonical ``(N, T, D)``."""
    if len(shape) != 3 or sequence == "NTD":
        return tuple(shape)
    return tuple(shape[a] for a in np.argsort(_TO_USER[sequence]))


def indices_to_user(x: np.ndarray, sequence: str) -> np.ndarray:
    """Canonical integer indices ``(N, T)`` -> the user's order: ``(T, N)`` time-first
    (``"TND"``, as the tokens fed to ``nn.Embedding`` before a time-first ``nn.LSTM``); other
    ranks and orders as they are (``"NDT"`` keeps ``(N, T)``: its features axis is not there)."""
    return x.T if x.ndim == 2 and sequence == "TND" else x


def indices_from_user(x: np.ndarray, sequence: str) -> np.ndarray:
    """The user's integer indices -> canonical ``(N, T)``; the inverse of :func:`indices_to_user`
    (a transpose, its own inverse)."""
    return indices_to_user(x, sequence)


def indices_shape(shape: tuple[int, ...], sequence: str) -> tuple[int, ...]:
    """An index input's shape between the user's order and canonical (either way)."""
    return tuple(shape[::-1]) if len(shape) == 2 and sequence == "TND" else tuple(shape)


# --------------------------------------------------------------------------- detection


def fields(layer: _Recurrent) -> tuple[str, ...]:
    """The :class:`~.layouts.Layout` fields :func:`candidates` varies for ``layer``."""
    return ("linear",) + ("gates",) * (layer.num_gates > 1) + ("sequence",) * (not layer.step)


def candidates(layer: _Recurrent, params: dict[str, tuple[int, ...]] | None = None) -> list[Layout]:
    """Layouts worth trying for a recurrent layer: each gate order (PyTorch's first), weight
    orientation (only those that fit the user's ``weight_ih`` shape, when given) and, for a
    sequence, axis order."""
    from .layouts import Layout

    expected = (layer.num_gates * layer.hidden_size, layer.input_size)
    found = (params or {}).get("weight_ih")
    linears = [o for o, shape in (("out_in", expected), ("in_out", expected[::-1])) if found in (None, shape)]
    gates = [""] + [g for g in GATE_ORDERS if g and sorted(g) == sorted(layer.gates) and g != layer.gates]
    seqs = ("NTD",) if layer.step else SEQUENCES
    return [Layout(linear=o, gates=g, sequence=s) for s in seqs for o in linears or ["out_in"] for g in gates]


# --------------------------------------------------------------------------- parameters


def _order(layer: _Recurrent, layout: Layout) -> str:
    """The user's gate order for ``layer``: the declared one when it permutes the layer's gates."""
    gates = layout.gates
    return gates if gates and sorted(gates) == sorted(layer.gates) else layer.gates


def _blocks(layer: _Recurrent, layout: Layout, to_user: bool) -> np.ndarray | None:
    """Row indices that reorder the ``G*H`` axis (canonical -> user, or back); None if the same."""
    user, canon = _order(layer, layout), layer.gates
    if user == canon:
        return None
    h = layer.hidden_size
    src = [canon.index(g) for g in user] if to_user else [user.index(g) for g in canon]
    return np.concatenate([np.arange(k * h, (k + 1) * h) for k in src])


def _user_form(layer: _Recurrent, local: str, expected: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """The shape the parameter has in the user's layout (weights transposed under ``in_out``)."""
    if local in _WEIGHTS and layout.linear == "in_out":
        return tuple(expected[::-1])
    return tuple(expected)


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def param_from_user(
    layer: _Recurrent, local: str, value: np.ndarray, layout: Layout, expected: tuple[int, ...]
) -> np.ndarray:
    """A recurrent layer's parameter in the user's layout -> canonical ``expected``: weights
    transposed under ``in_out`` and their gate blocks reordered to PyTorch's; a bias's blocks
    reordered (unit axes allowed: ``(1, G*H)``, ``(G*H, 1)``); states as they are.
    :class:`~.layouts.LayoutError` with a hint when the shape does not fit."""
    form = _user_form(layer, local, expected, layout)
    v = np.asarray(value)
    if v.shape != form and v.size == int(np.prod(form)) and _squeezed(v.shape) == _squeezed(form):
        v = v.reshape(form)  # unit axes only: numpy-ml's (1, H) bias and the like
    if v.shape != form:
        from .layouts import LayoutError

        raise LayoutError(
            f"layer '{layer.name}': parameter '{local}' has shape {tuple(np.shape(value))} in the declared "
            f"{layout}; expected {form} there{_hint(layer, local, tuple(np.shape(value)), expected, layout)}"
        )
    if local in _WEIGHTS and layout.linear == "in_out":
        v = v.T
    idx = _blocks(layer, layout, to_user=False) if local in _WEIGHTS + _BIASES else None
    if idx is not None:
        v = v[idx]
    return np.ascontiguousarray(v)


def param_to_user(
    layer: _Recurrent, local: str, value: np.ndarray, layout: Layout, user_shape: tuple[int, ...]
) -> np.ndarray:
    """A canonical parameter -> the user's layout and ``user_shape``; the inverse of
    :func:`param_from_user`."""
    v = value
    idx = _blocks(layer, layout, to_user=True) if local in _WEIGHTS + _BIASES else None
    if idx is not None:
        v = v[idx]
    if local in _WEIGHTS and layout.linear == "in_out":
        v = v.T
    return np.ascontiguousarray(v.reshape(user_shape) if v.shape != tuple(user_shape) else v)


def _hint(layer: _Recurrent, local: str, found: tuple[int, ...], expected: tuple[int, ...], layout: Layout) -> str:
    """Why the shape may not fit: the other ``linear`` order, or a state of another batch size."""
    g, h = layer.num_gates, layer.hidden_size
    if local in _WEIGHTS and len(found) == 2 and found != _user_form(layer, local, expected, layout):
        other = "in_out" if layout.linear == "out_in" else "out_in"
        if found in (tuple(expected[::-1]), tuple(expected)):
            return f"; looks transposed ((in, {g}*H) against ({g}*H, in)): pass Layout(linear={other!r})"
    if local in layer.state_names() and len(found) == 2 and found[1] == h:
        return f"; a state has the batch's size N={expected[0]}: check the layer on an input of batch {found[0]}"
    return ""


__all__ = [
    "GATE_ORDERS",
    "SEQUENCES",
    "candidates",
    "canonical_shape",
    "check",
    "fields",
    "from_user",
    "indices_from_user",
    "indices_shape",
    "indices_to_user",
    "param_from_user",
    "param_to_user",
    "to_user",
    "user_shape",
]
