"""Attention between specs and torch modules: to_torch builds an nn.MultiheadAttention (and a
scaled dot-product module) whose state_dict keys are the spec's names and which computes the
reference; from_torch reads a plain nn.MultiheadAttention (batch first or not) with its
out_proj.weight renamed out_proj_weight; round trips; unsupported options named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import harness as tg
from harness import spec as S
from reference_models import build
from reference_models.bridge_attention import SelfAttention


def _params(spec: S.Layer, shape: tuple[int, ...], seed: int = 0):
    return S.init_params(spec, shape, seed), np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("causal, padding, bias", [(False, False, True), (True, True, True), (True, False, False)])
def test_to_torch_mha_computes_the_reference(causal: bool, padding: bool, bias: bool) -> None:
    spec = S.Sequential([S.Linear("fc", 3, 8), S.MultiheadAttention("attn", 8, 2, bias, causal, padding)])
    params, x = _params(spec, (2, 5, 3))
    module = tg.to_torch(spec, params)
    assert isinstance(module.attn, nn.MultiheadAttention) and module.attn.batch_first
    assert list(module.state_dict()) == list(params)  # the spec's names, in its order
    tx = torch.tensor(x, requires_grad=True)
    y = module(tx)
    ref = build("torch", spec).vjp(params, x, np.ones(y.shape))
    np.testing.assert_allclose(y.detach().numpy(), ref.output, rtol=1e-12, atol=1e-14)
    y.sum().backward()
    np.testing.assert_allclose(tx.grad.numpy(), ref.input_grad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        module.attn.out_proj.weight.grad.numpy(), ref.param_grads["attn.out_proj_weight"], rtol=1e-12
    )
    back_spec, back_params = tg.from_torch(module)
    assert back_spec == spec
    assert list(back_params) == list(params)
    assert all(np.array_equal(back_params[k], params[k]) for k in params)


def test_self_attention_loads_either_spelling() -> None:
    layer = S.MultiheadAttention("attn", 4, 2)
    a, b = SelfAttention(layer).double(), SelfAttention(layer).double()
    a.load_state_dict(b.state_dict())  # the spec's names
    plain = nn.MultiheadAttention(4, 2, batch_first=True).double()
    a.load_state_dict(plain.state_dict())  # PyTorch's names
    assert torch.equal(a.out_proj.weight, plain.out_proj.weight)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_from_torch_plain_module(batch_first: bool, bias: bool) -> None:
    module = nn.MultiheadAttention(6, 3, bias=bias, batch_first=batch_first).double()
    spec, params = tg.from_torch(module)
    assert spec == S.Sequential([S.MultiheadAttention("0", 6, 3, bias=bias)])
    names = ["0.in_proj_weight", "0.in_proj_bias", "0.out_proj_weight", "0.out_proj_bias"]
    assert sorted(params) == sorted(names if bias else names[::2])
    assert np.array_equal(params["0.out_proj_weight"], module.out_proj.weight.detach().numpy())
    x = np.random.default_rng(1).normal(size=(2, 4, 6))  # the spec is batch first: (N, T, E)
    tx = torch.tensor(x if batch_first else x.transpose(1, 0, 2))
    y = module(tx, tx, tx, need_weights=False)[0].detach().numpy()
    y = y if batch_first else y.transpose(1, 0, 2)
    for backend in ("torch", "jax"):
        np.testing.assert_allclose(build(backend, spec).forward(params, x).output, y, rtol=1e-12, atol=1e-14)


def test_from_torch_attention_inside_a_sequential() -> None:
    spec = S.Sequential([S.Linear("fc", 4, 6), S.MultiheadAttention("attn", 6, 2, causal=True, key_padding=True)])
    params, _ = _params(spec, (3, 5, 4))
    back, back_params = tg.from_torch(tg.to_torch(spec, params))
    assert back == spec and all(np.array_equal(back_params[k], params[k]) for k in params)


def test_sdpa_module_round_trip() -> None:
    layer = S.ScaledDotProductAttention("attn", causal=True, kv_len=3, value_dim=2, key_padding=True, scale=0.5)
    spec = S.Sequential([layer])
    params, x = _params(spec, (2, 4, 5))
    module = tg.to_torch(spec, params)
    assert list(module.state_dict()) == ["attn.key", "attn.value", "attn.key_padding_mask"]
    y = module(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(y, build("jax", spec).forward(params, x).output, rtol=1e-12, atol=1e-14)
    back, back_params = tg.from_torch(module)
    assert back == spec and all(np.array_equal(back_params[k], params[k]) for k in params)
    bare, _ = tg.from_torch(module.attn)  # a bare leaf is renamed "0"
    assert bare.layers[0] == S.ScaledDotProductAttention("0", True, 0.5, 3, 2, True)


@pytest.mark.parametrize(
    "module, words",
    [
        (nn.MultiheadAttention(6, 2, kdim=4, vdim=4), "has kdim=4, vdim=4 other than embed_dim=6"),
        (nn.MultiheadAttention(6, 2, add_bias_kv=True), "uses add_bias_kv or add_zero_attn"),
        (nn.MultiheadAttention(6, 2, add_zero_attn=True), "uses add_bias_kv or add_zero_attn"),
        (nn.MultiheadAttention(6, 2, dropout=0.1), "applies dropout=0.1 in training mode"),
    ],
)
def test_from_torch_unsupported_mha(module: nn.Module, words: str) -> None:
    with pytest.raises(S.SpecError) as e:
        tg.from_torch(module)
    assert str(e.value).startswith("from_torch: module '<root>' (MultiheadAttention)") and words in str(e.value)


def test_from_torch_eval_dropout_is_exact() -> None:
    spec, _ = tg.from_torch(nn.MultiheadAttention(6, 2, dropout=0.1).eval())
    assert spec.layers[0] == S.MultiheadAttention("0", 6, 2)
