"""The attention references and the temporal softmax loss: torch (PyTorch's own
F.scaled_dot_product_attention / F.multi_head_attention_forward) and jax (written out)
agree to 1e-12 in float64 on every field, across heads, causal and padding masks, T != S and
leading head axes; both agree with torch.nn.MultiheadAttention(batch_first=True) and
F.scaled_dot_product_attention run directly; no NaN gradient under a mask; the loss agrees
with F.cross_entropy(ignore_index=...)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import slow
from harness import spec as S
from reference_models import build
from test_agreement import assert_agree, run_both

SDPA, MHA, TSCE = S.ScaledDotProductAttention, S.MultiheadAttention, S.TemporalSoftmaxCrossEntropy

CASES = [
    (SDPA("a"), (2, 5, 4)),
    (SDPA("a", causal=True), (3, 6, 3)),
    (SDPA("a", key_padding=True, kv_len=7, value_dim=2), (2, 4, 5)),  # T != S, dv != d
    (SDPA("a", causal=True, key_padding=True, kv_len=3, scale=0.7), (2, 5, 4)),  # T > S
    (SDPA("a", causal=True, key_padding=True), (2, 3, 4, 5)),  # a head axis
    (SDPA("a", key_padding=True, kv_len=2), (2, 2, 3, 4, 3)),  # two leading axes
    (MHA("m", 8, 2), (3, 5, 8)),
    (MHA("m", 8, 4, causal=True), (2, 6, 8)),
    (MHA("m", 6, 3, key_padding=True), (3, 4, 6)),
    (MHA("m", 6, 1, bias=False, causal=True, key_padding=True), (2, 5, 6)),
]


@pytest.mark.parametrize("layer, shape", CASES, ids=lambda c: getattr(c, "kind", str(c)))
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=slow)])
def test_torch_and_jax_agree(layer: S.Layer, shape: tuple[int, ...], seed: int) -> None:
    spec = S.Sequential([layer])
    t, j = run_both(spec, shape, seed)
    assert_agree(t, j, spec, shape)
    assert all(np.isfinite(g).all() for g in (t.input_grad, j.input_grad, *t.param_grads.values()))


def test_attention_inside_a_network() -> None:
    spec = S.Sequential([S.Linear("fc", 3, 8), MHA("m", 8, 2, causal=True, key_padding=True), S.Tanh("act")])
    t, j = run_both(spec, (2, 5, 3), 3)
    assert_agree(t, j, spec, (2, 5, 3))


def _point(layer: S.Layer, shape: tuple[int, ...], seed: int = 0):
    spec = S.Sequential([layer])
    rng = np.random.default_rng(seed)
    x, params = rng.normal(size=shape), S.init_params(spec, shape, seed=seed + 1)
    g = rng.normal(size=spec.output_shape(shape))
    return spec, params, x, g, [build(b, spec).vjp(params, x, g) for b in ("torch", "jax")]


def _close(a, b) -> None:
    np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("causal, padding", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("batch_first", [True, False])
def test_against_nn_multihead_attention(causal: bool, padding: bool, batch_first: bool) -> None:
    """The module itself, attn(x, x, x, key_padding_mask=bool, attn_mask=causal) in float64."""
    layer = MHA("m", 8, 2, causal=causal, key_padding=padding)
    _, params, x, g, results = _point(layer, (3, 5, 8))
    module = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.tensor(params["m.in_proj_weight"]))
        module.in_proj_bias.copy_(torch.tensor(params["m.in_proj_bias"]))
        module.out_proj.weight.copy_(torch.tensor(params["m.out_proj_weight"]))
        module.out_proj.bias.copy_(torch.tensor(params["m.out_proj_bias"]))
    tx = torch.tensor(x, requires_grad=True)
    inp = tx if batch_first else tx.transpose(0, 1)
    kpm = torch.tensor(params["m.key_padding_mask"] != 0) if padding else None
    causal_mask = torch.ones(5, 5, dtype=torch.bool).triu(1) if causal else None
    y, _ = module(inp, inp, inp, key_padding_mask=kpm, attn_mask=causal_mask, need_weights=False)
    y = y if batch_first else y.transpose(0, 1)
    (y * torch.tensor(g)).sum().backward()
    for r in results:
        _close(r.output, y.detach())
        _close(r.input_grad, tx.grad)
        _close(r.param_grads["m.in_proj_weight"], module.in_proj_weight.grad)
        _close(r.param_grads["m.out_proj_weight"], module.out_proj.weight.grad)
        _close(r.param_grads["m.out_proj_bias"], module.out_proj.bias.grad)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (SDPA("a", causal=True, key_padding=True, kv_len=4, value_dim=3, scale=0.4), (2, 3, 6, 5)),
        (SDPA("a"), (2, 4, 3)),
    ],
)
def test_against_f_scaled_dot_product_attention(layer: S.Layer, shape: tuple[int, ...]) -> None:
    """F.scaled_dot_product_attention with a boolean mask built here, and is_causal's own
    top-left alignment when T != S (the spec's docstring)."""
    _, params, x, g, results = _point(layer, shape)
    q, k, v = (torch.tensor(a, requires_grad=True) for a in (x, params["a.key"], params["a.value"]))
    mask = None
    if layer.key_padding:
        mask = torch.tensor(params["a.key_padding_mask"] == 0)[:, None, None, :]
    if layer.causal:
        mask = mask & torch.ones(shape[-2], layer.kv_len, dtype=torch.bool).tril()
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=layer.scale)
    (y * torch.tensor(g)).sum().backward()
    for r in results:
        _close(r.output, y.detach())
        for got, want in ((r.input_grad, q.grad), (r.param_grads["a.key"], k.grad), (r.param_grads["a.value"], v.grad)):
            _close(got, want)


def test_causal_only_matches_is_causal() -> None:
    layer = SDPA("a", causal=True, kv_len=7)  # T = 4 < S = 7: query i sees keys 0..i
    _, params, x, _, results = _point(layer, (2, 4, 3))
    y = F.scaled_dot_product_attention(
        *(torch.tensor(a) for a in (x, params["a.key"], params["a.value"])), is_causal=True
    )
    for r in results:
        _close(r.output, y)


def test_masked_keys_get_no_gradient() -> None:
    """A hidden key's (and value's) gradient is exactly 0, finite everywhere: no -inf leaks a NaN."""
    layer = SDPA("a", key_padding=True)
    _, params, _, _, results = _point(layer, (3, 5, 4), seed=2)
    hidden = params["a.key_padding_mask"] == 1
    assert hidden.any()
    for r in results:
        for name in ("a.key", "a.value"):
            assert np.isfinite(r.param_grads[name]).all()
            assert (r.param_grads[name][hidden] == 0).all()


def test_reference_refuses_a_fully_hidden_row() -> None:
    layer = SDPA("a", key_padding=True)
    spec, params, x, g, _ = _point(layer, (2, 3, 4))
    params["a.key_padding_mask"][1] = 1.0
    for backend in ("torch", "jax"):
        with pytest.raises(S.SpecError, match="hide every key from query 0 of batch row 1"):
            build(backend, spec).vjp(params, x, g)


# --------------------------------------------------------------------------- the temporal loss


def _loss_point(loss: S.Loss, seed: int = 0):
    rng = np.random.default_rng(seed)
    spec = S.Sequential([S.Linear("fc", 3, 6)])  # (N, T, 3) -> logits (N, T, 6)
    x, params = rng.normal(size=(4, 5, 3)), S.init_params(spec, (4, 5, 3), seed)
    target = rng.integers(0, 6, size=(4, 5))
    target[rng.random((4, 5)) < 0.3] = loss.ignore_index
    return spec, params, x, target, [build(b, spec).loss_vjp(params, x, loss, target) for b in ("torch", "jax")]


@pytest.mark.parametrize("reduction", ["batch", "mean", "sum"])
@pytest.mark.parametrize("ignore_index", [-1, 0, -100])
def test_temporal_loss_agrees(reduction: str, ignore_index: int) -> None:
    loss = TSCE(reduction, ignore_index)
    spec, _, _, target, (t, j) = _loss_point(loss, seed=ignore_index % 7)
    assert_agree(t, j, spec, (4, 5, 3))
    assert abs(t.loss - j.loss) <= 1e-12 * abs(t.loss)
    assert (t.cotangent[target == ignore_index] == 0).all()  # ignored positions: no gradient
    logits = torch.tensor(t.output, requires_grad=True)
    want = F.cross_entropy(
        logits.reshape(-1, 6), torch.tensor(target).reshape(-1), ignore_index=ignore_index, reduction="sum"
    )
    want = want / {"batch": 4, "mean": int((target != ignore_index).sum()), "sum": 1}[reduction]
    want.backward()
    for r in (t, j):
        assert abs(r.loss - want.item()) <= 1e-12 * abs(want.item())
        _close(r.cotangent, logits.grad)


def test_temporal_mean_is_pytorchs_mean() -> None:
    _, _, _, target, (t, j) = _loss_point(TSCE("mean", -1), seed=5)
    logits = torch.tensor(t.output)
    want = F.cross_entropy(logits.permute(0, 2, 1), torch.tensor(target), ignore_index=-1)  # (N, V, T) form
    assert abs(t.loss - float(want)) <= 1e-12 and abs(j.loss - float(want)) <= 1e-12


def test_temporal_batch_is_cs231n() -> None:
    """CS231n's temporal_softmax_loss: -sum(mask * log p[y]) / N."""
    _, _, _, target, (t, _) = _loss_point(TSCE("batch", -1), seed=6)
    x = t.output
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    mask = target != -1
    y = np.where(mask, target, 0)
    value = -np.sum(mask * np.log(np.take_along_axis(p, y[..., None], -1)[..., 0])) / 4
    dx = p.copy()
    np.put_along_axis(dx, y[..., None], np.take_along_axis(dx, y[..., None], -1) - 1, -1)
    dx = dx / 4 * mask[..., None]
    assert abs(t.loss - value) <= 1e-12 * abs(value)
    _close(t.cotangent, dx)
