"""The recurrent family: :class:`RNN` (tanh or relu), :class:`LSTM` and :class:`GRU` over whole
sequences, and their one-step forms :class:`RNNCell`, :class:`LSTMCell` and :class:`GRUCell`.

Sequences are batch-first: input ``(N, T, D)``, output the whole hidden sequence ``(N, T, H)``.
Parameters (local names: PyTorch's without the ``_l0`` suffix), in this order: the initial states
``h0`` / ``c0`` ``(N, H)``, trainable (they are the differentiable extra inputs: CS231n's ``dh0``),
first, as in the calling order of CS231n's ``rnn_forward(x, h0, Wx, Wh, b)`` and PyTorch's
``lstm(x, (h0, c0))``; ``weight_ih (G*H, D)``, ``weight_hh (G*H, H)``; ``bias_ih`` and
``bias_hh (G*H,)`` (``bias="separate"``, PyTorch) or one ``bias (G*H,)`` (``"fused"``, CS231n's
single ``b``) or none.
G stacked gate blocks, in PyTorch's order: RNN 1; LSTM 4, ``i, f, g, o``; GRU 3, ``r, z, n`` with
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` (so a GRU's two biases cannot be fused).

Step forms take ``x (N, D)`` and the previous state as parameters ``h (N, H)`` (and ``c`` for the
LSTM); they output ``next_h (N, H)``, the LSTM cell ``(N, 2, H)`` = ``stack([next_h, next_c], 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .base import Layer, ParamInfo, Shape, SpecError, _check_name, _expect_rank

BIAS_FORMS = ("separate", "fused", "none")
# the parameters that are states, not weights: small random values in init_params
STATE_NAMES = ("h0", "c0", "h", "c")


def _positive(layer: str, attr: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise SpecError(f"layer '{layer}': {attr} must be a positive int, got {value!r}")


def _flag(layer: str, attr: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise SpecError(f"layer '{layer}': {attr} must be True or False, got {value!r}")


class _Recurrent(Layer):
    """What every recurrent layer shares: sizes, the bias form, the stacked gate blocks.
    ``bias`` also takes PyTorch's ``True`` (= ``"separate"``) and ``False`` (= ``"none"``).
    (A plain class: the fields are each subclass's, in its own order; annotated here so code
    holding any recurrent layer can read them.)"""

    name: str
    input_size: int
    hidden_size: int
    bias: str
    nonlinearity: str  # RNN, RNNCell
    initial_state: bool  # the sequence layers
    cell_state: bool  # LSTM

    gates: ClassVar[str] = ""  # the gate blocks' letters in stacking order; their count is G
    step: ClassVar[bool] = False  # a one-step cell (x (N, D)) rather than a sequence (N, T, D)
    fusable: ClassVar[bool] = True  # GRU: b_hn sits inside r * (...), so it cannot fold into b_in

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        _positive(self.name, "input_size", self.input_size)
        _positive(self.name, "hidden_size", self.hidden_size)
        bias: Any = self.bias
        if isinstance(bias, (bool, np.bool_)):  # PyTorch's spelling
            bias = "separate" if bias else "none"
            object.__setattr__(self, "bias", bias)
        forms = BIAS_FORMS if self.fusable else ("separate", "none")
        if bias not in forms:
            why = " (a GRU's b_hn is multiplied by r, so it cannot be fused)" if bias == "fused" else ""
            raise SpecError(f"layer '{self.name}': bias must be one of {forms}, got {bias!r}{why}")
        for attr in ("initial_state", "cell_state"):
            if hasattr(self, attr):
                _flag(self.name, attr, getattr(self, attr))
                object.__setattr__(self, attr, bool(getattr(self, attr)))  # a numpy bool as JSON's
        if getattr(self, "nonlinearity", "tanh") not in ("tanh", "relu"):
            raise SpecError(f"layer '{self.name}': nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")

    @property
    def num_gates(self) -> int:
        """G: the number of stacked ``H``-row blocks in the weights."""
        return max(1, len(self.gates))

    def _infer(self, shape: Shape, path: str) -> Shape:
        layout = "(N, D)" if self.step else "(N, T, D) (batch first)"
        _expect_rank(shape, (2,) if self.step else (3,), layout, path)
        if shape[-1] != self.input_size:
            raise SpecError(
                f"layer '{path}': input_size={self.input_size} but the input has {shape[-1]} features "
                f"(input shape {shape}; expected {layout})"
            )
        return (*shape[:-1], self.hidden_size)

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        gh, n, h = self.num_gates * self.hidden_size, int(input_shape[0]), self.hidden_size
        # states first: the calling order of CS231n (x, prev_h, Wx, Wh, b) and of PyTorch (x, hx)
        p = {local: ParamInfo((n, h)) for local in self.state_names()}
        p.update(weight_ih=ParamInfo((gh, self.input_size)), weight_hh=ParamInfo((gh, h)))
        bias = self.bias
        if bias == "separate":
            p.update(bias_ih=ParamInfo((gh,)), bias_hh=ParamInfo((gh,)))
        elif bias == "fused":
            p["bias"] = ParamInfo((gh,))
        return p

    def state_names(self) -> tuple[str, ...]:
        """The local names of the state parameters (``h0``, ``c0``; a cell's ``h``, ``c``)."""
        return ()


@dataclass(frozen=True)
class _Sized(_Recurrent):
    name: str
    input_size: int
    hidden_size: int


@dataclass(frozen=True)
class RNN(_Sized):
    """Elman RNN over ``(N, T, D)`` -> ``(N, T, H)``:
    ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, act ``tanh`` or ``relu``.
    ``initial_state=False``: h0 is zero (no parameter)."""

    kind: ClassVar[str] = "RNN"
    nonlinearity: str = "tanh"
    bias: str = "separate"
    initial_state: bool = True

    def state_names(self) -> tuple[str, ...]:
        return ("h0",) if self.initial_state else ()


@dataclass(frozen=True)
class LSTM(_Sized):
    """LSTM over ``(N, T, D)`` -> the hidden sequence ``(N, T, H)``; gate blocks ``i, f, g, o``
    (PyTorch's): ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)`` with i, f, o sigmoids and g
    a tanh. ``initial_state``: h0 a parameter (else zero); ``cell_state``: c0 a parameter (else
    zero, as CS231n's ``lstm_forward``)."""

    kind: ClassVar[str] = "LSTM"
    gates: ClassVar[str] = "ifgo"
    bias: str = "separate"
    initial_state: bool = True
    cell_state: bool = False

    def state_names(self) -> tuple[str, ...]:
        return ("h0",) * self.initial_state + ("c0",) * self.cell_state


@dataclass(frozen=True)
class GRU(_Sized):
    """GRU over ``(N, T, D)`` -> ``(N, T, H)``; gate blocks ``r, z, n`` (PyTorch's):
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``.
    ``bias``: ``"separate"`` or ``"none"``."""

    kind: ClassVar[str] = "GRU"
    gates: ClassVar[str] = "rzn"
    fusable: ClassVar[bool] = False
    bias: str = "separate"
    initial_state: bool = True

    def state_names(self) -> tuple[str, ...]:
        return ("h0",) if self.initial_state else ()


@dataclass(frozen=True)
class RNNCell(_Sized):
    """One RNN step: ``x (N, D)`` and the parameter ``h (N, H)`` (the previous state) ->
    ``next_h (N, H)`` (CS231n's ``rnn_step_forward``)."""

    kind: ClassVar[str] = "RNNCell"
    step: ClassVar[bool] = True
    nonlinearity: str = "tanh"
    bias: str = "separate"

    def state_names(self) -> tuple[str, ...]:
        return ("h",)


@dataclass(frozen=True)
class LSTMCell(_Sized):
    """One LSTM step: ``x (N, D)`` and parameters ``h``, ``c (N, H)`` -> ``(N, 2, H)``, the
    stacked ``[next_h, next_c]`` (an adapter stacks a user's ``(next_h, next_c)`` tuple)."""

    kind: ClassVar[str] = "LSTMCell"
    gates: ClassVar[str] = "ifgo"
    step: ClassVar[bool] = True
    bias: str = "separate"

    def _infer(self, shape: Shape, path: str) -> Shape:
        n, h = super()._infer(shape, path)
        return (n, 2, h)

    def state_names(self) -> tuple[str, ...]:
        return ("h", "c")


@dataclass(frozen=True)
class GRUCell(_Sized):
    """One GRU step: ``x (N, D)`` and the parameter ``h (N, H)`` -> ``next_h (N, H)``."""

    kind: ClassVar[str] = "GRUCell"
    gates: ClassVar[str] = "rzn"
    step: ClassVar[bool] = True
    fusable: ClassVar[bool] = False
    bias: str = "separate"

    def state_names(self) -> tuple[str, ...]:
        return ("h",)


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell)
