"""The recurrent family between specs and real PyTorch modules (used by :mod:`.torch_bridge`).

* spec -> module (:func:`module`): :class:`SpecRNN`, :class:`SpecLSTM`, :class:`SpecGRU` are
  ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (one layer, unidirectional, ``batch_first=True``) whose
  ``forward(x)`` returns the whole hidden sequence ``(N, T, H)`` and whose initial states are
  parameters ``h0`` / ``c0`` ``(N, H)`` (a state the spec does not have is zero). The cells
  :class:`SpecRNNCell`, :class:`SpecLSTMCell`, :class:`SpecGRUCell` hold the previous state as
  parameters ``h`` (and ``c``) and return ``next_h`` (the LSTM cell ``stack([h', c'], 1)``).
* module -> spec (:func:`spec_of`): ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with one layer,
  one direction, no projection and no dropout (``batch_first`` either way: **the spec is
  batch-first**, so feed it ``(N, T, D)`` whatever the module takes), called without an initial
  state (zeros: ``initial_state=False``); and ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell``,
  whose previous state is the spec's parameters ``h`` (and ``c``) ``(N, H)``: the step's input,
  which the module does not hold, so ``from_torch`` gives it no value (add one).

Parameter names: the modules keep PyTorch's (``weight_ih_l0``, ``bias_hh_l0`` ...); the spec's
canonical names drop the ``_l0`` (:data:`SEQUENCE_NAMES`). A fused spec bias ``b`` is loaded as
``bias_ih = b`` and ``bias_hh = 0`` (frozen); read back, ``bias = bias_ih + bias_hh``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import spec as S

# canonical local name -> a sequence module's parameter (a cell's are the canonical names)
SEQUENCE_NAMES = {
    "weight_ih": "weight_ih_l0",
    "weight_hh": "weight_hh_l0",
    "bias_ih": "bias_ih_l0",
    "bias_hh": "bias_hh_l0",
}
TORCH_TYPES = (nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell, nn.GRUCell)


def _states(m: nn.Module, layer: S._Recurrent, n: int) -> None:
    """Register the layer's state parameters ``(n, H)`` and freeze a fused bias's ``bias_hh``."""
    for local in layer.state_names():
        m.register_parameter(local, nn.Parameter(torch.zeros(n, layer.hidden_size)))
    if layer.bias == "fused":
        getattr(m, _torch_name(m, "bias_hh")).requires_grad_(False)  # always 0: the fused bias is bias_ih


def _torch_name(m: nn.Module, local: str) -> str:
    return SEQUENCE_NAMES.get(local, local) if isinstance(m, nn.RNNBase) else local


def _sequence(m: nn.RNNBase, layer: S._Recurrent, x: torch.Tensor, run: Callable[..., Any]) -> torch.Tensor:
    """``x (N, T, D) -> (N, T, H)`` through ``run`` (torch's own forward of ``m``), from its h0 / c0
    (zero where absent)."""
    zeros = x.new_zeros(1, x.shape[0], layer.hidden_size)
    h0 = m.get_parameter("h0")[None] if layer.initial_state else zeros
    if isinstance(layer, S.LSTM):
        c0 = m.get_parameter("c0")[None] if layer.cell_state else zeros
        return run(x, (h0, c0))[0]
    return run(x, h0)[0]


class SpecRNN(nn.RNN):
    layer: S.RNN

    def __init__(self, layer: S.RNN, n: int) -> None:
        super().__init__(layer.input_size, layer.hidden_size, nonlinearity=layer.nonlinearity,
                         bias=layer.bias != "none", batch_first=True)  # fmt: skip
        self.layer = layer
        _states(self, layer, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _sequence(self, self.layer, x, super().forward)


class SpecLSTM(nn.LSTM):
    layer: S.LSTM

    def __init__(self, layer: S.LSTM, n: int) -> None:
        super().__init__(layer.input_size, layer.hidden_size, bias=layer.bias != "none", batch_first=True)
        self.layer = layer
        _states(self, layer, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _sequence(self, self.layer, x, super().forward)


class SpecGRU(nn.GRU):
    layer: S.GRU

    def __init__(self, layer: S.GRU, n: int) -> None:
        super().__init__(layer.input_size, layer.hidden_size, bias=layer.bias != "none", batch_first=True)
        self.layer = layer
        _states(self, layer, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _sequence(self, self.layer, x, super().forward)


class SpecRNNCell(nn.RNNCell):
    layer: S.RNNCell

    def __init__(self, layer: S.RNNCell, n: int) -> None:
        super().__init__(layer.input_size, layer.hidden_size, layer.bias != "none", layer.nonlinearity)
        self.layer = layer
        _states(self, layer, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, self.get_parameter("h"))


class SpecLSTMCell(nn.LSTMCell):
    layer: S.LSTMCell

    def __init__(self, layer: S.LSTMCell, n: int) -> None:
        super().__init__(layer.input_size, layer.hidden_size, layer.bias != "none")
        self.layer = layer
        _states(self, layer, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        next_hc = super().forward(x, (self.get_parameter("h"), self.get_parameter("c")))
        return torch.stack(next_hc, dim=1)  # (N, 2, H): [next_h, next_c]


class SpecGRUCell(nn.GRUCell):
    layer: S.GRUCell

    def __init__(self, layer: S.GRUCell, n: int) -> None:
        super().__init__(layer.input_size, layer.hidden_size, layer.bias != "none")
        self.layer = layer
        _states(self, layer, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, self.get_parameter("h"))


_MODULES: dict[type, Any] = {
    S.RNN: SpecRNN,
    S.LSTM: SpecLSTM,
    S.GRU: SpecGRU,
    S.RNNCell: SpecRNNCell,
    S.LSTMCell: SpecLSTMCell,
    S.GRUCell: SpecGRUCell,
}
SPEC_MODULES = tuple(_MODULES.values())


def module(layer: S._Recurrent, path: str, params: Mapping[str, Any]) -> nn.Module:
    """The module computing ``layer`` (its states sized by the batch of ``params``' h0 / h; 1 if none)."""
    states = [params[f"{path}.{k}"] for k in layer.state_names() if f"{path}.{k}" in params]
    return _MODULES[type(layer)](layer, int(np.shape(states[0])[0]) if states else 1)


def torch_values(root: nn.Module, params: Mapping[str, Any]) -> dict[str, Any]:
    """``{state_dict key: value}`` for the recurrent modules in ``root`` whose keys are not the
    canonical names (``lstm.weight_ih_l0`` <- ``lstm.weight_ih``; a fused bias as bias_ih, bias_hh 0)."""
    out: dict[str, Any] = {}
    for mpath, m in root.named_modules():
        if not isinstance(m, SPEC_MODULES):
            continue
        key = f"{mpath}." if mpath else ""
        for local in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if key + local in params:
                out[key + _torch_name(m, local)] = params[key + local]
        if m.layer.bias == "fused" and key + "bias" in params:
            out[key + _torch_name(m, "bias_ih")] = params[key + "bias"]
            out[key + _torch_name(m, "bias_hh")] = np.zeros(np.shape(params[key + "bias"]))
    return out


def canonical_values(root: nn.Module, state: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    """``state`` (state_dict keys, each under ``prefix``) with the recurrent modules' keys renamed
    to the canonical ones (``weight_ih_l0`` -> ``weight_ih``; ``bias = bias_ih + bias_hh`` in
    bias_ih's place for a fused bias), in the same order; other keys as they are."""
    rename: dict[str, str] = {}
    fused: dict[str, str] = {}  # bias_ih's key -> bias_hh's key, for the fused biases
    first: dict[
        str, list[str]
    ] = {}  # weight_ih's key -> the module's state keys, which go before it (the spec's order)
    for mpath, m in root.named_modules():
        if not isinstance(m, TORCH_TYPES):
            continue
        base = S.join_path(prefix, mpath)
        key = f"{base}." if base else ""
        rename.update({key + _torch_name(m, local): key + local for local in SEQUENCE_NAMES})
        if isinstance(m, SPEC_MODULES):
            first[key + _torch_name(m, "weight_ih")] = [key + local for local in m.layer.state_names()]
        if isinstance(m, SPEC_MODULES) and m.layer.bias == "fused":
            rename[key + _torch_name(m, "bias_ih")] = key + "bias"
            fused[key + _torch_name(m, "bias_ih")] = key + _torch_name(m, "bias_hh")
    moved = {k for keys in first.values() for k in keys}
    order = [k for key in state if key not in moved for k in (*first.get(key, ()), key)]
    out = {rename.get(k, k): state[k] + state[fused[k]] if k in fused else state[k] for k in order}
    for k in fused.values():
        out.pop(rename[k], None)
    return out


def _refuse(m: nn.Module, path: str, why: str) -> S.SpecError:
    return S.SpecError(f"from_torch: module '{path or '<root>'}' ({type(m).__name__}) {why}")


def spec_of(m: nn.Module, name: str, path: str) -> S.Layer:
    """The spec of a recurrent module (see the module docstring for what converts)."""
    if isinstance(m, SPEC_MODULES):
        layer = m.layer
        return layer if layer.name == name else S.from_dict({**layer.to_dict(), "name": name})  # type: ignore[return-value]
    bias = "separate" if m.bias else "none"
    kw = {"nonlinearity": m.nonlinearity} if isinstance(m, (nn.RNN, nn.RNNCell)) else {}
    if isinstance(m, (nn.RNNCell, nn.LSTMCell, nn.GRUCell)):
        cell = {nn.RNNCell: S.RNNCell, nn.LSTMCell: S.LSTMCell, nn.GRUCell: S.GRUCell}[type(m)]
        return cell(name, m.input_size, m.hidden_size, bias=bias, **kw)
    if m.num_layers != 1:
        raise _refuse(m, path, f"has num_layers={m.num_layers}; the spec has one layer: stack one spec layer per layer")
    if m.bidirectional:
        raise _refuse(m, path, "is bidirectional; the spec runs one direction")
    if getattr(m, "proj_size", 0):
        raise _refuse(m, path, f"has proj_size={m.proj_size}; the spec's LSTM has no projection")
    if m.dropout:
        raise _refuse(m, path, f"has dropout={m.dropout}; the spec's recurrent layers have none")
    seq = {nn.RNN: S.RNN, nn.LSTM: S.LSTM, nn.GRU: S.GRU}[type(m)]
    return seq(name, m.input_size, m.hidden_size, bias=bias, initial_state=False, **kw)


def output_item(n: Any, layers: Mapping[Any, S.Layer]) -> str | None:
    """A traced ``lstm(x)[i]`` (``out, _ = self.lstm(x)``): ``"alias"`` for item 0, the hidden
    sequence (the spec's output); ``"unused"`` for the final state when nothing reads it; None
    when ``n`` is not such an item. Reading the final state is a :class:`SpecError`."""
    if n.op != "call_function" or n.target is not operator.getitem or n.args[0] not in layers:
        return None
    layer = layers[n.args[0]]
    if not isinstance(layer, S._Recurrent) or layer.step:
        return None
    if n.args[1] == 0:
        return "alias"
    if n.users:
        raise S.SpecError(
            f"from_torch: '{n.args[0].target}' is followed by a use of its final state (output [{n.args[1]}]); "
            "the spec's recurrent layers output the whole hidden sequence (N, T, H) only"
        )
    return "unused"


__all__ = [
    "SEQUENCE_NAMES",
    "SpecGRU",
    "SpecGRUCell",
    "SpecLSTM",
    "SpecLSTMCell",
    "SpecRNN",
    "SpecRNNCell",
    "canonical_values",
    "module",
    "output_item",
    "spec_of",
    "torch_values",
]
