"""The recurrent references (issue 17): torch and jax agree to 1e-12 in float64 (outputs, input
gradients, every parameter gradient, h0 / c0 included) over sizes, bias forms and seeds, and
both agree with torch.nn's own RNN / LSTM / GRU and cell modules run directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import seed_list
from harness import spec as S
from reference_models import build
from test_agreement import assert_agree, run_both

CASES = [
    (S.RNN("rnn", 3, 4), (2, 5, 3)),
    (S.RNN("rnn", 2, 3, nonlinearity="relu", bias="fused", initial_state=False), (3, 4, 2)),
    (S.RNN("rnn", 4, 2, bias="none"), (1, 1, 4)),
    (S.LSTM("lstm", 3, 4), (2, 5, 3)),
    (S.LSTM("lstm", 2, 3, bias="fused", cell_state=True), (3, 6, 2)),
    (S.LSTM("lstm", 3, 2, bias="none", initial_state=False, cell_state=True), (2, 3, 3)),
    (S.GRU("gru", 3, 4), (2, 5, 3)),
    (S.GRU("gru", 2, 5, bias="none", initial_state=False), (4, 3, 2)),
    (S.RNNCell("cell", 3, 4), (2, 3)),
    (S.RNNCell("cell", 3, 4, nonlinearity="relu", bias="fused"), (2, 3)),
    (S.LSTMCell("cell", 3, 4), (2, 3)),
    (S.LSTMCell("cell", 2, 3, bias="fused"), (5, 2)),
    (S.GRUCell("cell", 3, 4), (2, 3)),
    (S.GRUCell("cell", 3, 2, bias="none"), (3, 3)),
]


@pytest.mark.parametrize("seed", seed_list(6, quick=1))
@pytest.mark.parametrize("layer,shape", CASES, ids=[f"{c[0].kind}-{i}" for i, c in enumerate(CASES)])
def test_torch_and_jax_agree(layer: S.Layer, shape: tuple[int, ...], seed: int) -> None:
    spec = S.Sequential([layer])
    t, j = run_both(spec, shape, seed)
    assert_agree(t, j, spec, shape)
    assert set(t.param_grads) == set(S.named_params(spec, shape))  # h0 / c0 / h / c are differentiated too


def test_torch_and_jax_agree_in_a_network_jitted() -> None:
    """A captioning-style stack: LSTM -> temporal affine (Linear over (N, T, H)) -> GRU; jax jitted."""
    spec = S.Sequential([S.LSTM("lstm", 3, 4, cell_state=True), S.Linear("fc", 4, 3), S.Tanh("act"),
                         S.GRU("gru", 3, 2)])
    for seed in (0, 1):
        t, j = run_both(spec, (2, 6, 3), seed, jit=True)
        assert_agree(t, j, spec, (2, 6, 3))


# ------------------------------------------------------------------ against torch.nn run directly


def _module(layer: S.Layer, p: dict[str, np.ndarray]) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """torch.nn's own module for ``layer`` with the spec's parameters loaded (fused bias as
    bias_ih = b, bias_hh = 0), and the state tensors (leaves) it is called with."""
    cls = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNNCell": torch.nn.RNNCell,
           "LSTMCell": torch.nn.LSTMCell, "GRUCell": torch.nn.GRUCell}[layer.kind]
    kw = {"nonlinearity": layer.nonlinearity} if hasattr(layer, "nonlinearity") else {}
    if not layer.step:
        kw["batch_first"] = True
    m = cls(layer.input_size, layer.hidden_size, bias=layer.bias != "none", **kw).double()
    suffix = "" if layer.step else "_l0"
    values = {"weight_ih": p["weight_ih"], "weight_hh": p["weight_hh"]}
    if layer.bias == "separate":
        values.update(bias_ih=p["bias_ih"], bias_hh=p["bias_hh"])
    elif layer.bias == "fused":
        values.update(bias_ih=p["bias"], bias_hh=np.zeros_like(p["bias"]))
    with torch.no_grad():
        for k, v in values.items():
            getattr(m, k + suffix).copy_(torch.from_numpy(v))
    states = {k: torch.tensor(p[k], requires_grad=True) for k in layer.state_names()}
    return m, states


def _run_module(layer: S.Layer, m: torch.nn.Module, x: torch.Tensor, states: dict[str, torch.Tensor]) -> torch.Tensor:
    n, h = x.shape[0], layer.hidden_size
    zeros = torch.zeros(1, n, h, dtype=torch.float64)
    if layer.kind == "LSTMCell":
        return torch.stack(m(x, (states["h"], states["c"])), dim=1)
    if layer.step:
        return m(x, states["h"])
    h0 = states["h0"][None] if "h0" in states else zeros
    if layer.kind == "LSTM":
        return m(x, (h0, states["c0"][None] if "c0" in states else zeros))[0]
    return m(x, h0)[0]


@pytest.mark.parametrize("layer,shape", CASES, ids=[f"{c[0].kind}-{i}" for i, c in enumerate(CASES)])
def test_both_references_equal_torch_nn_modules(layer: S.Layer, shape: tuple[int, ...]) -> None:
    spec = S.Sequential([layer])
    full = S.init_params(spec, shape, seed=3)
    p = {k.split(".", 1)[1]: v for k, v in full.items()}
    rng = np.random.default_rng(7)
    x, g = rng.normal(size=shape), rng.normal(size=spec.output_shape(shape))
    m, states = _module(layer, p)
    tx = torch.tensor(x, requires_grad=True)
    y = _run_module(layer, m, tx, states)
    (y * torch.from_numpy(g)).sum().backward()
    suffix = "" if layer.step else "_l0"
    truth = {"output": y.detach().numpy(), "input": tx.grad.numpy()}
    truth.update({k: v.grad.numpy() for k, v in states.items()})
    for k in ("weight_ih", "weight_hh"):
        truth[k] = getattr(m, k + suffix).grad.numpy()
    if layer.bias == "separate":
        truth.update({k: getattr(m, k + suffix).grad.numpy() for k in ("bias_ih", "bias_hh")})
    elif layer.bias == "fused":  # d/db of x W^T + b + h W^T + 0: bias_ih's gradient
        truth["bias"] = getattr(m, "bias_ih" + suffix).grad.numpy()
    for backend in ("torch", "jax"):
        res = build(backend, spec).vjp(full, x, g)
        got = {"output": res.output, "input": res.input_grad,
               **{k.split(".", 1)[1]: v for k, v in res.param_grads.items()}}
        assert set(got) == set(truth)
        for k, v in truth.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-13, err_msg=f"{backend} {layer.kind} {k}")
