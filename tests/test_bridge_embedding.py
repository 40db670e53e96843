"""nn.Embedding through the torch bridge, both ways: to_torch computes what the references
compute (the user's padding row loaded over the one nn.Embedding zeroes), from_torch reads
the module back (directly, in an nn.Sequential, in a traced custom module), and the options
the spec cannot express are refused naming the module and the option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness import from_torch, to_torch
from harness import spec as S
from reference_models import build


def test_to_torch_computes_the_reference_and_keeps_the_padding_row() -> None:
    spec = S.Sequential([S.Embedding("emb", 6, 3, padding_idx=4), S.Linear("fc", 3, 2)])
    params = S.init_params(spec, (2, 5), seed=1)
    assert np.abs(params["emb.weight"][4]).sum() > 0  # a padding row that is not zero: loaded as given
    module = to_torch(spec, params)
    assert isinstance(module.emb, nn.Embedding) and module.emb.padding_idx == 4
    x = np.array([[4, 1, 1, 0, 5], [2, 4, 3, 3, 3]])
    y = module(torch.from_numpy(x))
    g = np.random.default_rng(0).standard_normal((2, 5, 2))
    (y * torch.from_numpy(g)).sum().backward()
    ref = build("jax", spec).vjp(params, x, g)
    np.testing.assert_allclose(y.detach().numpy(), ref.output, rtol=0, atol=1e-12)
    np.testing.assert_allclose(module.emb.weight.grad.numpy(), ref.param_grads["emb.weight"], rtol=0, atol=1e-12)
    assert not module.emb.weight.grad[4].any()


@pytest.mark.parametrize("pad", [None, 0])
def test_from_torch_round_trip(pad) -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Embedding(8, 4, padding_idx=pad), nn.Tanh(), nn.Linear(4, 3))
    spec, params = from_torch(module)
    assert spec == S.Sequential([S.Embedding("0", 8, 4, pad), S.Tanh("1"), S.Linear("2", 4, 3)])
    assert list(params) == ["0.weight", "2.weight", "2.bias"] and params["0.weight"].dtype == np.float64
    back, again = from_torch(to_torch(spec, params))
    assert back == spec and all(np.array_equal(params[k], again[k]) for k in params)
    bare, p = from_torch(nn.Embedding(5, 2))
    assert bare == S.Sequential([S.Embedding("0", 5, 2)]) and list(p) == ["0.weight"]


def test_from_torch_traces_a_custom_module() -> None:
    class Words(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 6, padding_idx=0)
            self.proj = nn.Linear(6, 10)

        def forward(self, x):
            return self.proj(self.embed(x))

    spec, params = from_torch(Words())
    assert spec == S.Sequential([S.Embedding("embed", 10, 6, 0), S.Linear("proj", 6, 10)])
    assert S.index_layer(spec) is spec.layers[0] and list(params) == ["embed.weight", "proj.weight", "proj.bias"]


@pytest.mark.parametrize(
    "options, said",
    [
        ({"max_norm": 1.0}, "max_norm=1.0 (rows renormalised in place by the forward)"),
        ({"scale_grad_by_freq": True}, "scale_grad_by_freq=True (gradients divided by token counts)"),
        ({"sparse": True}, "sparse=True (a sparse weight gradient)"),
    ],
)
def test_options_the_spec_cannot_express_are_refused(options, said) -> None:
    with pytest.raises(S.SpecError) as e:
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Embedding(5, 2, **options))))
    assert f"from_torch: module '1.0' (Embedding) uses {said}, which the spec does not support" in str(e.value)
