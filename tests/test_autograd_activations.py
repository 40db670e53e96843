"""Custom torch autograd code for activations and their masks (issue 18): the tutorial's
ReLU (``grad_input[input < 0] = 0``) and its mistakes (a mask from the upstream gradient's
sign, the output saved after an in-place clamp, the saved input read as the output),
trigrad's deliberate zeros (harness/ties.py), MulConstant-style non-tensor arguments, a
dropout mask; fused Linear+ReLU and Linear+Sigmoid Functions checked as spans, one writing
into ``grad_output``."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import Function

import harness
from autograd_layers import (
    F64,
    TanhFn,
    bad_tensors,
    entry,
    fc_params,
    said,
)

# --------------------------------------------------------------------------- parameter-free Functions


class MyReLU(Function):
    """The tutorial's ReLU: save the input, zero the gradient where it was negative."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


class ReLUSavesOutput(MyReLU):
    @staticmethod
    def forward(ctx, input):
        x = input.clone()
        x.clamp_(min=0)  # in place, then saved: the "input" backward sees is the output
        ctx.save_for_backward(x)
        return x


class ReLUMasksUpstream(MyReLU):
    @staticmethod
    def backward(ctx, grad_output):
        grad_input = grad_output.clone()
        grad_input[grad_output < 0] = 0  # the upstream gradient's sign, not the input's
        return grad_input


class ReLUAtZeroIsOne(MyReLU):
    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return grad_output * (input >= 0).to(grad_output.dtype)  # 1 at exactly 0: a valid subgradient


class LeakyReLUFn(Function):
    """MulConstant style: the slope a non-tensor argument, its gradient None."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return torch.where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grad = g.clone()
        grad[x <= 0] *= ctx.slope
        return grad, None


class LeakyReLUZeroAtZero(LeakyReLUFn):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ((x > 0).to(g.dtype) + ctx.slope * (x < 0).to(g.dtype)), None  # 0 at exactly 0


class SigmoidFn(Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * (1 - y)


class SigmoidSavesInput(SigmoidFn):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)  # backward's y * (1 - y) then reads the input
        return torch.sigmoid(x)


class TanhSavesInput(TanhFn):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)


class SoftmaxFn(Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.softmax(x, -1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * (g - (g * y).sum(-1, keepdim=True))


class SoftmaxDiagonalOnly(SoftmaxFn):
    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * (1 - y)  # the Jacobian's diagonal only


RELU, LEAKY = harness.ReLU("relu"), harness.LeakyReLU("leaky", negative_slope=0.1)
PARAM_FREE_CASES = [
    (MyReLU, RELU, "pass"),
    (ReLUSavesOutput, RELU, "backward"),
    (ReLUMasksUpstream, RELU, "backward"),
    (SigmoidFn, harness.Sigmoid("sig"), "pass"),
    (SigmoidSavesInput, harness.Sigmoid("sig"), "backward"),
    (TanhFn, harness.Tanh("tanh"), "pass"),
    (TanhSavesInput, harness.Tanh("tanh"), "backward"),
    (SoftmaxFn, harness.Softmax("softmax"), "pass"),
    (SoftmaxDiagonalOnly, harness.Softmax("softmax"), "backward"),
]


@pytest.mark.parametrize(("fn", "spec", "verdict"), PARAM_FREE_CASES, ids=[c[0].__name__ for c in PARAM_FREE_CASES])
def test_parameter_free_function(fn, spec, verdict: str) -> None:
    e = entry(fn, spec, (4, 6))
    assert e.verdict == verdict, e.message


def test_relu_gradient_one_at_zero_is_a_valid_subgradient() -> None:
    """harness/ties.py: at exact zeros dx/g must lie in [0, 1]; 1 (``input >= 0``) does."""
    e = entry(ReLUAtZeroIsOne, RELU, (4, 6))
    assert e.verdict == "pass", e.message


@pytest.mark.parametrize(("fn", "verdict"), [(LeakyReLUFn, "pass"), (LeakyReLUZeroAtZero, "backward")])
def test_leaky_relu_with_a_non_tensor_slope(fn, verdict: str) -> None:
    """The slope goes as a forward argument; the LeakyReLU that passes 0 at exactly 0 (outside
    [0.1, 1]) is found only at trigrad's deliberate zeros (harness/ties.py)."""
    e = entry(fn, LEAKY, (4, 6), forward_args=(0.1,))
    assert e.verdict == verdict, e.message
    if verdict == "backward":
        assert said(e, "at exactly 0", "[0.1, 1]")


class DropoutFn(Function):
    @staticmethod
    def forward(ctx, x, mask, p):
        ctx.save_for_backward(mask)
        ctx.scale = 1.0 / (1.0 - p)
        return x * mask * ctx.scale

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask * ctx.scale, None, None


class DropoutInvertedMask(DropoutFn):
    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * (1 - mask) * ctx.scale, None, None  # the dropped units get the gradient


@pytest.mark.parametrize(("fn", "verdict"), [(DropoutFn, "pass"), (DropoutInvertedMask, "backward")])
def test_dropout_with_a_mask_buffer(fn, verdict: str) -> None:
    mask = (torch.rand(4, 6, generator=torch.Generator().manual_seed(7)) > 0.5).to(F64)
    e = entry(fn, harness.Dropout("drop", p=0.5), (4, 6), params={"mask": mask}, forward_args=(0.5,))
    assert e.verdict == verdict, e.message


# --------------------------------------------------------------------------- a fused Linear + ReLU span


class LinearReLU(Function):
    @staticmethod
    def forward(ctx, x, w, b):
        y = (x @ w.T + b).clamp(min=0)
        ctx.save_for_backward(x, w, y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        x, w, y = ctx.saved_tensors
        g = grad_output.clone()
        g[y <= 0] = 0
        return g @ w, g.T @ x, g.sum(0)


class LinearReLUMasksUpstream(LinearReLU):
    @staticmethod
    def backward(ctx, grad_output):
        x, w, _ = ctx.saved_tensors
        g = grad_output.clone()
        g[grad_output <= 0] = 0  # masked by the upstream gradient's sign
        return g @ w, g.T @ x, g.sum(0)


class LinearReLUInPlace(LinearReLU):
    @staticmethod
    def backward(ctx, grad_output):
        x, w, y = ctx.saved_tensors
        grad_output[y <= 0] = 0  # no clone: the caller's gradient is changed
        return grad_output @ w, grad_output.T @ x, grad_output.sum(0)


SPAN = harness.Sequential([harness.Linear("fc", 6, 4), harness.ReLU("relu")], name="block")


def span_params() -> dict[str, torch.Tensor]:
    p = fc_params()
    return {"fc.weight": p["weight"], "fc.bias": p["bias"]}


def test_fused_linear_relu_span_passes() -> None:
    e = entry(LinearReLU, SPAN, (5, 6), params=span_params())
    assert e.verdict == "pass", e.message
    assert [t.name for t in e.tensors] == ["output", "input", "fc.weight", "fc.bias"]


def test_fused_linear_relu_masking_by_the_upstream_sign() -> None:
    e = entry(LinearReLUMasksUpstream, SPAN, (5, 6), params=span_params())
    assert e.verdict == "backward", e.message
    assert bad_tensors(e) == ["input", "fc.weight", "fc.bias"]


def test_backward_writing_into_grad_output_is_a_finding() -> None:
    """DESIGN.md: a backward that writes into the upstream gradient it was given fails, unless declared."""
    e = entry(LinearReLUInPlace, SPAN, (5, 6), params=span_params())
    assert e.verdict == "backward", e.message
    assert said(e, "backward writes into its upstream gradient")
    declared = entry(LinearReLUInPlace, SPAN, (5, 6), params=span_params(), inplace={"upstream"})
    assert declared.verdict == "pass", declared.message


class LinearSigmoid(Function):
    @staticmethod
    def forward(ctx, x, w, b):
        y = torch.sigmoid(x @ w.T + b)
        ctx.save_for_backward(x, w, y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        x, w, y = ctx.saved_tensors
        g = grad_output * y * (1 - y)
        return g @ w, g.T @ x, g.sum(0)


class LinearSigmoidSavesPreactivation(LinearSigmoid):
    @staticmethod
    def forward(ctx, x, w, b):
        z = x @ w.T + b
        ctx.save_for_backward(x, w, z)  # backward's y * (1 - y) then reads z
        return torch.sigmoid(z)


SIGMOID_SPAN = harness.Sequential([harness.Linear("fc", 6, 4), harness.Sigmoid("sig")], name="block")


@pytest.mark.parametrize(("fn", "verdict"), [(LinearSigmoid, "pass"), (LinearSigmoidSavesPreactivation, "backward")])
def test_fused_linear_sigmoid_saved_tensor(fn, verdict: str) -> None:
    e = entry(fn, SIGMOID_SPAN, (5, 6), params=span_params())
    assert e.verdict == verdict, e.message
    assert bad_tensors(e) == ([] if verdict == "pass" else ["input", "fc.weight", "fc.bias"])
