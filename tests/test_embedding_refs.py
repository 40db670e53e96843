"""The Embedding references: torch (F.embedding) and jax (jnp.take, whose VJP is a scatter-add)
agree to 1e-12 in float64 on the weight gradient with many repeated indices and a padding
row, with torch.nn.Embedding and with a numpy ``np.add.at`` oracle; integer inputs stay int64
and have no input gradient; a float or out-of-range input is refused by both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import spec as S
from reference_models import build


def _point(spec: S.Layer, shape: tuple[int, ...], seed: int, vocab: int):
    rng = np.random.default_rng(seed)
    params = S.init_params(spec, shape, seed)
    x = rng.integers(0, vocab, size=shape)  # a small vocabulary: most tokens repeat many times
    g = rng.standard_normal(spec.output_shape(shape))
    return params, x, g


@pytest.mark.parametrize("pad", [None, 0, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_torch_and_jax_agree_with_repeated_indices_and_padding(pad, seed) -> None:
    layer = S.Embedding("emb", 5, 3, padding_idx=pad)
    spec = S.Sequential([layer])
    params, x, g = _point(spec, (4, 9), seed, 5)
    t, j = build("torch", spec).vjp(params, x, g), build("jax", spec).vjp(params, x, g)
    dw = np.zeros((5, 3))
    np.add.at(dw, x, g)  # the oracle: every occurrence adds its upstream gradient to its row
    if pad is not None:
        dw[pad] = 0.0
        assert (x == pad).sum() > 1
    for r in (t, j):
        assert r.input_grad is None
        assert np.array_equal(r.output, params["emb.weight"][x])  # the padding row is still read
        np.testing.assert_allclose(r.param_grads["emb.weight"], dw, rtol=0, atol=1e-12)
        assert r.inputs["emb"].dtype == np.int64 and np.array_equal(r.inputs["emb"], x)
    assert np.abs(t.param_grads["emb.weight"] - j.param_grads["emb.weight"]).max() <= 1e-12


def test_eager_jax_agrees_too() -> None:
    spec = S.Sequential([S.Embedding("emb", 4, 2, padding_idx=3)])
    params, x, g = _point(spec, (3, 7), 3, 4)
    t, j = build("torch", spec).vjp(params, x, g), build("jax", spec, jit=False).vjp(params, x, g)
    assert j.input_grad is None
    np.testing.assert_allclose(j.param_grads["emb.weight"], t.param_grads["emb.weight"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("pad", [None, 1])
def test_agrees_with_torch_nn_embedding(pad) -> None:
    spec = S.Sequential([S.Embedding("emb", 6, 4, padding_idx=pad)])
    params, x, g = _point(spec, (3, 8), 4, 6)
    module = torch.nn.Embedding(6, 4, padding_idx=pad).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(params["emb.weight"]))
    y = module(torch.from_numpy(x))
    (y * torch.from_numpy(g)).sum().backward()
    for backend in ("torch", "jax"):
        r = build(backend, spec).vjp(params, x, g)
        np.testing.assert_allclose(r.output, y.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.param_grads["emb.weight"], module.weight.grad.numpy(), rtol=0, atol=1e-12)


def test_a_network_over_indices_with_a_loss() -> None:
    """(N, T) indices -> Embedding -> Linear, then (N,) indices -> Embedding -> Linear under a
    cross-entropy: the per-layer values agree, the Linear's input gradient is the upstream
    gradient the Embedding receives."""
    net = S.Sequential([S.Embedding("emb", 7, 4, padding_idx=0), S.Tanh("act"), S.Linear("fc", 4, 3)])
    params, x, g = _point(net, (2, 6), 5, 7)
    t, j = build("torch", net).vjp(params, x, g), build("jax", net).vjp(params, x, g)
    for k in t.param_grads:
        np.testing.assert_allclose(t.param_grads[k], j.param_grads[k], rtol=0, atol=1e-12)
    for k in t.output_grads:
        np.testing.assert_allclose(t.output_grads[k], j.output_grads[k], rtol=0, atol=1e-12)
    assert t.input_grad is None and j.input_grad is None
    flat = S.Sequential([S.Embedding("emb", 7, 4), S.Linear("fc", 4, 3)])
    params, x, _ = _point(flat, (5,), 6, 7)
    labels = np.array([0, 2, 1, 1, 0])
    t = build("torch", flat).loss_vjp(params, x, S.SoftmaxCrossEntropy(), labels)
    j = build("jax", flat).loss_vjp(params, x, S.SoftmaxCrossEntropy(), labels)
    assert abs(t.loss - j.loss) <= 1e-12 and t.input_grad is None and j.input_grad is None
    np.testing.assert_allclose(t.param_grads["emb.weight"], j.param_grads["emb.weight"], rtol=0, atol=1e-12)
    assert build("jax", flat).forward(params, x).inputs["emb"].dtype == np.int64


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_float_and_out_of_range_inputs_are_refused(backend) -> None:
    spec = S.Sequential([S.Embedding("emb", 4, 2)])
    params = S.init_params(spec, (2, 3))
    ref = build(backend, spec)
    with pytest.raises(S.SpecError, match="layer 'emb': an Embedding takes integer indices; the input is float64"):
        ref.vjp(params, np.zeros((2, 3)), np.zeros((2, 3, 2)))
    with pytest.raises(S.SpecError, match="index 4 at \\[1, 2\\] is out of range"):
        ref.forward(params, np.array([[0, 1, 2], [3, 0, 4]]))
