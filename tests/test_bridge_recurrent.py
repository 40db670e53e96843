"""The recurrent bridge (issue 17): to_torch gives nn.RNN / LSTM / GRU (and cell) subclasses
computing the spec with its parameters under PyTorch's names; from_torch reads torch.nn's own
modules (one layer, one direction; batch_first either way: the spec is batch-first), and
refuses anything else with a SpecError naming the module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness import from_torch, to_torch
from harness import spec as S
from reference_models import build

LAYERS = [
    (S.RNN("rnn", 3, 4, nonlinearity="relu"), (2, 5, 3)),
    (S.RNN("rnn", 3, 4, bias="fused", initial_state=False), (2, 5, 3)),
    (S.LSTM("lstm", 3, 4, bias="fused", cell_state=True), (2, 5, 3)),
    (S.LSTM("lstm", 3, 4, bias="none"), (2, 5, 3)),
    (S.GRU("gru", 3, 4), (3, 4, 3)),
    (S.RNNCell("cell", 3, 4, bias="fused"), (2, 3)),
    (S.LSTMCell("cell", 3, 4), (2, 3)),
    (S.GRUCell("cell", 3, 4, bias="none"), (2, 3)),
]


@pytest.mark.parametrize("layer,shape", LAYERS, ids=[f"{c[0].kind}-{c[0].bias}" for c in LAYERS])
def test_to_torch_computes_the_spec_and_round_trips(layer: S.Layer, shape: tuple[int, ...]) -> None:
    spec = S.Sequential([layer, S.Tanh("act")])
    params = S.init_params(spec, shape, seed=2)
    m = to_torch(spec, params)
    assert isinstance(m.get_submodule(layer.name), (nn.RNNBase, nn.RNNCellBase))
    x = np.random.default_rng(0).normal(size=shape)
    y = m(torch.from_numpy(x))
    np.testing.assert_allclose(y.detach().numpy(), build("torch", spec).forward(params, x).output, rtol=0, atol=1e-14)
    back_spec, back = from_torch(m)
    assert back_spec == spec
    assert list(back) == list(params)  # canonical names, in the spec's order
    for k, v in params.items():
        np.testing.assert_array_equal(back[k], v)


def test_to_torch_names_are_pytorchs_and_a_fused_bias_is_bias_ih() -> None:
    spec = S.Sequential([S.LSTM("lstm", 3, 4, bias="fused", cell_state=True)])
    params = S.init_params(spec, (2, 5, 3), seed=0)
    m = to_torch(spec, params)
    state = m.state_dict()
    assert list(state) == ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
                           "lstm.h0", "lstm.c0"]
    np.testing.assert_array_equal(state["lstm.bias_ih_l0"].numpy(), params["lstm.bias"])
    assert not state["lstm.bias_hh_l0"].any() and not m.lstm.bias_hh_l0.requires_grad  # fused: stays 0
    assert m.lstm.h0.requires_grad and m.lstm.batch_first


def test_to_torch_gradients_equal_the_references() -> None:
    """Training the module trains the spec: its parameter gradients (h0 included) are the references'."""
    spec = S.Sequential([S.GRU("gru", 3, 4)])
    params = S.init_params(spec, (2, 5, 3), seed=1)
    rng = np.random.default_rng(3)
    x, g = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 4))
    m = to_torch(spec, params)
    (m(torch.from_numpy(x)) * torch.from_numpy(g)).sum().backward()
    ref = build("jax", spec).vjp(params, x, g).param_grads
    np.testing.assert_allclose(m.gru.weight_hh_l0.grad.numpy(), ref["gru.weight_hh"], rtol=1e-12)
    np.testing.assert_allclose(m.gru.h0.grad.numpy(), ref["gru.h0"], rtol=1e-12)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("cls,kind", [(nn.RNN, "RNN"), (nn.LSTM, "LSTM"), (nn.GRU, "GRU")])
def test_from_torch_reads_torch_modules(cls, kind: str, batch_first: bool) -> None:
    """A plain module called without a state starts from zeros: initial_state=False. The spec is
    batch-first whatever the module's batch_first: its output is the module's on (N, T, D) data."""
    torch.manual_seed(0)
    m = cls(3, 4, batch_first=batch_first).double()
    spec, params = from_torch(m)
    assert spec == S.Sequential([getattr(S, kind)("0", 3, 4, initial_state=False)])
    assert list(params) == ["0.weight_ih", "0.weight_hh", "0.bias_ih", "0.bias_hh"]
    x = np.random.default_rng(1).normal(size=(2, 5, 3))
    tx = torch.from_numpy(x if batch_first else x.transpose(1, 0, 2).copy())
    y = m(tx)[0].detach().numpy()
    y = y if batch_first else y.transpose(1, 0, 2)
    np.testing.assert_allclose(build("jax", spec).forward(params, x).output, y, rtol=1e-12, atol=1e-14)


def test_from_torch_reads_cells_and_a_traced_model() -> None:
    spec, params = from_torch(nn.RNNCell(3, 4, nonlinearity="relu", bias=False))
    assert spec == S.Sequential([S.RNNCell("0", 3, 4, nonlinearity="relu", bias="none")])
    assert list(params) == ["0.weight_ih", "0.weight_hh"]  # the state h is the step's input: no value

    class Captioner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.fc = nn.LSTM(3, 4, batch_first=True), nn.Linear(4, 2)

        def forward(self, x):
            out, _ = self.lstm(x)  # the final state is unused
            return self.fc(out)

    model = Captioner().double()
    spec, params = from_torch(model)
    assert spec == S.Sequential([S.LSTM("lstm", 3, 4, initial_state=False), S.Linear("fc", 4, 2)])
    x = np.random.default_rng(2).normal(size=(2, 5, 3))
    np.testing.assert_allclose(build("torch", spec).forward(params, x).output,
                               model(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-14)


class _LastState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru, self.fc = nn.GRU(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        _, h = self.gru(x)
        return self.fc(h)


@pytest.mark.filterwarnings("ignore:dropout option adds dropout")
@pytest.mark.parametrize("module,message", [
    (lambda: nn.LSTM(3, 4, num_layers=2), r"module '<root>' \(LSTM\) has num_layers=2; the spec has one layer"),
    (lambda: nn.GRU(3, 4, bidirectional=True), r"module '<root>' \(GRU\) is bidirectional"),
    (lambda: nn.LSTM(3, 4, proj_size=2), r"module '<root>' \(LSTM\) has proj_size=2"),
    (lambda: nn.RNN(3, 4, dropout=0.5), r"module '<root>' \(RNN\) has dropout=0.5"),
    (lambda: nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 4, num_layers=3)), r"module '1' \(LSTM\) has num_layers=3"),
    (_LastState, r"'gru' is followed by a use of its final state \(output \[1\]\); the spec's recurrent layers "
                   r"output the whole hidden sequence"),
])
def test_from_torch_refuses_what_the_spec_cannot_express(module, message: str) -> None:
    with pytest.raises(S.SpecError, match=message):
        from_torch(module())
