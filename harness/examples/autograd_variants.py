"""Buggy variants of the custom-autograd example: each is one realistic mistake in a
handwritten ``torch.autograd.Function``, written as a small subclass of the correct one in
:mod:`harness.examples.autograd_model`, and says where trigrad must find it.

Read a bug class next to the Function it overrides: the difference is the bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .autograd_model import (
    GELU_A,
    GELU_C,
    Conv2dFunction,
    GELUTanhFunction,
    LayerNormFunction,
    LeakyReLUFunction,
    LinearFunction,
)

# ---------------------------------------------------------------------- the mistakes


class LayerNormMeanTermSummed(LayerNormFunction):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        xhat, rstd, weight = ctx.saved_tensors
        dxhat = grad_output * weight
        mean = dxhat.mean(-1, keepdim=True)
        var_term = xhat * (dxhat * xhat).sum(-1, keepdim=True)  # a mean over D, like the line above
        grad_input = rstd * (dxhat - mean - var_term)
        return grad_input, (grad_output * xhat).sum(0), grad_output.sum(0), None


class GELUTanhSavesOutput(GELUTanhFunction):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(GELU_C * (x + GELU_A * x**3))
        out = 0.5 * x * (1 + t)
        ctx.save_for_backward(out, t)  # x was meant: backward reads the first one as the input
        return out


class LeakyReLUMaskFromGrad(LeakyReLUFunction):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        # the mask should be the input's sign (x > 0), not the upstream gradient's
        mask = grad_output > 0
        return torch.where(mask, grad_output, grad_output * ctx.negative_slope), None


class LinearBiasGradMean(LinearFunction):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        grad_input, grad_weight, _ = LinearFunction.backward(ctx, grad_output)
        grad_bias = grad_output.mean(0)  # "the loss is a mean, so the bias gradient is one too"
        return grad_input, grad_weight, grad_bias


class LinearWeightGradTransposed(LinearFunction):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        input, _, _ = ctx.saved_tensors
        grad_input, _, grad_bias = LinearFunction.backward(ctx, grad_output)
        grad_weight = input.t().mm(grad_output)  # (in, out): fits only because fc2 is square
        return grad_input, grad_weight, grad_bias


class Conv2dWeightGradPatchOrder(Conv2dFunction):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        grad_input, _, grad_bias, _ = Conv2dFunction.backward(ctx, grad_output)
        cols, weight = ctx.saved_tensors
        c_out, c_in, kh, kw = weight.shape
        grad_cols_w = (grad_output.flatten(2) @ cols.transpose(1, 2)).sum(0)  # (out, C*kh*kw)
        # read as if F.unfold ordered a patch (kh, kw, C), as TF's extract_patches does:
        # its order is (C, kh, kw)
        grad_weight = grad_cols_w.view(c_out, kh, kw, c_in).permute(0, 3, 1, 2)
        return grad_input, grad_weight, grad_bias, None


class LayerNormUnbiasedVariance(LayerNormFunction):
    """Normalises by torch.var's default, the unbiased variance (divided by D - 1), and
    differentiates that forward faithfully: its backward is that forward's exact gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        var = x.var(-1, keepdim=True)  # unbiased by default (/ (D - 1)); LayerNorm's is biased
        rstd = 1 / torch.sqrt(var + eps)
        xhat = (x - x.mean(-1, keepdim=True)) * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        xhat, rstd, weight = ctx.saved_tensors
        dxhat, d = grad_output * weight, xhat.shape[-1]
        mean = dxhat.mean(-1, keepdim=True)
        grad_input = rstd * (dxhat - mean - xhat * (dxhat * xhat).sum(-1, keepdim=True) / (d - 1))
        return grad_input, (grad_output * xhat).sum(0), grad_output.sum(0), None


# ---------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class AutogradVariant:
    """One bug and what trigrad must say about it.

    name:      short kebab-case id.
    summary:   one line for a person.
    layer:     the layer trigrad must blame (``"conv"``, ``"act1"``, ``"fc1"``, ``"norm"``,
               ``"act2"``, ``"fc2"``).
    side:      the verdict that layer must get: ``"forward"`` or ``"backward"``.
    diagnosis: a substring of one of trigrad's diagnosis lines for that layer, or ``""``.
    layers:    how the example is made: ``(layer name, buggy Function)`` pairs.
    """

    name: str
    summary: str
    layer: str
    side: str
    diagnosis: str = ""
    layers: tuple[tuple[str, type], ...] = field(default=(), repr=False)


_ALL = [
    AutogradVariant(
        "fc2-weight-grad-transposed",
        "the LinearFunction's weight gradient is input.t().mm(grad_output), the transpose (unseen: fc2 is square)",
        "fc2",
        "backward",
        diagnosis="transpose",
        layers=(("fc2", LinearWeightGradTransposed),),
    ),
    AutogradVariant(
        "norm-mean-term-summed",
        "the LayerNorm backward sums (dxhat * xhat) over the features where it should average: a 1/D missing",
        "norm",
        "backward",
        layers=(("norm", LayerNormMeanTermSummed),),
    ),
    AutogradVariant(
        "act2-saves-output",
        "the GELU Function saves its output where its input was meant; the backward evaluates GELU' there",
        "act2",
        "backward",
        layers=(("act2", GELUTanhSavesOutput),),
    ),
    AutogradVariant(
        "act1-mask-from-grad",
        "the LeakyReLU backward takes its mask from grad_output > 0 instead of the input's sign",
        "act1",
        "backward",
        layers=(("act1", LeakyReLUMaskFromGrad),),
    ),
    AutogradVariant(
        "fc1-bias-grad-mean",
        "the LinearFunction's bias gradient is grad_output.mean(0) instead of .sum(0)",
        "fc1",
        "backward",
        diagnosis="off by a constant factor 1/4",
        layers=(("fc1", LinearBiasGradMean),),
    ),
    AutogradVariant(
        "conv-dw-patch-order",
        "the im2col conv's weight gradient reads F.unfold's columns as (kh, kw, C) patches; they are (C, kh, kw)",
        "conv",
        "backward",
        layers=(("conv", Conv2dWeightGradPatchOrder),),
    ),
    AutogradVariant(
        "norm-unbiased-variance",
        "the LayerNorm forward uses torch.var's default, the unbiased variance; the backward is that forward's "
        "exact gradient",
        "norm",
        "forward",
        layers=(("norm", LayerNormUnbiasedVariance),),
    ),
]

AUTOGRAD_VARIANTS: dict[str, AutogradVariant] = {v.name: v for v in _ALL}

__all__ = ["AUTOGRAD_VARIANTS", "AutogradVariant"]
