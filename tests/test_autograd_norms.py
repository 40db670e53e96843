"""Custom torch autograd code for attention, normalisation and embeddings (issue 18): a
causal attention whose backward forgets the mask, a fused LayerNorm returning ``(y, mean,
rstd)`` with ``eps`` as a non-tensor argument, an in-place LayerNorm (``ctx.mark_dirty``), a
batch norm updating its running statistics in place, an Embedding whose ``dW[idx] += g``
drops repeated tokens."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import Function

import harness
from autograd_layers import (
    BROADCAST_NOTE,
    LN,
    BatchNormFn,
    LayerNormFn,
    bad_tensors,
    batch_norm_forward,
    bn_params,
    entry,
    ln_params,
    randn,
    said,
)

# --------------------------------------------------------------------------- causal attention


def attention_backward(ctx, g, p):
    q, k, v, _ = ctx.saved_tensors
    dv = p.transpose(-1, -2) @ g
    dp = g @ v.transpose(-1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True)) * ctx.scale
    return ds @ k, ds.transpose(-1, -2) @ q, dv


class CausalAttention(Function):
    """softmax(q k^T / sqrt(d) + causal mask) v, the backward by hand."""

    @staticmethod
    def forward(ctx, q, k, v):
        scale = q.shape[-1] ** -0.5
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        p = torch.softmax((q @ k.transpose(-1, -2) * scale).masked_fill(~mask, float("-inf")), -1)
        ctx.save_for_backward(q, k, v, p)
        ctx.scale = scale
        return p @ v

    @staticmethod
    def backward(ctx, g):
        return attention_backward(ctx, g, ctx.saved_tensors[3])


class CausalAttentionForgetsMask(CausalAttention):
    @staticmethod
    def backward(ctx, g):
        q, k, _, _ = ctx.saved_tensors
        p = torch.softmax(q @ k.transpose(-1, -2) * ctx.scale, -1)  # recomputed to save memory, without the mask
        return attention_backward(ctx, g, p)


ATTN = harness.ScaledDotProductAttention("attn", causal=True)


@pytest.mark.parametrize(("fn", "verdict"), [(CausalAttention, "pass"), (CausalAttentionForgetsMask, "backward")])
def test_causal_attention(fn, verdict: str) -> None:
    params = {"key": randn(2, 5, 4, seed=8), "value": randn(2, 5, 4, seed=9)}
    e = entry(fn, ATTN, (2, 5, 4), params=params)
    assert e.verdict == verdict, e.message
    assert [t.name for t in e.tensors] == ["output", "input", "key", "value"]
    if verdict == "backward":
        assert "output" not in bad_tensors(e) and "input" in bad_tensors(e)


# --------------------------------------------------------------------------- a fused LayerNorm


class LayerNormMissingTerm(LayerNormFn):
    @staticmethod
    def backward(ctx, g, _gmean, _grstd):
        xhat, rstd, w = ctx.saved_tensors
        dxhat = g * w
        dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True))  # forgot the variance's term
        return dx, (g * xhat).sum(0), g.sum(0), None


class LayerNormWeightUnreduced(LayerNormFn):
    @staticmethod
    def backward(ctx, g, _gmean, _grstd):
        dx, _, db, _ = LayerNormFn.backward(ctx, g, _gmean, _grstd)
        xhat = ctx.saved_tensors[0]
        return dx, g * xhat, db, None  # (N, D): torch sums it


@pytest.mark.parametrize(
    ("fn", "verdict"), [(LayerNormFn, "pass"), (LayerNormMissingTerm, "backward"), (LayerNormWeightUnreduced, "pass")]
)
def test_fused_layer_norm_with_aux_outputs(fn, verdict: str) -> None:
    e = entry(fn, LN, (5, 8), params=ln_params(), forward_args=(1e-5,), output=0)
    assert e.verdict == verdict, e.message
    assert bad_tensors(e) == ([] if verdict == "pass" else ["input"])
    assert (BROADCAST_NOTE in e.message) == (fn is LayerNormWeightUnreduced)
    if fn is LayerNormWeightUnreduced:
        assert "weight" in e.message and "(5, 8)" in e.message


class LayerNormInPlace(Function):
    """Normalises its input in place (``ctx.mark_dirty``), as memory-saving kernels do; fine in
    training, where the input is an intermediate tensor, not a leaf."""

    @staticmethod
    def forward(ctx, x, w, b):
        mean = x.mean(-1, keepdim=True)
        rstd = (x.var(-1, unbiased=False, keepdim=True) + 1e-5).rsqrt()
        x.sub_(mean).mul_(rstd)
        ctx.save_for_backward(x.clone(), rstd, w)
        x.mul_(w).add_(b)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, g):
        return LayerNormFn.backward(ctx, g, None, None)[:3]


def test_in_place_layer_norm_is_fine_in_training() -> None:
    """The premise: inside a network (its input an intermediate) it trains."""
    x = randn(5, 8, seed=3).requires_grad_()
    w, b = (t.requires_grad_() for t in ln_params().values())
    LayerNormInPlace.apply(x * 1.0, w, b).sum().backward()
    assert x.grad is not None and w.grad is not None


def test_in_place_layer_norm_declared() -> None:
    e = entry(LayerNormInPlace, LN, (5, 8), params=ln_params(), inplace={"input"})
    assert e.verdict == "pass", e.message


# --------------------------------------------------------------------------- a BatchNorm that updates its running statistics


class BatchNormUnbiased(BatchNormFn):
    @staticmethod
    def forward(ctx, x, w, b, running_mean, running_var, momentum, eps):
        return batch_norm_forward(ctx, x, w, b, running_mean, running_var, momentum, eps, unbiased=True)


@pytest.mark.parametrize(("fn", "verdict"), [(BatchNormFn, "pass"), (BatchNormUnbiased, "both")])
def test_batch_norm_updating_running_statistics(fn, verdict: str) -> None:
    """The unbiased variance: a wrong forward, and a backward that is not its gradient either."""
    params = bn_params()
    kept = {k: v.clone() for k, v in params.items()}
    e = entry(fn, harness.BatchNorm2d("bn", 3), (4, 3, 5, 5), params=params, forward_args=(0.1, 1e-5))
    assert e.verdict == verdict, e.message
    assert [t.name for t in e.tensors] == ["output", "input", "weight", "bias"]
    if verdict == "both":
        assert {"output", "input"} <= set(bad_tensors(e))
    assert all(torch.equal(params[k], v) for k, v in kept.items())  # the in-place updates undone


# --------------------------------------------------------------------------- an Embedding over integer indices


class EmbeddingFn(Function):
    @staticmethod
    def forward(ctx, idx, weight):
        ctx.save_for_backward(idx)
        ctx.rows = weight.shape[0]
        return weight[idx]

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        dw = torch.zeros(ctx.rows, g.shape[-1], dtype=g.dtype)
        dw.index_add_(0, idx.reshape(-1), g.reshape(-1, g.shape[-1]))
        return None, dw


class EmbeddingOverwrites(EmbeddingFn):
    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        dw = torch.zeros(ctx.rows, g.shape[-1], dtype=g.dtype)
        dw[idx] += g  # a repeated token keeps only one of its gradients
        return None, dw


@pytest.mark.parametrize(("fn", "verdict"), [(EmbeddingFn, "pass"), (EmbeddingOverwrites, "backward")])
def test_embedding_function(fn, verdict: str) -> None:
    e = entry(fn, harness.Embedding("emb", 10, 4), (3, 7), params={"weight": randn(10, 4, seed=14)})
    assert e.verdict == verdict, e.message
    assert [t.name for t in e.tensors] == ["output", "weight"] and e.input_gradient == "not differentiable"
    if verdict == "backward":
        assert said(e, "weight", "overwritten instead of accumulated for repeated tokens")
